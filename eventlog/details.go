package eventlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// parseDetails decodes event data by type, as upstream's per-type parsers;
// types without a parser have empty details.
func parseDetails(t EventType, data []byte) (Details, error) {
	switch t {
	case EvPostCode, EvAction, EvCompactHash, EvOmitBootDeviceEvents, EvEFIAction:
		return simpleDetails(data)
	case EvEventTag:
		return eventTagDetails(data)
	case EvPlatformConfigFlags:
		return platformConfigFlagsDetails(data), nil
	case EvIPL:
		return iplDetails(data)
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		return efiVariableDetails(data)
	case EvEFIBootServicesApplication:
		return bootServicesAppDetails(data)
	case EvEFIPlatformFirmwareBlob2, EvEFIHandoffTables2:
		return lengthPrefixedStringDetails(data)
	}
	return Details{}, nil
}

// simpleDetails: the data is a UTF-8 string.
func simpleDetails(data []byte) (Details, error) {
	if !utf8.Valid(data) {
		return Details{}, errors.New("invalid utf-8 sequence")
	}
	return stringDetails(string(data)), nil
}

// lengthPrefixedStringDetails: a one-byte length, then that many bytes of
// which the last (the NUL terminator) is dropped, as upstream.
func lengthPrefixedStringDetails(data []byte) (Details, error) {
	if len(data) == 0 {
		return Details{}, errors.New("data is too short: expected at least 1 byte")
	}
	end := int(data[0])
	if len(data) < end {
		return Details{}, fmt.Errorf("data is too short: expected at least %d bytes", end)
	}
	if end < 1 {
		return Details{}, errors.New("description length is zero")
	}
	desc := data[1:end]
	if !utf8.Valid(desc) {
		return Details{}, errors.New("invalid utf-8 sequence")
	}
	return stringDetails(string(desc)), nil
}

// platformConfigFlagsDetails: the data as UTF-8 ("" when it is not), with
// 0x10 turned into a space and control characters dropped.
func platformConfigFlagsDetails(data []byte) Details {
	if !utf8.Valid(data) {
		return stringDetails("")
	}
	var b strings.Builder
	for _, r := range string(data) {
		if r == 0x10 {
			r = ' '
		}
		if unicode.IsControl(r) {
			continue
		}
		b.WriteRune(r)
	}
	return stringDetails(b.String())
}

// gceIPLPrefix starts the UTF-16 EV_IPL events of Google's shim.
var gceIPLPrefix = []byte{0x2e, 0x00}

// iplDetails: a NUL-terminated UTF-8 string (hex of the whole data when it
// is not UTF-8), or, after the 0x2e 0x00 prefix, a NUL-terminated UTF-16LE
// string.
func iplDetails(data []byte) (Details, error) {
	if len(data) < 2 {
		return Details{}, errors.New("data is too short: expected at least 2 bytes")
	}
	if bytes.HasPrefix(data, gceIPLPrefix) {
		end := len(data) - len(gceIPLPrefix)
		if end == 0 || end%2 != 0 {
			return Details{}, errors.New("data is too short or not UTF-16 string")
		}
		return stringDetails(utf16Lossy(data[len(gceIPLPrefix):end])), nil
	}
	s := data
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if !utf8.Valid(s) {
		return stringDetails(hex.EncodeToString(data)), nil
	}
	return stringDetails(string(s)), nil
}

