package vaultkv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestDecodeSecretForms checks the field handling of upstream's
// read_secret_resource: string, byte array, other JSON, missing key.
func TestDecodeSecretForms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		body    string
		want    string
		class   error
		msg     string
	}{
		{name: "v1 string", version: 1, body: `{"request_id":"x","data":{"data":"s3cret"}}`, want: "s3cret"},
		{name: "v1 escaped string", version: 1, body: `{"data":{"data":"a\u003cb\n\"c\"\u00e9"}}`, want: "a<b\n\"c\"é"},
		{name: "v1 unicode", version: 1, body: `{"data":{"data":"こんにちは世界"}}`, want: "こんにちは世界"},
		{name: "v1 empty string", version: 1, body: `{"data":{"data":""}}`, want: ""},
		{name: "v1 byte array", version: 1, body: `{"data":{"data":[116, 101,115 ,116]}}`, want: "test"},
		{name: "v1 empty array", version: 1, body: `{"data":{"data":[]}}`, want: ""},
		{name: "v1 binary array", version: 1, body: `{"data":{"data":[0,255,128]}}`, want: "\x00\xff\x80"},
		{name: "v1 object", version: 1, body: `{"data":{"data":{"user": "a", "n": 1.50}}}`, want: `{"user":"a","n":1.50}`},
		{name: "v1 number", version: 1, body: `{"data":{"data":12345}}`, want: "12345"},
		{name: "v1 null", version: 1, body: `{"data":{"data":null}}`, want: "null"},
		{name: "v1 bool", version: 1, body: `{"data":{"data":true}}`, want: "true"},
		{name: "v2 string", version: 2, body: `{"data":{"data":{"data":"s3cret"},"metadata":{"version":3}}}`, want: "s3cret"},
		{name: "v2 array", version: 2, body: `{"data":{"data":{"data":[104,105]},"metadata":{}}}`, want: "hi"},
		{name: "v2 deleted", version: 2, body: `{"data":{"data":null,"metadata":{"deletion_time":"2026-01-01T00:00:00Z"}}}`, class: ErrNotFound, msg: "Secret not found at path 'r/t/g'"},
		{name: "v1 missing key", version: 1, body: `{"data":{"value":"x","b":"y"}}`, class: ErrMalformed,
			msg: `Secret exists at path 'r/t/g' but missing required 'data' key. Available keys: ["b", "value"]`},
		{name: "v2 missing key", version: 2, body: `{"data":{"data":{"password":"x"}}}`, class: ErrMalformed, msg: `Available keys: ["password"]`},
		{name: "v1 no data", version: 1, body: `{"errors":[]}`, class: ErrMalformed, msg: "the reply has no data"},
		{name: "v2 no data", version: 2, body: `{"data":null}`, class: ErrMalformed, msg: "the reply has no data"},
		{name: "not JSON", version: 1, body: `{"data":{"data":"s3cret"`, class: ErrMalformed, msg: "not JSON"},
		{name: "data not object", version: 1, body: `{"data":"s3cret"}`, class: ErrMalformed},
		{name: "array 256", version: 1, body: `{"data":{"data":[1,256]}}`, class: ErrMalformed, msg: "invalid byte array in data: element 1"},
		{name: "array negative", version: 1, body: `{"data":{"data":[-1]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "array null", version: 1, body: `{"data":{"data":[null]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "array float", version: 1, body: `{"data":{"data":[1.0]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "array exponent", version: 1, body: `{"data":{"data":[1e0]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "array string", version: 1, body: `{"data":{"data":["a"]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "array nested", version: 1, body: `{"data":{"data":[[1]]}}`, class: ErrMalformed, msg: "invalid byte array"},
		{name: "too large string", version: 1, body: `{"data":{"data":"0123456789abcdef0123456789abcdefX"}}`, class: ErrTooLarge, msg: "larger than the limit of 32"},
		{name: "too large array", version: 1, body: `{"data":{"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33]}}`, class: ErrTooLarge},
		{name: "too large object", version: 1, body: `{"data":{"data":{"k":"0123456789abcdef0123456789abcdef"}}}`, class: ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeSecret(tc.version, "r/t/g", []byte(tc.body), 32)
			if tc.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tc.want || got == nil {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v, want class %v", err, tc.class)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not contain %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "0123456789") {
				t.Fatalf("the value is in the error: %q", err)
			}
		})
	}
}

// TestEncodeSecret checks the write format: a string for UTF-8, an array
// otherwise, in the v1 and v2 envelopes.
func TestEncodeSecret(t *testing.T) {
	for _, tc := range []struct {
		version int
		value   string
		want    string
	}{
		{1, "test", `{"data":"test"}`},
		{1, "a<b>&\"\\\n\x01é", `{"data":"a<b>&\"\\\n\u0001é"}`},
		{1, "", `{"data":""}`},
		{1, "\xff\x00a", `{"data":[255,0,97]}`},
		{2, "test", `{"data":{"data":"test"}}`},
		{2, "\xc3", `{"data":{"data":[195]}}`},
	} {
		if got := string(encodeSecret(tc.version, []byte(tc.value))); got != tc.want {
			t.Errorf("encodeSecret(%d, %q) = %s, want %s", tc.version, tc.value, got, tc.want)
		}
	}
}

// replyOf is the read reply Vault gives for a secret written with body.
func replyOf(body []byte) []byte {
	return append(append([]byte(`{"data":`), body...), '}')
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	values := [][]byte{nil, []byte("x"), []byte("line\nbreak\t\"quoted\" \\ </script>"), {0, 1, 2, 0xff, 0xfe}, []byte("\u2028\u2029"), bytes.Repeat([]byte{0x80}, 1000)}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values = append(values, all, all[:128])
	for _, v := range values {
		for _, version := range []int{1, 2} {
			got, err := decodeSecret(version, "r/t/g", replyOf(encodeSecret(version, v)), 1<<20)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("v%d round trip of %q: %q, %v", version, v, got, err)
			}
		}
	}
}

func TestDecodeErrorReply(t *testing.T) {
	errs, warns := decodeErrorReply([]byte(`{"errors":["1 error occurred:\n\t* permission denied\n\n"],"warnings":["w"]}`))
	if len(errs) != 1 || errs[0] != "permission denied" || len(warns) != 1 {
		t.Fatalf("%q %q", errs, warns)
	}
	errs, _ = decodeErrorReply([]byte(`{"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}`))
	if strings.Join(errs, "|") != "permission denied|invalid token" {
		t.Fatalf("%q", errs)
	}
	if errs, warns := decodeErrorReply([]byte("<html>")); errs != nil || warns != nil {
		t.Fatal("HTML decoded")
	}
	long := strings.Repeat("x", 1000)
	errs, _ = decodeErrorReply([]byte(`{"errors":["` + long + `","a","b","c","d","e"]}`))
	if len(errs) != 4 || len(errs[0]) > 310 {
		t.Fatalf("not bounded: %d messages, first %d bytes", len(errs), len(errs[0]))
	}
}

// FuzzDecodeSecret feeds arbitrary replies to the decoder (it must not
// panic, must respect the bound and keep its errors short) and checks
// that every value survives encodeSecret → Vault reply → decodeSecret.
func FuzzDecodeSecret(f *testing.F) {
	for _, s := range []string{
		`{"data":{"data":"s"}}`, `{"data":{"data":[1,2,3]}}`, `{"data":{"data":{"a":[1,{"b":null}]}}}`,
		`{"data":{"data":{"data":"s"},"metadata":{"version":1}}}`, `{"data":{"data":null,"metadata":{}}}`,
		`{"data":{"x":1}}`, `{"errors":["permission denied"]}`, `{"data":{"data":[ 1 , 2 ]}}`, `{"data":{"data":[01]}}`,
		`{"data":{"data":[255,256]}}`, `[`, ``, `null`,
	} {
		f.Add([]byte(s), false, []byte("value"))
		f.Add([]byte(s), true, []byte{0xff, 0})
	}
	f.Fuzz(func(t *testing.T, body []byte, v2 bool, value []byte) {
		version := 1
		if v2 {
			version = 2
		}
		const max = 64
		got, err := decodeSecret(version, "r/t/g", body, max)
		if err == nil && len(got) > max {
			t.Fatalf("decoded %d bytes, over the bound %d", len(got), max)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(err.Error()) > 2048 {
				t.Fatalf("error not of the package or too long: %T %d", err, len(err.Error()))
			}
		}
		errs, warns := decodeErrorReply(body)
		if len(errs) > 4 || len(warns) > 4 {
			t.Fatal("error reply not bounded")
		}
		if len(value) > max {
			value = value[:max]
		}
		rt, err := decodeSecret(version, "r/t/g", replyOf(encodeSecret(version, value)), max)
		if err != nil || !bytes.Equal(rt, value) {
			t.Fatalf("round trip of %q: %q, %v", value, rt, err)
		}
	})
}
