package snp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/google/uuid"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol/evidence"
)

// Cert types of a cert_chain entry: the sev crate's CertType variants as
// serde names them.
const (
	CertEmpty = "Empty"
	CertARK   = "ARK"
	CertASK   = "ASK"
	CertVCEK  = "VCEK"
	CertVLEK  = "VLEK"
	CertCRL   = "CRL"
	// CertOther is an entry with another GUID, {"OTHER": "<uuid>"}.
	CertOther = "OTHER"
)

// CertEntry is one entry of the evidence cert_chain (the extended report's
// certificate table).
type CertEntry struct {
	// Type is one of the Cert* constants.
	Type string
	// GUID is the entry's GUID when Type is CertOther (canonical form).
	GUID string
	// Data is the certificate (DER, or PEM) or CRL.
	Data []byte
}

// Evidence is snp evidence.
type Evidence struct {
	Report Report
	// CertChain is nil when the evidence has no (or a null) cert_chain,
	// and non-nil, maybe empty, otherwise.
	CertChain []CertEntry
}

// ParseEvidence decodes snp evidence as upstream's serde types do, more
// strictly: the evidence is at most limits.MaxEvidenceBytes, member names
// are exact, unknown members are ignored, a member given twice is an error
// (serde_json's Value would keep the last), integers must be integers in
// range, byte arrays must have their exact length, and cert_chain has at
// most limits.MaxCertChain entries. Errors wrap evidence.ErrMalformed.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > limits.MaxEvidenceBytes {
		return nil, malformed("evidence of %d bytes exceeds the limit of %d", len(b), limits.MaxEvidenceBytes)
	}
	if !json.Valid(b) {
		return nil, malformed("not a JSON document")
	}
	ev := &Evidence{}
	err := walkObject(b, evidenceFields, func(i int, raw []byte) error {
		switch i {
		case 0:
			return decodeReport(raw, &ev.Report)
		default:
			if isNull(raw) {
				return nil
			}
			chain, err := decodeCertChain(raw)
			ev.CertChain = chain
			return err
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: Deserialize SNP Evidence failed: %w", evidence.ErrMalformed, err)
	}
	return ev, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: Deserialize SNP Evidence failed: %s", evidence.ErrMalformed, fmt.Sprintf(format, args...))
}

// fieldSet names the members of a JSON object and which are required.
type fieldSet struct {
	names    []string
	required []bool
}

func fields(spec ...string) fieldSet {
	fs := fieldSet{}
	for _, s := range spec {
		name, opt := s, false
		if s[len(s)-1] == '?' {
			name, opt = s[:len(s)-1], true
		}
		fs.names = append(fs.names, name)
		fs.required = append(fs.required, !opt)
	}
	return fs
}

var (
	evidenceFields = fields("attestation_report", "cert_chain?")
	reportFields   = fields("version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "sig_algo",
		"current_tcb", "plat_info", "key_info", "report_data", "measurement", "host_data", "id_key_digest",
		"author_key_digest", "report_id", "report_id_ma", "reported_tcb", "cpuid_fam_id?", "cpuid_mod_id?",
		"cpuid_step?", "chip_id", "committed_tcb", "current", "committed", "launch_tcb", "launch_mit_vector?",
		"current_mit_vector?", "signature")
	tcbFields       = fields("fmc?", "bootloader", "tee", "snp", "microcode")
	versionFields   = fields("major", "minor", "build")
	signatureFields = fields("r", "s")
	certEntryFields = fields("cert_type", "data")
)

// walkObject calls fn with the index in fs of each known member of the JSON
// object data and its raw value, then checks that required members were
// present. Unknown members are skipped; a known member given twice is an
// error. data must be valid JSON (ParseEvidence checks the whole document
// first), which keeps this scanner small and allocation-free.
func walkObject(data []byte, fs fieldSet, fn func(i int, raw []byte) error) error {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return fmt.Errorf("invalid type: %s, expected a map", describe(data))
	}
	i = skipWS(data, i+1)
	var seen uint64
	for data[i] != '}' {
		if data[i] == ',' {
			i = skipWS(data, i+1)
		}
		kEnd := skipString(data, i)
		key := data[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(data[i:kEnd], &k); err != nil {
				return fmt.Errorf("invalid JSON: %v", err)
			}
			key = []byte(k)
		}
		i = skipWS(data, skipWS(data, kEnd)+1) // past ':'
		vEnd := skipValue(data, i)
		if n := indexOf(fs.names, key); n >= 0 {
			if seen&(1<<n) != 0 {
				return fmt.Errorf("duplicate field `%s`", key)
			}
			seen |= 1 << n
			if err := fn(n, data[i:vEnd]); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
		i = skipWS(data, vEnd)
	}
	for n, req := range fs.required {
		if req && seen&(1<<n) == 0 {
			return fmt.Errorf("missing field `%s`", fs.names[n])
		}
	}
	return nil
}

// walkArray calls fn with each element of the JSON array data (valid JSON).
func walkArray(data []byte, fn func(n int, raw []byte) error) error {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		return fmt.Errorf("invalid type: %s, expected a sequence", describe(data))
	}
	i = skipWS(data, i+1)
	for n := 0; data[i] != ']'; n++ {
		if data[i] == ',' {
			i = skipWS(data, i+1)
		}
		end := skipValue(data, i)
		if err := fn(n, data[i:end]); err != nil {
			return err
		}
		i = skipWS(data, end)
	}
	return nil
}

