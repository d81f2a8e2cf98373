package eventlog

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/guest/aael"
	"github.com/go-trustee/go-trustee/internal/testvectors"
)

// Upstream vectors (testdata/upstream, see internal/testvectors).
var (
	sharedEventlog = testvectors.Path("trustee/eventlog")
	sharedVerifier = testvectors.Path("trustee/verifier")
)

// extraVectorsEnv names a directory with more CCEL_* / CCEL_*_out.json
// pairs (e.g. a full copy of upstream's deps/eventlog/test_data) that
// TestGolden checks too.
const extraVectorsEnv = "EVENTLOG_EXTRA_VECTORS"

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonValueOf round-trips v through JSON into generic values, so that two
// documents compare structurally (key order and number spelling aside).
func jsonValueOf(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func goldenPairs(t *testing.T) map[string]string {
	t.Helper()
	pairs := map[string]string{}
	dirs := []string{sharedEventlog}
	if d := os.Getenv(extraVectorsEnv); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		outs, err := filepath.Glob(filepath.Join(dir, "CCEL_*_out.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range outs {
			pairs[strings.TrimSuffix(out, "_out.json")] = out
		}
	}
	if len(pairs) < 2 {
		t.Fatalf("found %d golden vectors, want at least the 2 shared ones", len(pairs))
	}
	return pairs
}

func TestGolden(t *testing.T) {
	for in, out := range goldenPairs(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			log, err := Parse(readFile(t, in))
			if err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal(readFile(t, out), &want); err != nil {
				t.Fatal(err)
			}
			got := jsonValueOf(t, log)
			if !reflect.DeepEqual(got, want) {
				g := got.(map[string]any)["uefi_event_logs"].([]any)
				w := want.(map[string]any)["uefi_event_logs"].([]any)
				if len(g) != len(w) {
					t.Fatalf("got %d events, want %d", len(g), len(w))
				}
				for i := range g {
					if !reflect.DeepEqual(g[i], w[i]) {
						t.Fatalf("event %d:\ngot  %v\nwant %v", i, g[i], w[i])
					}
				}
				t.Fatal("documents differ")
			}
		})
	}
}

