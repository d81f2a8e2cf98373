package tdx

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/protocol/evidence"
)

func realEvidence(t testing.TB) *Evidence {
	t.Helper()
	q, err := os.ReadFile(testvectors.Path("trustee/verifier/tdx_quote_4.dat"))
	if err != nil {
		t.Fatal(err)
	}
	el, err := os.ReadFile(testvectors.Path("trustee/verifier/CCEL_data"))
	if err != nil {
		t.Fatal(err)
	}
	return &Evidence{Quote: q, EventLog: el}
}

func TestRoundTrip(t *testing.T) {
	for name, ev := range map[string]*Evidence{"with event log": realEvidence(t), "without": {Quote: realEvidence(t).Quote}} {
		js, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseEvidence(js)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(back.Quote, ev.Quote) || !bytes.Equal(back.EventLog, ev.EventLog) {
			t.Fatalf("%s: evidence changed through JSON", name)
		}
		if ev.EventLog == nil && !bytes.HasPrefix(js, []byte(`{"cc_eventlog":null,"quote":"`)) {
			t.Fatalf("%s: not upstream's form: %.40s", name, js)
		}
	}
}

func TestParseEvidenceErrors(t *testing.T) {
	for _, doc := range []string{
		``, `[]`, `null`, `{}`, `{"quote":null}`, `{"quote":""}`, `{"quote":1}`, `{"quote":"!!"}`,
		`{"quote":"AAAA\nAAAA"}`, `{"quote":"AAAA","cc_eventlog":3}`, `{"quote":"AAAA","cc_eventlog":"%%"}`,
	} {
		if _, err := ParseEvidence([]byte(doc)); !errors.Is(err, evidence.ErrMalformed) {
			t.Errorf("ParseEvidence(%q) = %v, want ErrMalformed", doc, err)
		}
	}
	big := append([]byte(`{"quote":"`), bytes.Repeat([]byte("A"), limits.MaxEvidenceBytes)...)
	if _, err := ParseEvidence(big); !errors.Is(err, evidence.ErrMalformed) {
		t.Errorf("oversized evidence: %v", err)
	}
}

func FuzzParseEvidence(f *testing.F) {
	js, _ := realEvidence(f).MarshalJSON()
	f.Add(js)
	f.Add([]byte(`{"quote":"AAAA","cc_eventlog":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvidence(b)
		if err != nil {
			if !errors.Is(err, evidence.ErrMalformed) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		js, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseEvidence(js)
		if err != nil || !bytes.Equal(back.Quote, ev.Quote) || !bytes.Equal(back.EventLog, ev.EventLog) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
