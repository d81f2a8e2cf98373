package eventlog

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// devicePathString renders one UEFI device path node the way upstream's
// parsers do, or "Path(<type>,<subtype>,<hex data>)" for nodes they do not
// know (or cannot parse).
func devicePathString(typ, sub byte, data []byte) string {
	s, err := devicePathNode(typ, sub, data)
	if err != nil {
		return fmt.Sprintf("Path(%d,%d,%s)", typ, sub, hex.EncodeToString(data))
	}
	return s
}

var errUnknownNode = errors.New("unknown device path node")

func devicePathNode(typ, sub byte, data []byte) (string, error) {
	switch {
	case typ == 0x01 && sub == 0x01: // Hardware: PCI
		if len(data) < 2 {
			return "", errors.New("PCI data is too short")
		}
		return fmt.Sprintf("Pci(%d,%d)", data[0], data[1]), nil
	case typ == 0x02 && sub == 0x01: // ACPI
		return acpiNode(data)
	case typ == 0x03:
		return messagingNode(sub, data)
	case typ == 0x04:
		return mediaNode(sub, data)
	case typ == 0x05 && sub == 0x01: // BIOS Boot Specification
		return bbsNode(data)
	}
	return "", errUnknownNode
}

func acpiNode(data []byte) (string, error) {
	if len(data) < 8 {
		return "", errors.New("ACPI sub type data length must be at least 8 bytes")
	}
	hid := binary.LittleEndian.Uint32(data[0:4])
	uid := binary.LittleEndian.Uint32(data[4:8])
	vendor := hid & 0xffff
	c := func(shift uint) byte { return byte((vendor>>shift)&0x1f) + '@' }
	return fmt.Sprintf("ACPI(%c%c%c%04X,%d)", c(10), c(5), c(0), hid>>16, uid), nil
}

func bbsNode(data []byte) (string, error) {
	if len(data) < 4 {
		return "", errors.New("BBS data is too short")
	}
	var devType string
	switch t := binary.LittleEndian.Uint16(data[0:2]); t {
	case 0x01:
		devType = "FLOPPY"
	case 0x02:
		devType = "HARD_DRIVE"
	case 0x03:
		devType = "CDROM"
	case 0x04:
		devType = "PCMCIA"
	case 0x05:
		devType = "USB"
	case 0x06:
		devType = "EMBEDDED_NETWORK"
	case 0x80:
		devType = "DEV"
	case 0xff:
		devType = "UNKNOWN"
	default:
		devType = fmt.Sprint(t)
	}
	status := binary.LittleEndian.Uint16(data[2:4])
	desc := data[4:]
	for i, b := range desc {
		if b == 0 {
			desc = desc[:i]
			break
		}
	}
	if !utf8.Valid(desc) {
		return "", errors.New("failed to parse description")
	}
	return fmt.Sprintf("BBS(%s,%s,%d)", devType, desc, status), nil
}

func messagingNode(sub byte, data []byte) (string, error) {
	switch sub {
	case 0x15: // Fibre Channel Ex
		if len(data) < 16 {
			return "", errors.New("fibre channel data is too short")
		}
		return fmt.Sprintf("FibreEx(0x%x,0x%x)", data[0:8], data[8:16]), nil
	case 0x05: // USB
		if len(data) < 2 {
			return "", errors.New("USB data is too short")
		}
		return fmt.Sprintf("USB(%d,%d)", data[0], data[1]), nil
	case 0x0b: // MAC address
		if len(data) != 33 {
			return "", errors.New("MAC data is too short")
		}
		mac := strings.ToUpper(strings.TrimRight(hex.EncodeToString(data[0:31]), "0"))
		return fmt.Sprintf("Mac(%s,0x%02x)", mac, data[32]), nil
	case 0x0c: // IPv4
		return ipv4Node(data)
	}
	return "", errUnknownNode
}

// ipv4Node renders an IPv4 node. Like upstream, the addresses are read as
// little-endian integers and printed most significant byte first, and the
// gateway and subnet mask as decimal integers.
func ipv4Node(data []byte) (string, error) {
	if len(data) < 23 {
		return "", errors.New("IPv4 data is too short")
	}
	addr := func(v uint32) string {
		return fmt.Sprintf("%d.%d.%d.%d", byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	local := binary.LittleEndian.Uint32(data[0:4])
	remote := binary.LittleEndian.Uint32(data[4:8])
	var proto string
	switch binary.LittleEndian.Uint16(data[12:14]) {
	case 6:
		proto = "TCP"
	case 17:
		proto = "UDP"
	}
	var kind string
	switch data[14] {
	case 0:
		kind = "DHCP"
	case 1:
		kind = "Static"
	}
	gw := binary.LittleEndian.Uint32(data[15:19])
	mask := binary.LittleEndian.Uint32(data[19:23])
	extra := ""
	if gw != 0 || mask != 0 {
		extra = fmt.Sprintf(",%d,%d", gw, mask)
	}
	return fmt.Sprintf("IPv4(%s,%s,%s,%s%s)", addr(remote), proto, kind, addr(local), extra), nil
}

// uefiGUID formats a GUID in its mixed-endian registry form, uppercase.
func uefiGUID(g []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]), binary.LittleEndian.Uint16(g[6:8]),
		g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15])
}

func mediaNode(sub byte, data []byte) (string, error) {
	switch sub {
	case 0x01: // Hard drive
		// Upstream checks for 37 bytes but reads the signature type at
		// offset 37, so 38 are needed.
		if len(data) < 38 {
			return "", errors.New("hard drive data is too short")
		}
		part := binary.LittleEndian.Uint32(data[0:4])
		start := binary.LittleEndian.Uint64(data[4:12])
		size := binary.LittleEndian.Uint64(data[12:20])
		sig := data[20:36]
		var format, sigStr string
		switch data[36] {
		case 0x01:
			format, sigStr = "MBR", fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(sig[0:4]))
		case 0x02:
			format, sigStr = "GPT", uefiGUID(sig)
		default:
			return "", fmt.Errorf("unknown partition format %d", data[36])
		}
		details := ""
		if part != 0 {
			details = fmt.Sprintf(",%#x,%#x", start, size)
		}
		return fmt.Sprintf("HD(%d,%s,%s%s)", part, format, sigStr, details), nil
	case 0x03: // Vendor
		if len(data) < 16 {
			return "", errors.New("vendor media data is too short")
		}
		return fmt.Sprintf("VenMedia(%s,%s)", uefiGUID(data[0:16]), hex.EncodeToString(data[16:])), nil
	case 0x04: // File path
		if len(data) == 0 || len(data)%2 != 0 {
			return "", errors.New("file path is too short")
		}
		return fmt.Sprintf("File(%s)", utf16Lossy(data[:len(data)-2])), nil
	}
	return "", errUnknownNode
}
