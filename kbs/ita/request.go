package ita

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/verifier/tpmquote"
)

// itaError carries upstream's message as its text and one of the package
// sentinels as its cause, so that errors.Is works without a prefix.
type itaError struct {
	kind error
	msg  string
}

func (e *itaError) Error() string { return e.msg }
func (e *itaError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &itaError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// teeDebug is the Rust Debug name of kbs-types' Tee, which upstream's
// messages print ("TEE Snp is not supported.").
func teeDebug(t protocol.Tee) string {
	switch t {
	case protocol.TeeAzSnpVtpm:
		return "AzSnpVtpm"
	case protocol.TeeAzTdxVtpm:
		return "AzTdxVtpm"
	case protocol.TeeNvidia:
		return "Nvidia"
	case protocol.TeeNvidiaDPU:
		return "NvidiaDpu"
	case protocol.TeeSgx:
		return "Sgx"
	case protocol.TeeSnp:
		return "Snp"
	case protocol.TeeTdx:
		return "Tdx"
	case protocol.TeeCca:
		return "Cca"
	case protocol.TeeCsv:
		return "Csv"
	case protocol.TeeSe:
		return "Se"
	case protocol.TeeHygonDCU:
		return "HygonDcu"
	case protocol.TeeTpm:
		return "Tpm"
	case protocol.TeeSample:
		return "Sample"
	case protocol.TeeSampleDevice:
		return "SampleDevice"
	}
	return fmt.Sprintf("%q", string(t))
}

// DCAPEvidence is upstream's DcapTeeEvidence: the "tdx" or "sgx" member of
// the request.
type DCAPEvidence struct {
	// Quote is the evidence's "quote" string, verbatim (tdx, sgx: standard
	// base64 of the quote); for az-tdx-vtpm, standard base64 of td_quote.
	Quote string
	// RuntimeData is standard base64 of the runtime data JSON (tdx, sgx),
	// or of the HCL report's variable data (az-tdx-vtpm).
	RuntimeData string
	// UserData is the evidence's "user_data", verbatim (tdx, sgx), or
	// standard base64 of the runtime data JSON (az-tdx-vtpm).
	UserData *string
	// EventLog is the evidence's "cc_eventlog", verbatim.
	EventLog *string
}

// NvGPU is upstream's NvGpuRequest: the "nvgpu" member.
type NvGPU struct {
	// GPUNonce is hex of the first 32 bytes of SHA-512(runtime data JSON).
	GPUNonce string
	// Arch is the first supported device's arch.
	Arch string
	// Evidence lists the supported (HOPPER, BLACKWELL) devices.
	Evidence []NvGPUEvidence
}

// NvGPUEvidence is one device of NvGPU.
type NvGPUEvidence struct {
	Evidence    string
	Certificate string
}

// Request is upstream's AttestReqData, the body of an ITA attest call.
type Request struct {
	PolicyIDs       []string
	PolicyMustMatch bool
	TDX, SGX        *DCAPEvidence
	NvGPU           *NvGPU
}

// BuildRequest is upstream's build_attest_request: it reads each
// verification request (the primary evidence first, then the devices, as
// the KBS orders them) into the ITA request and returns it with the path
// suffix ("/azure" for az-tdx-vtpm, else ""). As upstream, a later
// evidence of the same kind replaces an earlier one, and nvidia evidence
// without a supported device is dropped with a warning (on log, which may
// be nil).
//
// The runtime data is sent as the RFC 8785 (JCS) form of the structured
// runtime data the KBS built: sorted members, compact, serde's escaping.
// That is byte for byte what upstream's serde_json::Value::to_string()
// gives for these documents, and what the guest hashed into its report
// data, so ITA's check REPORT_DATA = H(runtime_data) holds.
func BuildRequest(reqs []as.VerificationRequest, policyIDs []string, policyMustMatch bool, log *slog.Logger) (*Request, string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(reqs) == 0 {
		return nil, "", errorf(ErrInvalidEvidence, "no evidence to send to Intel Trust Authority")
	}
	r := &Request{PolicyIDs: append([]string{}, policyIDs...), PolicyMustMatch: policyMustMatch}
	suffix := ""
	for _, vr := range reqs {
		deserr := func(err error) error {
			return errorf(ErrInvalidEvidence, "Failed to deserialize TEE: %s Evidence: %v", teeDebug(vr.Tee), err)
		}
		switch vr.Tee {
		case protocol.TeeTdx, protocol.TeeSgx, protocol.TeeAzTdxVtpm, protocol.TeeNvidia:
		default:
			return nil, "", errorf(ErrUnsupportedTee, "Intel Trust Authority: TEE %s is not supported.", teeDebug(vr.Tee))
		}
		if len(vr.Evidence) > limits.MaxEvidenceBytes {
			return nil, "", deserr(fmt.Errorf("%d bytes exceeds the limit of %d", len(vr.Evidence), limits.MaxEvidenceBytes))
		}
		rd, err := runtimeData(vr.RuntimeData)
		if err != nil {
			return nil, "", errorf(ErrInvalidEvidence, "TEE %s: %v", teeDebug(vr.Tee), err)
		}
		switch vr.Tee {
		case protocol.TeeAzTdxVtpm:
			suffix = "/azure"
			hcl, tdQuote, err := decodeAzure(vr.Evidence)
			if err != nil {
				return nil, "", deserr(err)
			}
			rep, err := tpmquote.ParseHCLReport(hcl)
			if err != nil {
				return nil, "", errorf(ErrInvalidEvidence, "%v", err)
			}
			ud := base64.StdEncoding.EncodeToString(rd)
			r.TDX = &DCAPEvidence{
				Quote:       base64.StdEncoding.EncodeToString(tdQuote),
				RuntimeData: base64.StdEncoding.EncodeToString(rep.VarData),
				UserData:    &ud,
			}
		case protocol.TeeTdx, protocol.TeeSgx:
			ev, err := decodeDCAP(vr.Evidence)
			if err != nil {
				return nil, "", deserr(err)
			}
			ev.RuntimeData = base64.StdEncoding.EncodeToString(rd)
			if vr.Tee == protocol.TeeTdx {
				r.TDX = ev
			} else {
				r.SGX = ev
			}
		case protocol.TeeNvidia:
			devs, err := decodeNvidia(vr.Evidence)
			if err != nil {
				return nil, "", deserr(err)
			}
			if len(devs) == 0 {
				log.Warn("TEE evidence has empty device list. Drop the evidence.", "tee", teeDebug(vr.Tee))
				continue
			}
			var keep []nvDevice
			for _, d := range devs {
				// ITA only accepts HOPPER and BLACKWELL GPUs.
				if d.arch != "HOPPER" && d.arch != "BLACKWELL" {
					log.Warn("ITA: unsupported Nvidia device arch, skipping it", "arch", d.arch)
					continue
				}
				keep = append(keep, d)
			}
			if len(keep) == 0 {
				log.Warn("ITA: no supported Nvidia GPU devices after filtering, dropping evidence")
				continue
			}
			sum := sha512.Sum512(rd)
			g := &NvGPU{GPUNonce: hex.EncodeToString(sum[:32]), Arch: keep[0].arch}
			for _, d := range keep {
				g.Evidence = append(g.Evidence, NvGPUEvidence{Evidence: d.evidence, Certificate: d.certificate})
			}
			r.NvGPU = g
		}
	}
	return r, suffix, nil
}

// runtimeData is the JSON text of the structured runtime data, in JCS form.
func runtimeData(rd *as.RuntimeData) ([]byte, error) {
	switch {
	case rd == nil:
		return nil, errors.New("runtime data is required")
	case rd.Structured == nil && rd.Raw != nil:
		return nil, errors.New("raw runtime data is not supported (ITA is sent the structured runtime data JSON)")
	case rd.Structured == nil:
		return nil, errors.New("runtime data is required")
	}
	out, err := protocol.Canonicalize(rd.Structured)
	if err != nil {
		return nil, fmt.Errorf("runtime data: %w", err)
	}
	return out, nil
}

// Marshal is serde_json::to_string of upstream's AttestReqData: members in
// declaration order, absent options skipped, serde's string escaping.
func (r *Request) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(`{"policy_ids":[`)
	for i, id := range r.PolicyIDs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, id)
	}
	b.WriteString(`],"policy_must_match":`)
	if r.PolicyMustMatch {
		b.WriteString("true")
	} else {
		b.WriteString("false")
	}
	writeDCAP := func(name string, e *DCAPEvidence) {
		if e == nil {
			return
		}
		b.WriteString(`,"` + name + `":{"quote":`)
		writeString(&b, e.Quote)
		b.WriteString(`,"runtime_data":`)
		writeString(&b, e.RuntimeData)
		if e.UserData != nil {
			b.WriteString(`,"user_data":`)
			writeString(&b, *e.UserData)
		}
		if e.EventLog != nil {
			b.WriteString(`,"event_log":`)
			writeString(&b, *e.EventLog)
		}
		b.WriteByte('}')
	}
	writeDCAP("tdx", r.TDX)
	writeDCAP("sgx", r.SGX)
	if g := r.NvGPU; g != nil {
		b.WriteString(`,"nvgpu":{"gpu_nonce":`)
		writeString(&b, g.GPUNonce)
		b.WriteString(`,"arch":`)
		writeString(&b, g.Arch)
		b.WriteString(`,"evidence_list":[`)
		for i, e := range g.Evidence {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"evidence":`)
			writeString(&b, e.Evidence)
			b.WriteString(`,"certificate":`)
			writeString(&b, e.Certificate)
			b.WriteByte('}')
		}
		b.WriteString("]}")
	}
	b.WriteByte('}')
	return b.Bytes()
}

// writeString writes s as serde_json does: '"' and '\\' escaped, control
// characters as \b \t \n \f \r or \u00xx (lower-case hex), everything else
// (HTML characters, U+2028, non-ASCII) verbatim.
func writeString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// Encode is BuildRequest followed by Marshal.
func Encode(reqs []as.VerificationRequest, policyIDs []string, policyMustMatch bool, log *slog.Logger) (body []byte, suffix string, err error) {
	r, suffix, err := BuildRequest(reqs, policyIDs, policyMustMatch, log)
	if err != nil {
		return nil, "", err
	}
	return r.Marshal(), suffix, nil
}

func (c *Client) encode(reqs []as.VerificationRequest) ([]byte, string, error) {
	return Encode(reqs, c.policyIDs, c.mustMatch, c.log)
}

// jsonObject decodes a JSON object into its members (the last of a
// repeated name wins, as serde_json::Value does).
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, errors.New("invalid type: expected a JSON object")
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// requiredString decodes the required string member name, as serde.
func requiredString(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", fmt.Errorf("missing field `%s`", name)
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("invalid type for field `%s`: expected a string", name)
	}
	return s, nil
}

// optionalString decodes an Option<String> member: absent or null is nil.
func optionalString(m map[string]json.RawMessage, name string) (*string, error) {
	raw, ok := m[name]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, fmt.Errorf("invalid type for field `%s`: expected a string or null", name)
	}
	return &s, nil
}

// decodeDCAP reads tdx or sgx evidence as upstream's DcapTeeEvidence:
// "quote" (required), "user_data" and "cc_eventlog" (optional strings),
// each kept verbatim; other members ignored.
func decodeDCAP(ev []byte) (*DCAPEvidence, error) {
	m, err := jsonObject(ev)
	if err != nil {
		return nil, err
	}
	out := &DCAPEvidence{}
	if out.Quote, err = requiredString(m, "quote"); err != nil {
		return nil, err
	}
	if out.UserData, err = optionalString(m, "user_data"); err != nil {
		return nil, err
	}
	if out.EventLog, err = optionalString(m, "cc_eventlog"); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeAzure reads az-tdx-vtpm evidence as upstream's untagged
// AzItaTeeEvidence: version 0 (hcl_report and td_quote as byte arrays)
// first, then version 1 (base64url strings). Upstream's V1 matches only
// the string "1" as "version"; the number 1 or 2 (what guests emit) is
// accepted too.
func decodeAzure(ev []byte) (hcl, tdQuote []byte, err error) {
	top, err := tpmquote.ParseObject(ev)
	if err != nil {
		return nil, nil, err
	}
	var errs []string
	if hcl, err = top.Bytes("hcl_report"); err == nil {
		if tdQuote, err = top.Bytes("td_quote"); err == nil {
			return hcl, tdQuote, nil
		}
	}
	errs = append(errs, "as version 0: "+err.Error())
	if err = azureVersion(top); err == nil {
		if hcl, err = top.Base64URL("hcl_report"); err == nil {
			if tdQuote, err = top.Base64URL("td_quote"); err == nil {
				return hcl, tdQuote, nil
			}
		}
	}
	errs = append(errs, "as version 1: "+err.Error())
	return nil, nil, fmt.Errorf("data did not match any variant of untagged enum AzItaTeeEvidence (%s)", strings.Join(errs, "; "))
}

func azureVersion(top tpmquote.Fields) error {
	raw, ok := top["version"]
	if !ok {
		return errors.New("missing field `version`")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s != "1" {
			return fmt.Errorf("unknown variant `%s`, expected `1`", s)
		}
		return nil
	}
	v, err := top.Uint32("version")
	if err != nil || (v != 1 && v != 2) {
		return errors.New("version is not 1 or 2")
	}
	return nil
}

type nvDevice struct{ evidence, certificate, arch string }

// decodeNvidia reads upstream's NvDeviceEvidence: "device_evidence_list",
// each with the strings "evidence", "certificate" and "arch".
func decodeNvidia(ev []byte) ([]nvDevice, error) {
	m, err := jsonObject(ev)
	if err != nil {
		return nil, err
	}
	raw, ok := m["device_evidence_list"]
	if !ok {
		return nil, errors.New("missing field `device_evidence_list`")
	}
	var items []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		return nil, errors.New("invalid type for field `device_evidence_list`: expected a sequence")
	}
	out := make([]nvDevice, 0, len(items))
	for i, it := range items {
		dm, err := jsonObject(it)
		if err != nil {
			return nil, fmt.Errorf("device_evidence_list[%d]: %v", i, err)
		}
		var d nvDevice
		for _, f := range []struct {
			name string
			dst  *string
		}{{"evidence", &d.evidence}, {"certificate", &d.certificate}, {"arch", &d.arch}} {
			if *f.dst, err = requiredString(dm, f.name); err != nil {
				return nil, fmt.Errorf("device_evidence_list[%d]: %v", i, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}
