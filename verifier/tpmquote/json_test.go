package tpmquote

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/verifier"
)

func TestFieldsBytes(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []byte
		ok   bool
	}{
		{"bytes", `{"b":[0,1,255]}`, []byte{0, 1, 255}, true},
		{"spaces", "{\"b\": [ 0 ,\n1\t, 2 ] }", []byte{0, 1, 2}, true},
		{"empty", `{"b":[]}`, []byte{}, true},
		{"256", `{"b":[256]}`, nil, false},
		{"negative", `{"b":[-1]}`, nil, false},
		{"fraction", `{"b":[1.0]}`, nil, false},
		{"exponent", `{"b":[1e0]}`, nil, false},
		{"string", `{"b":"AAE="}`, nil, false},
		{"null", `{"b":null}`, nil, false},
		{"missing", `{}`, nil, false},
		{"nested", `{"b":[[1]]}`, nil, false},
		{"huge number", `{"b":[99999999999999999999999]}`, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseObject([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Bytes("b")
			if tc.ok != (err == nil) || !bytes.Equal(got, tc.want) {
				t.Fatalf("Bytes = %v, %v", got, err)
			}
			if err != nil && (!errors.Is(err, verifier.ErrMalformedEvidence) || !strings.Contains(err.Error(), "`b`")) {
				t.Errorf("error %v does not name the field", err)
			}
		})
	}
}

func TestDecodeBase64URL(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"AAA=", "\x00\x00", true},
		{"AAA", "\x00\x00", true},
		{"Ow==", ";", true},
		{"Ow=", ";", true}, // padding may be short (Indifferent)
		{"Ow", ";", true},
		{"Ow===", "", false},
		{"AAAA=", "", false},
		{"-_8", "\xfb\xff", true},
		{"+/8", "", false},
		{"Ox", "", false}, // non-zero trailing bits
		{"AA\nAA", "", false},
		{"", "", true},
	}
	for _, tc := range tests {
		got, err := DecodeBase64URL(tc.in)
		if tc.ok != (err == nil) || string(got) != tc.want {
			t.Errorf("DecodeBase64URL(%q) = %q, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{{"AQID", true}, {"AQ==", true}, {"AQ", false}, {"AR==", false}, {"-_8=", false}, {"AQ\n==", false}} {
		if _, err := DecodeBase64Std(tc.in); tc.ok != (err == nil) {
			t.Errorf("DecodeBase64Std(%q): %v", tc.in, err)
		}
	}
}

func TestFieldsScalars(t *testing.T) {
	f, err := ParseObject([]byte(`{"v":2,"f":2.0,"n":-1,"big":4294967296,"s":"x","h":"0A0b","odd":"abc","o":{},"l":["00","GG"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Uint32("v"); err != nil || v != 2 {
		t.Errorf("v = %d, %v", v, err)
	}
	for _, name := range []string{"f", "n", "big", "s", "missing"} {
		if _, err := f.Uint32(name); !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("Uint32(%s) = %v", name, err)
		}
	}
	if h, err := f.Hex("h"); err != nil || !bytes.Equal(h, []byte{10, 11}) {
		t.Errorf("Hex = %x, %v", h, err)
	}
	if _, err := f.Hex("odd"); err == nil {
		t.Error("odd-length hex accepted")
	}
	if _, err := f.String("v"); err == nil {
		t.Error("number accepted as string")
	}
	if _, err := f.Object("s"); err == nil {
		t.Error("string accepted as object")
	}
	if _, err := f.HexList("l"); err == nil {
		t.Error("bad hex element accepted")
	}
	for _, bad := range []string{`[]`, `null`, `"x"`, `{`} {
		if _, err := ParseObject([]byte(bad)); !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("ParseObject(%s) = %v", bad, err)
		}
	}
	if _, err := ParseObject(bytes.Repeat([]byte(" "), limits.MaxEvidenceBytes+1)); !errors.Is(err, verifier.ErrMalformedEvidence) {
		t.Error("oversized object accepted")
	}
}

func TestQuoteEncodings(t *testing.T) {
	f, err := ParseObject([]byte(`{"signature":[1,2],"message":[3],"pcrs":[[` + strings.Repeat("7,", 31) + `7]]}`))
	if err != nil {
		t.Fatal(err)
	}
	q, err := ByteQuote(f)
	if err != nil || len(q.PCRs) != 1 || q.PCRs[0][31] != 7 || !bytes.Equal(q.Signature, []byte{1, 2}) {
		t.Fatalf("ByteQuote = %+v, %v", q, err)
	}
	for _, bad := range []string{
		`{"signature":[1],"message":[3],"pcrs":[[1,2]]}`,
		`{"signature":[1],"message":[3]}`,
		`{"signature":"01","message":[3],"pcrs":[]}`,
		`{"signature":[1],"message":[3],"pcrs":{}}`,
	} {
		f, _ := ParseObject([]byte(bad))
		if _, err := ByteQuote(f); !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("ByteQuote(%s) = %v", bad, err)
		}
	}
	for _, bad := range []string{
		`{"signature":"0","message":"00","pcrs":[]}`,
		`{"signature":"00","message":[0],"pcrs":[]}`,
		`{"signature":"00","message":"00","pcrs":"00"}`,
		`{"signature":"00","message":"00"}`,
	} {
		f, _ := ParseObject([]byte(bad))
		if _, err := HexQuote(f); !errors.Is(err, verifier.ErrMalformedEvidence) {
			t.Errorf("HexQuote(%s) = %v", bad, err)
		}
	}
}
