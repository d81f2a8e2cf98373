package tdx

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/go-trustee/go-trustee/eventlog"
	"github.com/go-trustee/go-trustee/verifier"
)

// TD attribute bits upstream reports, by name.
var tdAttributeBits = []struct {
	name string
	bit  uint
}{
	{"debug", 0},
	{"septve_disable", 28},
	{"protection_keys", 30},
	{"key_locker", 31},
	{"perfmon", 63},
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

// quoteClaims is the "quote" claim: header and body fields as lowercase
// hex, and in v5 the body type and size.
func quoteClaims(q *Quote) map[string]any {
	h := &q.Header
	header := map[string]any{
		"version":      hexs(h.Version[:]),
		"att_key_type": hexs(h.AttKeyType[:]),
		"tee_type":     hexs(h.TEEType[:]),
		"reserved":     hexs(h.Reserved[:]),
		"vendor_id":    hexs(h.VendorID[:]),
		"user_data":    hexs(h.UserData[:]),
	}
	b := &q.Body
	body := map[string]any{
		"tcb_svn":         hexs(b.TEETCBSVN[:]),
		"mr_seam":         hexs(b.MRSEAM[:]),
		"mrsigner_seam":   hexs(b.MRSignerSEAM[:]),
		"seam_attributes": hexs(b.SEAMAttributes[:]),
		"td_attributes":   hexs(b.TDAttributes[:]),
		"xfam":            hexs(b.XFAM[:]),
		"mr_td":           hexs(b.MRTD[:]),
		"mr_config_id":    hexs(b.MRConfigID[:]),
		"mr_owner":        hexs(b.MROwner[:]),
		"mr_owner_config": hexs(b.MROwnerConfig[:]),
		"rtmr_0":          hexs(b.RTMR[0][:]),
		"rtmr_1":          hexs(b.RTMR[1][:]),
		"rtmr_2":          hexs(b.RTMR[2][:]),
		"rtmr_3":          hexs(b.RTMR[3][:]),
		"report_data":     hexs(b.ReportData[:]),
	}
	out := map[string]any{"header": header, "body": body}
	if q.Version == quoteVersionV5 {
		out["type"] = hexs(binary.LittleEndian.AppendUint16(nil, q.BodyType))
		out["size"] = hexs(binary.LittleEndian.AppendUint32(nil, q.BodySize))
		if q.isTDX15() {
			body["tee_tcb_svn2"] = hexs(b.TEETCBSVN2[:])
			body["mr_servicetd"] = hexs(b.MRServiceTD[:])
		}
	}
	return out
}

// parsedClaims are upstream's generate_parsed_claim: the quote, the TD
// attributes, report and init data, the event log when there is one, and
// the platform instance id of Platform CA PCK certificates.
func parsedClaims(q *Quote, log *eventlog.Log, info *PlatformInfo) verifier.Claims {
	attrs := binary.LittleEndian.Uint64(q.Body.TDAttributes[:])
	td := make(map[string]any, len(tdAttributeBits))
	for _, f := range tdAttributeBits {
		td[f.name] = attrs&(1<<f.bit) != 0
	}
	c := verifier.Claims{
		"quote":         quoteClaims(q),
		"td_attributes": td,
		"report_data":   hexs(q.Body.ReportData[:]),
		"init_data":     hexs(q.Body.MRConfigID[:]),
	}
	if log != nil {
		events := log.Events
		if events == nil {
			events = []eventlog.Event{}
		}
		c["uefi_event_logs"] = events
	}
	if info.PlatformInstanceID != nil {
		c["platform_instance_id"] = hexs(info.PlatformInstanceID[:])
	}
	return c
}
