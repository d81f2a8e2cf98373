package keyprovider

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary messages to both request decoders and to the
// byte-field decoder: they must never panic, decoded fields are never
// longer than the message, and a byte field encodes back to what it
// decoded.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":["a2V5aWQ9a2JzOi8vL2EvYi9j"]},"DecryptConfig":{"Parameters":{}}},"optsdata":"e30="},"keyunwrapparams":{"dc":null,"annotation":null}}`))
	f.Add([]byte(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":[[107,61]]}},"optsdata":[123,125]}}`))
	f.Add([]byte(`{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"attestation-agent":["YQ=="]}},"annotation":"e30="}}`))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":[123, 125 ]}}`))
	f.Add([]byte(`[0,255,256]`))
	f.Add([]byte(`"AAEC/w=="`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if r, err := DecodeWrapRequest(in); err == nil {
			if len(r.OptsData) > len(in) {
				t.Fatalf("optsdata of %d bytes from %d", len(r.OptsData), len(in))
			}
		}
		if r, err := DecodeUnwrapRequest(in); err == nil {
			if len(r.Annotation) > len(in) {
				t.Fatalf("annotation of %d bytes from %d", len(r.Annotation), len(in))
			}
		}
		var b Bytes
		if err := b.UnmarshalJSON(in); err != nil {
			return
		}
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var back Bytes
		if err := json.Unmarshal(enc, &back); err != nil || !bytes.Equal(back, b) {
			t.Fatalf("%s decoded to %v, encoded to %s, decoded back to %v (%v)", in, b, enc, back, err)
		}
		var ints []int
		if err := json.Unmarshal(enc, &ints); err != nil || len(ints) != len(b) {
			t.Fatalf("encoding/json cannot read %s back: %v", enc, err)
		}
	})
}