// utf16Words decodes little-endian UTF-16 code units (a trailing odd byte
// is ignored).
func utf16Words(b []byte) []uint16 {
	w := make([]uint16, len(b)/2)
	for i := range w {
		w[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return w
}

// utf16Lossy decodes UTF-16LE, replacing unpaired surrogates with U+FFFD.
func utf16Lossy(b []byte) string { return string(utf16.Decode(utf16Words(b))) }

// utf16Strict decodes UTF-16LE and fails on unpaired surrogates.
func utf16Strict(b []byte) (string, error) {
	w := utf16Words(b)
	for i := 0; i < len(w); i++ {
		switch {
		case utf16.IsSurrogate(rune(w[i])):
			if w[i] >= 0xdc00 || i+1 >= len(w) || w[i+1] < 0xdc00 || w[i+1] > 0xdfff {
				return "", fmt.Errorf("invalid utf-16: lone surrogate found at index %d", i)
			}
			i++
		}
	}
	return string(utf16.Decode(w)), nil
}

// guidString formats a GUID as upstream's EFI variable parser does: the 16
// bytes in order, hex, grouped 4-2-2-2-6.
func guidString(g []byte) string {
	h := hex.EncodeToString(g)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// efiVariableDetails parses a UEFI_VARIABLE_DATA: VariableName GUID,
// UnicodeNameLength (chars), VariableDataLength, UnicodeName (UTF-16LE),
// VariableData.
func efiVariableDetails(data []byte) (Details, error) {
	r := &reader{b: data}
	guid, ok := r.bytes(16)
	if !ok {
		return Details{}, errors.New("failed to read GUID")
	}
	nameLen, ok := r.u64()
	if !ok {
		return Details{}, errors.New("failed to read unicode name length")
	}
	dataLen, ok := r.u64()
	if !ok {
		return Details{}, errors.New("failed to read variable data length")
	}
	if nameLen > uint64(len(data)) {
		return Details{}, errors.New("out of bounds while reading description bytes")
	}
	nameBytes, ok := r.bytes(nameLen * 2)
	if !ok {
		return Details{}, errors.New("out of bounds while reading description bytes")
	}
	name, err := utf16Strict(nameBytes)
	if err != nil {
		return Details{}, err
	}
	varData := ""
	if dataLen > 0 {
		vd, ok := r.bytes(dataLen)
		if !ok {
			return Details{}, errors.New("out of bounds while reading variable_data")
		}
		varData = b64(vd)
	}
	vn := guidString(guid)
	return Details{
		UnicodeName:        &name,
		UnicodeNameLength:  &nameLen,
		VariableData:       &varData,
		VariableDataLength: &dataLen,
		VariableName:       &vn,
	}, nil
}

// bootServicesAppDetails parses a UEFI_IMAGE_LOAD_EVENT and renders its
// device path, one string per node (the end node excluded).
func bootServicesAppDetails(data []byte) (Details, error) {
	const pathOffset = 32
	if len(data) < pathOffset {
		return Details{}, fmt.Errorf("data is too short: expected at least %d bytes", pathOffset)
	}
	pathLen := binary.LittleEndian.Uint64(data[24:32])
	if pathLen == 0 {
		return Details{}, nil
	}
	if pathLen < 4 || pathLen-4 > uint64(len(data)-pathOffset) {
		return Details{}, errors.New("data is shorter than claimed by dev_path_offset")
	}
	path := data[pathOffset : pathOffset+int(pathLen-4)]
	if len(path) < 4 {
		return Details{}, errors.New("remaining device path is shorter than 4 bytes")
	}
	var paths []string
	for len(path) > 0 {
		if len(path) < 4 {
			return Details{}, errors.New("device path node is shorter than 4 bytes")
		}
		typ, sub := path[0], path[1]
		n := int(binary.LittleEndian.Uint16(path[2:4]))
		if len(path) < n {
			return Details{}, fmt.Errorf("data is too short: expected at least %d bytes", n)
		}
		if n < 4 {
			return Details{}, fmt.Errorf("device path node length %d is shorter than its header", n)
		}
		paths = append(paths, devicePathString(typ, sub, path[4:n]))
		path = path[n:]
	}
	return Details{DevicePaths: paths}, nil
}

// aaelTaggedEventID is the EV_EVENT_TAG id of AAEL events, "AAEL" read as
// a little-endian u32.
const aaelTaggedEventID = 0x4141454c

// eventTagDetails parses a TCG_PCClientTaggedEvent: id, size, data. The
// string is the data (lossy UTF-8, NULs removed); AAEL events also carry
// their parsed form.
func eventTagDetails(data []byte) (Details, error) {
	r := &reader{b: data}
	id, ok := r.u32()
	if !ok {
		return Details{}, errors.New("cannot read event id")
	}
	size, ok := r.u32()
	if !ok {
		return Details{}, errors.New("cannot read length")
	}
	ev, ok := r.bytes(uint64(size))
	if !ok {
		return Details{}, errors.New("failed to read description")
	}
	d := stringDetails(strings.ReplaceAll(lossyUTF8(ev), "\x00", ""))
	if id == aaelTaggedEventID {
		if !utf8.Valid(ev) {
			return Details{}, errors.New("illegal AAEL event data")
		}
		a, err := ParseAAEL(string(ev))
		if err != nil {
			return Details{}, err
		}
		name := "AAEL"
		d.Data, d.UnicodeName = &a, &name
	}
	return d, nil
}

// ParseAAEL parses AAEL text "<domain> <operation> <content>": the text up
// to the first space, up to the second, and the rest. Content that parses as
// JSON is kept as its value.
func ParseAAEL(s string) (AAEL, error) {
	domain, rest, ok := strings.Cut(s, " ")
	if !ok {
		return AAEL{}, errors.New("no space found in event string")
	}
	op, content, ok := strings.Cut(rest, " ")
	if !ok {
		return AAEL{}, errors.New("no second space found in event string")
	}
	a := AAEL{Domain: domain, Operation: op, Content: content}
	if v, ok := jsonValue(content); ok {
		a.Content = v
	}
	return a, nil
}

// jsonValue decodes s as exactly one JSON value (surrounding whitespace
// allowed), numbers kept as json.Number.
func jsonValue(s string) (any, bool) {
	if !json.Valid([]byte(s)) {
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// lossyUTF8 converts b to a string as Rust's String::from_utf8_lossy: each
// maximal subpart of an ill-formed sequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r != utf8.RuneError || n > 1 {
			sb.WriteRune(r)
			b = b[n:]
			continue
		}
		sb.WriteRune(utf8.RuneError)
		b = b[maximalSubpart(b):]
	}
	return sb.String()
}

// maximalSubpart returns the length of the longest prefix of b (at least 1)
// that starts a well-formed UTF-8 sequence; b does not start with one.
func maximalSubpart(b []byte) int {
	lead := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xbf)
	switch {
	case lead >= 0xc2 && lead <= 0xdf:
		need = 1
	case lead == 0xe0:
		need, lo = 2, 0xa0
	case lead >= 0xe1 && lead <= 0xec, lead == 0xee, lead == 0xef:
		need = 2
	case lead == 0xed:
		need, hi = 2, 0x9f
	case lead == 0xf0:
		need, lo = 3, 0x90
	case lead >= 0xf1 && lead <= 0xf3:
		need = 3
	case lead == 0xf4:
		need, hi = 3, 0x8f
	default:
		return 1
	}
	n := 1
	for i := 0; i < need && n < len(b); i++ {
		c := b[n]
		if i == 0 && (c < lo || c > hi) || i > 0 && (c < 0x80 || c > 0xbf) {
			break
		}
		n++
	}
	return n
}