// skipString returns the index after the JSON string starting at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// skipValue returns the index after the JSON value starting at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(data)
	default:
		for ; i < len(data); i++ {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
		}
		return i
	}
}

func indexOf(names []string, key []byte) int {
	for i, n := range names {
		if n == string(key) {
			return i
		}
	}
	return -1
}

func isNull(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// describe names the JSON type of raw for error messages, as serde does.
func describe(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '{':
		return "map"
	case c == '[':
		return "sequence"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' && !bytes.ContainsAny(raw, ".eE"):
		return "negative integer"
	case bytes.ContainsAny(raw, ".eE"):
		return "floating point"
	default:
		return "integer"
	}
}

// parseUint decodes a JSON non-negative integer of at most bits bits.
func parseUint(raw []byte, bits int) (uint64, error) {
	raw = bytes.TrimSpace(raw)
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid type: %s, expected u%d", describe(raw), bits)
		}
	}
	v, err := strconv.ParseUint(string(raw), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("invalid value: integer `%s`, expected u%d", raw, bits)
	}
	return v, nil
}

func u8(raw []byte, dst *uint8) error {
	v, err := parseUint(raw, 8)
	*dst = uint8(v)
	return err
}

func u32(raw []byte, dst *uint32) error {
	v, err := parseUint(raw, 32)
	*dst = uint32(v)
	return err
}

func u64(raw []byte, dst *uint64) error {
	v, err := parseUint(raw, 64)
	*dst = v
	return err
}

func optU8(raw []byte, dst **uint8) error {
	if isNull(raw) {
		*dst = nil
		return nil
	}
	var v uint8
	if err := u8(raw, &v); err != nil {
		return err
	}
	*dst = &v
	return nil
}

func optU64(raw []byte, dst **uint64) error {
	if isNull(raw) {
		*dst = nil
		return nil
	}
	var v uint64
	if err := u64(raw, &v); err != nil {
		return err
	}
	*dst = &v
	return nil
}

// byteArray decodes a JSON array of integers 0..255 into dst, which it
// must fill exactly.
func byteArray(raw []byte, dst []byte) error {
	out, err := appendByteArray(dst[:0], raw, len(dst))
	if err != nil {
		return err
	}
	if len(out) != len(dst) {
		return fmt.Errorf("invalid length %d, expected an array of length %d", len(out), len(dst))
	}
	return nil
}

