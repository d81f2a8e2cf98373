package keyprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestBytesDecode(t *testing.T) {
	good := map[string][]byte{
		`null`:                       nil,
		`"AAEC/w=="`:                 {0, 1, 2, 255},
		`""`:                         {},
		`[0,1,2,255]`:                {0, 1, 2, 255},
		` [ 0 , 1 ,	255 ] `:          {0, 1, 255},
		`[]`:                         {},
		"[\n]":                       {},
		`"AAEC\n/w=="`:               {0, 1, 2, 255}, // encoding/json's []byte rules
		`"\u0041\u0041\u003d\u003d"`: {0},
	}
	for in, want := range good {
		var b Bytes
		if err := json.Unmarshal([]byte(in), &b); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !bytes.Equal(b, want) || (want == nil) != (b == nil) {
			t.Errorf("%s: got %v, want %v", in, b, want)
		}
	}
	for _, in := range []string{
		`[256]`, `[-1]`, `[-0]`, `[1.0]`, `[1e2]`, `[null]`, `["1"]`, `[01]`, `[1,]`, `[,1]`, `[[1]]`,
		`"!!"`, `"AAE"`, `5`, `true`, `{}`,
	} {
		var b Bytes
		if err := json.Unmarshal([]byte(in), &b); err == nil {
			t.Errorf("%s: accepted as %v", in, b)
		}
	}
	// Called directly (not through encoding/json), invalid JSON is refused.
	for _, in := range []string{`[1`, `[1 2]`, `[1]x`, `[`, ``} {
		var b Bytes
		if err := b.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%q: accepted as %v", in, b)
		}
	}
}

// Replies are byte for byte what encoding/json wrote for the []int and
// []byte structures coco_keyprovider's and the data hub's replies had.
func TestRepliesMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		ints := make([]int, len(b))
		for i, v := range b {
			ints[i] = int(v)
		}
		type annotation struct {
			Annotation []int `json:"annotation"`
		}
		wantWrap, _ := json.Marshal(struct {
			R annotation `json:"keywrapresults"`
		}{annotation{ints}})
		if got := EncodeWrapReply(b); !bytes.Equal(got, wantWrap) {
			t.Fatalf("wrap reply %s, want %s", got, wantWrap)
		}
		type optsdata struct {
			OptsData []int `json:"optsdata"`
		}
		wantRust, _ := json.Marshal(struct {
			R optsdata `json:"keyunwrapresults"`
		}{optsdata{ints}})
		if got, _ := EncodeUnwrapReply(b, ShapeRust); !bytes.Equal(got, wantRust) {
			t.Fatalf("rust reply %s, want %s", got, wantRust)
		}
		if got, _ := json.Marshal(Bytes(b)); !bytes.Equal(got, mustJSON(t, ints)) {
			t.Fatalf("Bytes %s", got)
		}
	}
	if got, _ := EncodeUnwrapReply([]byte("{}"), ShapeGo); string(got) != `{"keywrapresults":{"annotation":null},"keyunwrapresults":{"optsdata":"e30="}}` {
		t.Errorf("go reply %s", got)
	}
	if got, _ := EncodeUnwrapReply(nil, ShapeRust); string(got) != `{"keyunwrapresults":{"optsdata":[]}}` {
		t.Errorf("empty rust reply %s", got)
	}
	if _, err := EncodeUnwrapReply(nil, Shape(7)); err == nil {
		t.Error("unknown shape accepted")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeWrapRequest(t *testing.T) {
	goReq := `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":["a2V5aWQ9a2JzOi8vL2EvYi9j"]},"DecryptConfig":{"Parameters":{}}},"optsdata":"e30="},"keyunwrapparams":{"dc":null,"annotation":null}}`
	rustReq := `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":[[107,61]]}},"optsdata":[123,125]}}`
	for name, in := range map[string]string{"go": goReq, "rust": rustReq} {
		r, err := DecodeWrapRequest([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Op != "keywrap" || string(r.OptsData) != "{}" || r.EC == nil || len(r.EC.Parameters["attestation-agent"]) != 1 ||
			!strings.HasPrefix(string(r.EC.Parameters["attestation-agent"][0]), "k=") && !strings.HasPrefix(string(r.EC.Parameters["attestation-agent"][0]), "keyid=") {
			t.Errorf("%s: %+v", name, r)
		}
	}
	r, err := DecodeWrapRequest([]byte(`{"op":"keywrap","keywrapparams":{"ec":null}}`))
	if err != nil || r.EC != nil || r.OptsData != nil {
		t.Errorf("null ec: %+v %v", r, err)
	}
	for name, in := range map[string]string{
		"bad optsdata":    `{"op":"keywrap","keywrapparams":{"optsdata":[256]}}`,
		"bad parameter":   `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"x":["!!"]}}}}`,
		"not an object":   `[]`,
		"trailing data":   `{} {}`,
		"not JSON":        `{`,
		"op not a string": `{"op":1}`,
	} {
		if _, err := DecodeWrapRequest([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestDecodeUnwrapRequest(t *testing.T) {
	pkt := []byte(`{"kid":"kbs:///a/b/c"}`)
	goReq, _ := json.Marshal(map[string]any{
		"op":              "keyunwrap",
		"keywrapparams":   map[string]any{"ec": nil, "optsdata": nil},
		"keyunwrapparams": map[string]any{"dc": map[string]any{"Parameters": map[string][]string{"attestation-agent": {"YQ=="}}}, "annotation": base64.StdEncoding.EncodeToString(pkt)},
	})
	ints := make([]int, len(pkt))
	for i, b := range pkt {
		ints[i] = int(b)
	}
	rustReq, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keywrapparams": map[string]any{}, "keyunwrapparams": map[string]any{"dc": nil, "annotation": ints}})
	for name, in := range map[string][]byte{"go": goReq, "rust": rustReq} {
		r, err := DecodeUnwrapRequest(in)
		if err != nil || r.Op != "keyunwrap" || !bytes.Equal(r.Annotation, pkt) {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	for _, in := range []string{`{"op":"keyunwrap"}`, `{"op":"keyunwrap","keyunwrapparams":null}`, `{"op":"keyunwrap","keyunwrapparams":{"annotation":null}}`} {
		if r, err := DecodeUnwrapRequest([]byte(in)); err != nil || r.Annotation != nil {
			t.Errorf("%s: %+v %v", in, r, err)
		}
	}
	for _, in := range []string{`{"keyunwrapparams":{"annotation":"!!"}}`, `{"keyunwrapparams":{"annotation":[256]}}`, `{"keyunwrapparams":{"annotation":{}}}`} {
		if _, err := DecodeUnwrapRequest([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", in, err)
		}
	}
}

func TestMessageBound(t *testing.T) {
	big := []byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":"` + strings.Repeat("A", MaxMessageBytes) + `"}}`)
	if _, err := DecodeUnwrapRequest(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("unwrap: err = %v", err)
	}
	if _, err := DecodeWrapRequest(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("wrap: err = %v", err)
	}
}
