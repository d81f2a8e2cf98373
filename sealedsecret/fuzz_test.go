package sealedsecret

import (
	"context"
	"encoding/json"
	"os"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to every decoder of untrusted sealed
// secret input: it must never panic, and whatever ParsePayload accepts
// must survive a marshal/parse round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{vectors + "vault-2.json", vectors + "envelope-1.json", kata + "sealed-secret.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("sealed.a.b.c"))
	f.Add([]byte(`{"version":"0.1.0","type":"vault"}`))
	skip, _ := New(Options{SkipVerification: true, KeyDir: f.TempDir()})
	strict, _ := New(Options{KeyDir: f.TempDir()})
	f.Fuzz(func(t *testing.T, in []byte) {
		Parse(in)
		parseUnverified(in)
		skip.Open(context.Background(), in)
		strict.Open(context.Background(), in)
		s, err := ParsePayload(in)
		if err != nil {
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal of a parsed payload: %v", err)
		}
		s2, err := ParsePayload(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		out2, _ := json.Marshal(s2)
		if string(out) != string(out2) {
			t.Fatalf("round trip changed %s to %s", out, out2)
		}
	})
}