// appendByteArray parses raw, a valid JSON value, as an array of integers
// 0..255 and appends them to dst; it stops with an error past max elements
// (max < 0: no bound).
func appendByteArray(dst, raw []byte, max int) ([]byte, error) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return dst, fmt.Errorf("invalid type: %s, expected a sequence of u8", describe(raw))
	}
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == ']' {
		return dst, trailing(raw, i+1)
	}
	n := 0
	for {
		i = skipWS(raw, i)
		if i >= len(raw) || raw[i] < '0' || raw[i] > '9' {
			end := i
			for end < len(raw) && raw[end] != ',' && raw[end] != ']' {
				end++
			}
			return dst, fmt.Errorf("element %d: invalid type: %s, expected u8", n, describe(raw[min(i, len(raw)):end]))
		}
		v := 0
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			v = v*10 + int(raw[i]-'0')
			if v > 255 {
				return dst, fmt.Errorf("element %d: invalid value: integer out of range for u8", n)
			}
			i++
		}
		if i < len(raw) && (raw[i] == '.' || raw[i] == 'e' || raw[i] == 'E') {
			return dst, fmt.Errorf("element %d: invalid type: floating point, expected u8", n)
		}
		if n++; max >= 0 && n > max {
			return dst, fmt.Errorf("invalid length, expected an array of length %d", max)
		}
		dst = append(dst, byte(v))
		i = skipWS(raw, i)
		if i >= len(raw) {
			return dst, fmt.Errorf("unterminated array")
		}
		switch raw[i] {
		case ',':
			i++
		case ']':
			return dst, trailing(raw, i+1)
		default:
			return dst, fmt.Errorf("element %d: expected `,` or `]`", n)
		}
	}
}