// TestGoldenIsByteExactForEvents checks that each event encodes with the
// field order of upstream's serde structs.
func TestEventJSONFieldOrder(t *testing.T) {
	log, err := Parse(readFile(t, filepath.Join(sharedEventlog, "CCEL_data_ovmf")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(log.Events[2])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"details":{"unicode_name":"SecureBoot","unicode_name_length":10,"variable_data":"","variable_data_length":0,"variable_name":"61dfe48b-ca93-d211-aa0d-00e098032b8c"},"digest_matches_event":true,"digests":[{"alg":"SHA-384","digest":"9dc3a1f80bcec915391dcda5ffbb15e7419f77eab462bbf72b42166fb70d50325e37b36f93537a863769bcf9bedae6fb"}],"event":"Yd/ki8qT0hGqDQDgmAMrjAoAAAAAAAAAAAAAAAAAAABTAGUAYwB1AHIAZQBCAG8AbwB0AA==","index":1,"type_name":"EV_EFI_VARIABLE_DRIVER_CONFIG"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestReplay(t *testing.T) {
	zero := strings.Repeat("00", 48)
	tests := []struct {
		name string
		path string
		want [4]string // registers 1..4
	}{
		{
			// Register values from upstream's RTMR integrity test.
			name: "ovmf",
			path: filepath.Join(sharedEventlog, "CCEL_data_ovmf"),
			want: [4]string{
				"8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
				"775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
				"94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
				zero,
			},
		},
		{
			name: "td-shim (the verifier's CCEL_data)",
			path: filepath.Join(sharedVerifier, "CCEL_data"),
			want: [4]string{
				"2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
				"0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
				zero, zero,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, err := Parse(readFile(t, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			var refs []Reference
			for i, w := range tc.want {
				got, err := log.Replay(uint32(i+1), AlgSHA384)
				if err != nil {
					t.Fatal(err)
				}
				if hex.EncodeToString(got) != w {
					t.Errorf("register %d = %x, want %s", i+1, got, w)
				}
				refs = append(refs, Reference{Index: uint32(i + 1), Algorithm: AlgSHA384, Value: unhex(t, w)})
			}
			if err := log.ReplayAndMatch(refs); err != nil {
				t.Fatal(err)
			}
			refs[1].Value[0] ^= 1
			err = log.ReplayAndMatch(refs)
			if !errors.Is(err, ErrReplayMismatch) || !strings.Contains(err.Error(), "[index = 2]") {
				t.Fatalf("tampered reference: %v", err)
			}
		})
	}
}

func TestReplayUnsupportedAlgorithm(t *testing.T) {
	log := &Log{}
	for _, alg := range []Algorithm{AlgRSA, AlgSHA1, Algorithm(0x99)} {
		if _, err := log.Replay(1, alg); !errors.Is(err, ErrUnsupportedAlgorithm) {
			t.Errorf("Replay(%s) = %v, want ErrUnsupportedAlgorithm", alg, err)
		}
	}
}

func TestSM3(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{strings.Repeat("abcd", 16), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
	}
	for _, tc := range tests {
		got, err := AlgSM3.Sum([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("SM3(%q) = %x, want %s", tc.in, got, tc.want)
		}
		// Byte-at-a-time writes and Sum in the middle give the same digest.
		h := newSM3()
		for i := 0; i < len(tc.in); i++ {
			h.Write([]byte{tc.in[i]})
			h.Sum(nil)
		}
		if hex.EncodeToString(h.Sum(nil)) != tc.want {
			t.Errorf("incremental SM3(%q) differs", tc.in)
		}
	}
}

func strp(s string) *string { return &s }
func u64p(v uint64) *uint64 { return &v }

func TestDetails(t *testing.T) {
	tests := []struct {
		name string
		typ  EventType
		data string // hex
		want Details
	}{
		{"simple", EvEFIAction, "43616c6c696e6720454649204170706c69636174696f6e2066726f6d20426f6f74204f7074696f6e", stringDetails("Calling EFI Application from Boot Option")},
		{"simple empty", EvPostCode, "", stringDetails("")},
		{"simple control char", EvAction, "0f", stringDetails("\x0f")},
		{"handoff tables", EvEFIHandoffTables2, "095464785461626c65000100000000000000af96bb93f2b9b84e9462e0ba745642360090800000000000", stringDetails("TdxTable")},
		{"firmware blob", EvEFIPlatformFirmwareBlob2, "0b74645f7061796c6f61640000109000000000000000001000000000", stringDetails("td_payload")},
		{"config flags", EvPlatformConfigFlags, "414350492044415441", stringDetails("ACPI DATA")},
		{"config flags with 0x10 and NULs", EvPlatformConfigFlags, "74645f7061796c6f61645f696e666f0000100000726f6f743d2f6465762f766461310000", stringDetails("td_payload_info root=/dev/vda1")},
		{"config flags not utf-8", EvPlatformConfigFlags, "74645f686f6200ff80", stringDetails("")},
		{"ipl", EvIPL, "4d6f6b4c6973745800", stringDetails("MokListX")},
		{"ipl no terminator", EvIPL, "4d6f6b", stringDetails("Mok")},
		{"ipl grub", EvIPL, "677275625f636d64207365742070616765723d310000", stringDetails("grub_cmd set pager=1")},
		{"ipl utf-16 (GCE)", EvIPL, "2e006c0069006e00750078000000", stringDetails("linux")},
		{"ipl not utf-8 is hex", EvIPL, "ff8000", stringDetails("ff8000")},
		{"separator", EvSeparator, "00000000", Details{}},
		{"unparsed type", EvEFIGPTEvent, "0102", Details{}},
		{"efi variable", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c0900000000000000020000000000000042006f006f0074004f0072006400650072000000",
			Details{UnicodeName: strp("BootOrder"), UnicodeNameLength: u64p(9), VariableData: strp("AAA="), VariableDataLength: u64p(2), VariableName: strp("61dfe48b-ca93-d211-aa0d-00e098032b8c")}},
		{"efi variable authority", EvEFIVariableAuthority, "50ab5d6046e00043abb63dd810dd8b2309000000000000002e0000000000000053006200610074004c006500760065006c00736261742c312c323032333031323930300a7368696d2c320a677275622c330a677275622e64656269616e2c340a",
			Details{UnicodeName: strp("SbatLevel"), UnicodeNameLength: u64p(9), VariableData: strp("c2JhdCwxLDIwMjMwMTI5MDAKc2hpbSwyCmdydWIsMwpncnViLmRlYmlhbiw0Cg=="), VariableDataLength: u64p(46), VariableName: strp("50ab5d60-46e0-0043-abb6-3dd810dd8b23")}},
		{"event tag", EvEventTag, "ed223b8f1a0000004c4f414445445f494d4147453a3a4c6f61644f7074696f6e7300", stringDetails("LOADED_IMAGE::LoadOptions")},
		{"event tag lossy", EvEventTag, "01000000030000006180ff", stringDetails("a\uFFFD\uFFFD")},
		{"boot services app", EvEFIBootServicesApplication, "1800b37c0000000000a2a5000000000000000000000000002a000000000000000403140072f728144ab61e44b8c39ebdd7f893c7040412006b00650072006e0065006c0000007fff0400",
			Details{DevicePaths: []string{"VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7,)", "File(kernel)"}}},
		{"boot services app, many nodes", EvEFIBootServicesApplication, "18406a7d0000000008c00e00000000000000000000000000820000000000000002010c00d041030a0000000001010600000101010600000001010600000101010600000004012a000f000000002800000000000000500300000000005e27f1007553d5439eb5de2add4c99320202040430005c004500460049005c0042004f004f0054005c0042004f004f0054005800360034002e0045004600490000007fff0400",
			Details{DevicePaths: []string{"ACPI(PNP0A03,0)", "Pci(0,1)", "Pci(0,0)", "Pci(0,1)", "Pci(0,0)", "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)", `File(\EFI\BOOT\BOOTX64.EFI)`}}},
		{"boot services app, no path", EvEFIBootServicesApplication, "009d9b7a000000008879e4000000000000000000000000000000000000000000", Details{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDetails(tc.typ, unhex(t, tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(jsonValueOf(t, got), jsonValueOf(t, tc.want)) {
				t.Fatalf("got  %s\nwant %s", mustJSON(t, got), mustJSON(t, tc.want))
			}
		})
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDetailsErrors(t *testing.T) {
	tests := []struct {
		name string
		typ  EventType
		data string
		want string
	}{
		{"simple not utf-8", EvEFIAction, "ff", "invalid utf-8"},
		{"length-prefixed empty", EvEFIHandoffTables2, "", "at least 1 byte"},
		{"length-prefixed short", EvEFIHandoffTables2, "0f", "at least 15 bytes"},
		{"length-prefixed zero length", EvEFIPlatformFirmwareBlob2, "00", "zero"},
		{"length-prefixed invalid utf-8", EvEFIHandoffTables2, "0F74645f7061796c6f61640000109000000000000000001000000000", "invalid utf-8"},
		{"ipl short", EvIPL, "4d", "at least 2 bytes"},
		{"ipl utf-16 empty", EvIPL, "2e00", "not UTF-16"},
		{"ipl utf-16 odd", EvIPL, "2e0000", "not UTF-16"},
		{"efi variable no guid", EvEFIVariableBoot, "", "GUID"},
		{"efi variable no name length", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c", "unicode name length"},
		{"efi variable no data length", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c0a00000000000000", "variable data length"},
		{"efi variable name out of bounds", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c0a000000000000000000000000000000", "description bytes"},
		{"efi variable huge name", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8cffffffffffffffff0000000000000000", "description bytes"},
		{"efi variable data out of bounds", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c00000000000000000500000000000000", "variable_data"},
		{"efi variable lone surrogate", EvEFIVariableBoot, "61dfe48bca93d211aa0d00e098032b8c0100000000000000000000000000000000d8", "surrogate"},
		{"event tag empty", EvEventTag, "", "event id"},
		{"event tag no length", EvEventTag, "0f", "event id"},
		{"event tag short", EvEventTag, "0F74645f7061796c6f61640000109000000000000000001000000000", "description"},
		{"aael without spaces", EvEventTag, "4c45414103000000616263", "no space"},
		{"aael one space", EvEventTag, "4c4541410300000061206263", "no second space"},
		{"aael not utf-8", EvEventTag, "4c45414105000000612062ff63", "illegal AAEL"},
		{"boot services short", EvEFIBootServicesApplication, "00", "at least 32"},
		{"boot services path beyond data", EvEFIBootServicesApplication, "00000000000000000000000000000000000000000000000030000000000000000403", "shorter than claimed"},
		{"boot services path length under 4", EvEFIBootServicesApplication, "00000000000000000000000000000000000000000000000002000000000000000403", "shorter than claimed"},
		{"boot services zero node length", EvEFIBootServicesApplication, "000000000000000000000000000000000000000000000000080000000000000004030000", "shorter than its header"},
		{"boot services node beyond path", EvEFIBootServicesApplication, "000000000000000000000000000000000000000000000000080000000000000004031000", "at least 16"},
		{"boot services truncated node", EvEFIBootServicesApplication, "0000000000000000000000000000000000000000000000000a0000000000000001010400ffff", "shorter than 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDetails(tc.typ, unhex(t, tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDevicePathNodes(t *testing.T) {
	tests := []struct {
		name     string
		typ, sub byte
		data     string
		want     string
	}{
		{"acpi", 2, 1, "d041030a00000000", "ACPI(PNP0A03,0)"},
		{"acpi uid", 2, 1, "d041030a02000000", "ACPI(PNP0A03,2)"},
		{"acpi unknown subtype", 2, 2, "d041030a", "Path(2,2,d041030a)"},
		{"bbs", 5, 1, "0500000000", "BBS(USB,,0)"},
		{"bbs numeric type", 5, 1, "F0FF000000", "BBS(65520,,0)"},
		{"bbs description", 5, 1, "8000000041424300", "BBS(DEV,ABC,0)"},
		{"pci", 1, 1, "0001", "Pci(0,1)"},
		{"pci short", 1, 1, "00", "Path(1,1,00)"},
		{"hardware unknown", 1, 4, "0000", "Path(1,4,0000)"},
		{"hd gpt", 4, 1, "0f000000002800000000000000500300000000005e27f1007553d5439eb5de2add4c99320202", "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)"},
		{"hd mbr no partition", 4, 1, "00000000000000000000000000000000000000000000000000000000431202a0000000000101", "HD(0,MBR,0x00000000)"},
		{"hd mbr", 4, 1, "01000000000800000000000000E02E0000000000431202a000000000431202a0000000000101", "HD(1,MBR,0xa0021243,0x800,0x2ee000)"},
		{"hd too short", 4, 1, "0f00", "Path(4,1,0f00)"},
		{"vendor media", 4, 3, "f8d1c555cd04b5468a20e56cbb3052d0", "VenMedia(55C5D1F8-04CD-46B5-8A20-E56CBB3052D0,)"},
		{"file", 4, 4, "5c004500460049005c0042004f004f0054005c00660062007800360034002e006500660069000000", `File(\EFI\BOOT\fbx64.efi)`},
		{"file odd length", 4, 4, "5c0045", "Path(4,4,5c0045)"},
		{"usb", 3, 5, "0000", "USB(0,0)"},
		{"mac", 3, 0x0b, "001320f5fa77000000000000000000000000000000000000000000000000000001", "Mac(001320F5FA77,0x01)"},
		{"ipv4", 3, 0x0c, "0100A8C06400A8C00000BC0C0600010000000000000000", "IPv4(192.168.0.100,TCP,Static,192.168.0.1)"},
		{"fibre ex", 3, 0x15, "00010203040506070001020304050607", "FibreEx(0x0001020304050607,0x0001020304050607)"},
		{"messaging unknown", 3, 0x01, "0000", "Path(3,1,0000)"},
		{"unknown type", 0x7f, 0xff, "", "Path(127,255,)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := devicePathString(tc.typ, tc.sub, unhex(t, tc.data)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"a\xffb", "a\uFFFDb"},
		{"\xff\xff", "\uFFFD\uFFFD"},
		{"\xe2\x82", "\uFFFD"},                 // truncated 3-byte sequence: one maximal subpart
		{"\xe2\x82x", "\uFFFDx"},               // same, followed by ASCII
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: ED A0 is not a valid prefix
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xc0\xaf", "\uFFFD\uFFFD"},
	}
	for _, tc := range tests {
		if got := lossyUTF8([]byte(tc.in)); got != tc.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseAAEL(t *testing.T) {
	tests := []struct {
		in   string
		want AAEL
	}{
		{"coco.com some-operation some-content", AAEL{"coco.com", "some-operation", "some-content"}},
		{`github.com/confidential-containers PullImage {"image":"x", "digest":"sha256:00"}`,
			AAEL{"github.com/confidential-containers", "PullImage", map[string]any{"image": "x", "digest": "sha256:00"}}},
		{"d o 1.50", AAEL{"d", "o", json.Number("1.50")}},
		{"d o {\"a\":1} trailing", AAEL{"d", "o", "{\"a\":1} trailing"}},
		{"d o  spaced content ", AAEL{"d", "o", " spaced content "}},
		{"d o ", AAEL{"d", "o", ""}},
	}
	for _, tc := range tests {
		got, err := ParseAAEL(tc.in)
		if err != nil {
			t.Fatalf("ParseAAEL(%q): %v", tc.in, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAAEL(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

// TestAAELRoundTrip parses what the guest's AAEL writer (guest/aael)
// produces: the event, its details and digest, the replayed register, and
// re-encoding gives the writer's bytes back.
func TestAAELRoundTrip(t *testing.T) {
	text, err := aael.Text("github.com/confidential-containers", "PullImage", `{"image":"docker.io/library/busybox:latest", "digest":"sha256:abcd"}`)
	if err != nil {
		t.Fatal(err)
	}
	record, digest, err := aael.EncodeEvent(4, crypto.SHA384, text)
	if err != nil {
		t.Fatal(err)
	}
	logBytes := append(append(aael.NoCCELHeader(), record...), aael.EndMarker()...)
	log, err := Parse(logBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Events) != 1 {
		t.Fatalf("parsed %d events, want 1", len(log.Events))
	}
	ev := log.Events[0]
	if ev.Index != 4 || ev.Type != EvEventTag || len(ev.Digests) != 1 || ev.Digests[0].Alg != AlgSHA384 || !bytes.Equal(ev.Digests[0].Digest, digest) {
		t.Fatalf("parsed event %s", mustJSON(t, ev))
	}
	if d := ev.Details; d.Data == nil || d.Data.Operation != "PullImage" || *d.UnicodeName != "AAEL" || *d.String != text {
		t.Fatalf("AAEL details not parsed: %s", mustJSON(t, d))
	}
	if !ev.DigestMatchesEvent {
		t.Fatal("digest does not match the event")
	}
	back, err := ev.AppendBinary(nil)
	if err != nil || !bytes.Equal(back, record) {
		t.Fatalf("re-encoded event differs from the writer's record (%v)", err)
	}
	// The register holds the single SHA-384 digest extended into zeros.
	h, _ := AlgSHA384.New()
	h.Write(make([]byte, 48))
	h.Write(digest)
	got, err := log.Replay(4, AlgSHA384)
	if err != nil || !bytes.Equal(got, h.Sum(nil)) {
		t.Fatalf("Replay = %x, %v", got, err)
	}
	if log.DigestSizes[AlgSHA384] != 48 || log.DigestSizes[AlgSM3] != 32 {
		t.Fatalf("digest sizes %v", log.DigestSizes)
	}
}

func TestAppendBinaryErrors(t *testing.T) {
	if _, err := (Event{Digests: []Digest{{Alg: AlgSHA384, Digest: []byte{1}}}}).AppendBinary(nil); err == nil {
		t.Error("AppendBinary accepted a short digest")
	}
}

// specID builds a Spec ID event declaring the given (algorithm, size) pairs.
func specID(algs ...[2]uint16) []byte {
	spec := make([]byte, 24)
	copy(spec, "Spec ID Event03\x00")
	spec = append(spec, byte(len(algs)), 0, 0, 0)
	for _, a := range algs {
		spec = append(spec, byte(a[0]), byte(a[0]>>8), byte(a[1]), byte(a[1]>>8))
	}
	spec = append(spec, 0) // vendor info size
	b := make([]byte, 28)
	b[4] = byte(EvNoAction)
	b = append(b, byte(len(spec)), byte(len(spec)>>8), 0, 0)
	return append(b, spec...)
}

func TestParseErrors(t *testing.T) {
	header := specID([2]uint16{0xc, 48})
	rec, _, err := aael.EncodeEvent(1, crypto.SHA384, "a b c")
	if err != nil {
		t.Fatal(err)
	}
	good := append(append([]byte(nil), header...), rec...)
	sha1Event := append(append([]byte(nil), specID([2]uint16{0x4, 20})...),
		append([]byte{1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 4, 0}, append(make([]byte, 20), 0, 0, 0, 0)...)...)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated header", header[:10], ErrMalformed},
		{"unknown first event type", append([]byte{0, 0, 0, 0, 0x42, 0, 0, 0}, header[8:]...), ErrMalformed},
		{"spec id overruns", header[:len(header)-1], ErrMalformed},
		{"unknown algorithm in spec id", specID([2]uint16{0x99, 48}), ErrMalformed},
		{"trailing bytes after spec id", append(append([]byte(nil), header[:28]...), append([]byte{byte(len(header) - 31), 0, 0, 0}, header[32:]...)...), ErrMalformed},
		{"partial stop flag", append(append([]byte(nil), good...), 1, 2, 3), ErrMalformed},
		{"truncated event", good[:len(good)-1], ErrMalformed},
		{"unknown event type", append(append([]byte(nil), header...), 1, 0, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		{"undeclared algorithm", append(append([]byte(nil), header...), 1, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0xb, 0), ErrMalformed},
		{"sha-1 digests cannot be checked", sha1Event, ErrUnsupportedAlgorithm},
		{"too large", make([]byte, MaxLogBytes+1), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.data); !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
		})
	}
	// The good log parses, with and without end markers of either kind.
	for _, tail := range [][]byte{nil, aael.EndMarker(), make([]byte, 8)} {
		log, err := Parse(append(append([]byte(nil), good...), tail...))
		if err != nil || len(log.Events) != 1 {
			t.Fatalf("good log with tail %x: %v", tail, err)
		}
	}
}

func FuzzEventLog(f *testing.F) {
	for _, p := range []string{filepath.Join(sharedEventlog, "CCEL_data_ovmf"), filepath.Join(sharedEventlog, "CCEL_AAEL_alibabacloud")} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		// Trim the zero padding after the end of the log.
		if i := bytes.Index(b, make([]byte, 16)); i > 0 {
			b = b[:i+8]
		}
		f.Add(b)
	}
	rec, _, _ := aael.EncodeEvent(4, crypto.SHA384, `d o {"k":[1,2,{"x":null}]}`)
	f.Add(append(aael.NoCCELHeader(), rec...))
	f.Fuzz(func(t *testing.T, data []byte) {
		log, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedAlgorithm) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if _, err := json.Marshal(log); err != nil {
			t.Fatalf("parsed log does not encode: %v", err)
		}
		// Re-encoding the events and parsing them again gives the same log.
		var again []byte
		again = append(again, data[:specIDLen(data)]...)
		for _, e := range log.Events {
			if again, err = e.AppendBinary(again); err != nil {
				return // digest sizes declared differently from the algorithm's
			}
		}
		log2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded log does not parse: %v", err)
		}
		if !reflect.DeepEqual(mustJSON(t, log2), mustJSON(t, log)) {
			t.Fatalf("re-encoded log differs")
		}
		for _, alg := range []Algorithm{AlgSHA256, AlgSHA384, AlgSM3} {
			for i := uint32(0); i < 5; i++ {
				if _, err := log.Replay(i, alg); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// specIDLen returns the length of the first event of a log that parsed.
func specIDLen(data []byte) int {
	r := &reader{b: data, off: 28}
	size, _ := r.u32()
	if EventType(uint32(data[4])|uint32(data[5])<<8|uint32(data[6])<<16|uint32(data[7])<<24) != EvNoAction {
		return 32
	}
	return 32 + int(size)
}