func trailing(raw []byte, i int) error {
	if skipWS(raw, i) != len(raw) {
		return fmt.Errorf("trailing characters")
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func decodeTCBVersion(raw []byte, t *TCBVersion) error {
	return walkObject(raw, tcbFields, func(i int, raw []byte) error {
		switch i {
		case 0:
			return optU8(raw, &t.FMC)
		case 1:
			return u8(raw, &t.Bootloader)
		case 2:
			return u8(raw, &t.TEE)
		case 3:
			return u8(raw, &t.SNP)
		default:
			return u8(raw, &t.Microcode)
		}
	})
}

func decodeFirmwareVersion(raw []byte, v *FirmwareVersion) error {
	return walkObject(raw, versionFields, func(i int, raw []byte) error {
		return u8(raw, [...]*uint8{&v.Major, &v.Minor, &v.Build}[i])
	})
}

func decodeReport(raw []byte, r *Report) error {
	return walkObject(raw, reportFields, func(i int, raw []byte) error {
		switch reportFields.names[i] {
		case "version":
			return u32(raw, &r.Version)
		case "guest_svn":
			return u32(raw, &r.GuestSVN)
		case "policy":
			return u64(raw, &r.Policy)
		case "family_id":
			return byteArray(raw, r.FamilyID[:])
		case "image_id":
			return byteArray(raw, r.ImageID[:])
		case "vmpl":
			return u32(raw, &r.VMPL)
		case "sig_algo":
			return u32(raw, &r.SigAlgo)
		case "current_tcb":
			return decodeTCBVersion(raw, &r.CurrentTCB)
		case "plat_info":
			return u64(raw, &r.PlatInfo)
		case "key_info":
			return u32(raw, &r.KeyInfo)
		case "report_data":
			return byteArray(raw, r.ReportData[:])
		case "measurement":
			return byteArray(raw, r.Measurement[:])
		case "host_data":
			return byteArray(raw, r.HostData[:])
		case "id_key_digest":
			return byteArray(raw, r.IDKeyDigest[:])
		case "author_key_digest":
			return byteArray(raw, r.AuthorKeyDigest[:])
		case "report_id":
			return byteArray(raw, r.ReportID[:])
		case "report_id_ma":
			return byteArray(raw, r.ReportIDMA[:])
		case "reported_tcb":
			return decodeTCBVersion(raw, &r.ReportedTCB)
		case "cpuid_fam_id":
			return optU8(raw, &r.CPUIDFamID)
		case "cpuid_mod_id":
			return optU8(raw, &r.CPUIDModID)
		case "cpuid_step":
			return optU8(raw, &r.CPUIDStep)
		case "chip_id":
			return byteArray(raw, r.ChipID[:])
		case "committed_tcb":
			return decodeTCBVersion(raw, &r.CommittedTCB)
		case "current":
			return decodeFirmwareVersion(raw, &r.Current)
		case "committed":
			return decodeFirmwareVersion(raw, &r.Committed)
		case "launch_tcb":
			return decodeTCBVersion(raw, &r.LaunchTCB)
		case "launch_mit_vector":
			return optU64(raw, &r.LaunchMitVector)
		case "current_mit_vector":
			return optU64(raw, &r.CurrentMitVector)
		default: // signature
			return walkObject(raw, signatureFields, func(i int, raw []byte) error {
				if i == 0 {
					return byteArray(raw, r.Signature.R[:])
				}
				return byteArray(raw, r.Signature.S[:])
			})
		}
	})
}

func decodeCertChain(raw []byte) ([]CertEntry, error) {
	out := []CertEntry{}
	err := walkArray(raw, func(n int, item []byte) error {
		if n >= limits.MaxCertChain {
			return fmt.Errorf("more than %d entries", limits.MaxCertChain)
		}
		var e CertEntry
		err := walkObject(item, certEntryFields, func(i int, raw []byte) error {
			if i == 1 {
				var err error
				e.Data, err = appendByteArray(make([]byte, 0, len(raw)/3), raw, -1)
				return err
			}
			return decodeCertType(raw, &e)
		})
		if err != nil {
			return fmt.Errorf("[%d]: %w", n, err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func decodeCertType(raw []byte, e *CertEntry) error {
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		switch name {
		case CertEmpty, CertARK, CertASK, CertVCEK, CertVLEK, CertCRL:
			e.Type = name
			return nil
		case CertOther:
			return fmt.Errorf("invalid type: unit variant, expected newtype variant `OTHER`")
		}
		return fmt.Errorf("unknown variant `%s`, expected one of `Empty`, `ARK`, `ASK`, `VCEK`, `VLEK`, `CRL`, `OTHER`", name)
	}
	var other map[string]json.RawMessage
	if err := json.Unmarshal(raw, &other); err != nil || len(other) != 1 {
		return fmt.Errorf("invalid type: %s, expected a CertType", describe(raw))
	}
	g, ok := other[CertOther]
	if !ok {
		return fmt.Errorf("invalid type: map, expected a CertType")
	}
	var s string
	if err := json.Unmarshal(g, &s); err != nil {
		return fmt.Errorf("OTHER: invalid type: %s, expected a UUID string", describe(g))
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return fmt.Errorf("OTHER: invalid UUID %q: %v", s, err)
	}
	e.Type, e.GUID = CertOther, id.String()
	return nil
}

// MarshalJSON encodes the evidence in upstream's serde form.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 6*ReportSize+4*len(e.CertChain)*1400)
	b = append(b, `{"attestation_report":`...)
	b, err := e.Report.appendJSON(b)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"cert_chain":`...)
	if e.CertChain == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range e.CertChain {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"cert_type":`...)
			switch c.Type {
			case CertEmpty, CertARK, CertASK, CertVCEK, CertVLEK, CertCRL:
				b = strconv.AppendQuote(b, c.Type)
			case CertOther:
				id, err := uuid.Parse(c.GUID)
				if err != nil {
					return nil, fmt.Errorf("snp: cert_chain[%d]: OTHER GUID %q: %w", i, c.GUID, err)
				}
				b = append(b, `{"OTHER":"`...)
				b = append(b, id.String()...)
				b = append(b, `"}`...)
			default:
				return nil, fmt.Errorf("snp: cert_chain[%d]: unknown cert type %q", i, c.Type)
			}
			b = append(b, `,"data":`...)
			b = appendJSONBytes(b, c.Data)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// MarshalJSON encodes the report in the sev crate's serde form.
func (r *Report) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, 6*ReportSize))
}

func (r *Report) appendJSON(b []byte) ([]byte, error) {
	// Refuse what the binary form cannot carry, so that the JSON always
	// encodes back to the same report.
	if _, err := r.MarshalBinary(); err != nil {
		return nil, err
	}
	u := func(name string, v uint64) {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, v, 10)
		b = append(b, ',')
	}
	bs := func(name string, v []byte) {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = appendJSONBytes(b, v)
		b = append(b, ',')
	}
	opt8 := func(name string, v *uint8) {
		if v == nil {
			b = append(b, `"`+name+`":null,`...)
			return
		}
		u(name, uint64(*v))
	}
	opt64 := func(name string, v *uint64) {
		if v == nil {
			b = append(b, `"`+name+`":null,`...)
			return
		}
		u(name, *v)
	}
	tcb := func(name string, t TCBVersion) {
		b = append(b, `"`+name+`":{`...)
		opt8("fmc", t.FMC)
		u("bootloader", uint64(t.Bootloader))
		u("tee", uint64(t.TEE))
		u("snp", uint64(t.SNP))
		u("microcode", uint64(t.Microcode))
		b[len(b)-1] = '}'
		b = append(b, ',')
	}
	ver := func(name string, v FirmwareVersion) {
		b = append(b, `"`+name+`":{`...)
		u("major", uint64(v.Major))
		u("minor", uint64(v.Minor))
		u("build", uint64(v.Build))
		b[len(b)-1] = '}'
		b = append(b, ',')
	}
	b = append(b, '{')
	u("version", uint64(r.Version))
	u("guest_svn", uint64(r.GuestSVN))
	u("policy", r.Policy)
	bs("family_id", r.FamilyID[:])
	bs("image_id", r.ImageID[:])
	u("vmpl", uint64(r.VMPL))
	u("sig_algo", uint64(r.SigAlgo))
	tcb("current_tcb", r.CurrentTCB)
	u("plat_info", r.PlatInfo)
	u("key_info", uint64(r.KeyInfo))
	bs("report_data", r.ReportData[:])
	bs("measurement", r.Measurement[:])
	bs("host_data", r.HostData[:])
	bs("id_key_digest", r.IDKeyDigest[:])
	bs("author_key_digest", r.AuthorKeyDigest[:])
	bs("report_id", r.ReportID[:])
	bs("report_id_ma", r.ReportIDMA[:])
	tcb("reported_tcb", r.ReportedTCB)
	opt8("cpuid_fam_id", r.CPUIDFamID)
	opt8("cpuid_mod_id", r.CPUIDModID)
	opt8("cpuid_step", r.CPUIDStep)
	bs("chip_id", r.ChipID[:])
	tcb("committed_tcb", r.CommittedTCB)
	ver("current", r.Current)
	ver("committed", r.Committed)
	tcb("launch_tcb", r.LaunchTCB)
	opt64("launch_mit_vector", r.LaunchMitVector)
	opt64("current_mit_vector", r.CurrentMitVector)
	b = append(b, `"signature":{`...)
	bs("r", r.Signature.R[:])
	bs("s", r.Signature.S[:])
	b[len(b)-1] = '}'
	return append(b, '}'), nil
}

func appendJSONBytes(b, v []byte) []byte {
	b = append(b, '[')
	for i, c := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(c), 10)
	}
	return append(b, ']')
}

// MarshalEvidence turns a binary attestation report and the certificate
// table the host returned with it (nil for none) into snp evidence JSON,
// as a guest attester built on the Rust sev crate emits it. The report must
// be one ParseReport accepts.
func MarshalEvidence(report []byte, certs []CertEntry) ([]byte, error) {
	r, err := ParseReport(report)
	if err != nil {
		return nil, err
	}
	if len(certs) > limits.MaxCertChain {
		return nil, fmt.Errorf("snp: %d certificates exceed the limit of %d", len(certs), limits.MaxCertChain)
	}
	return (&Evidence{Report: *r, CertChain: certs}).MarshalJSON()
}
