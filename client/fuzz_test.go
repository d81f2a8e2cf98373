package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// FuzzParseResourceURI: no panic; an accepted URI re-parses from its
// canonical form to the same value, and its endpoint stays under /kbs/v0/.
func FuzzParseResourceURI(f *testing.F) {
	for _, s := range []string{"kbs:///a/b/c", "a/b/c?x=1", "kbs+p://h:1/x/y/z?q", "kbs+p:///../x", "/a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseResourceURI(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidResourceURI) {
				t.Fatalf("error %v is not ErrInvalidResourceURI", err)
			}
			return
		}
		p, _ := u.endpoint()
		if !strings.HasPrefix(p, "/kbs/v0/"+u.Plugin+"/") || strings.Contains(p, "/../") || strings.Contains(p, "//") {
			t.Fatalf("endpoint %q escapes", p)
		}
		u2, err := ParseResourceURI(u.String())
		if err != nil || u2.String() != u.String() {
			t.Fatalf("canonical %q does not round-trip: %v", u.String(), err)
		}
	})
}

// FuzzParseTokenTimes: the token is attacker-controlled (the KBS's
// answer, or the attestation-agent's). No panic; errors are
// ErrInvalidToken; an accepted token is a bounded three-part JWT whose
// times lie in [1970, 2^40 s], and a margin only ever makes it less usable.
func FuzzParseTokenTimes(f *testing.F) {
	f.Add(jwt(`{"exp":1800000000,"nbf":1}`))
	f.Add(jwt(`{"exp":1.5e9}`))
	f.Add(jwt(`{}`))
	f.Add(jwt(`{"exp":"1800000000"}`))
	f.Add(jwt(`{"exp":null,"nbf":-0}`))
	f.Add(jwt(`[1]`))
	f.Add("a.b.c")
	f.Add("a.!!.c")
	f.Fuzz(func(t *testing.T, s string) {
		tt, err := ParseTokenTimes(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			if tt != (TokenTimes{}) {
				t.Fatalf("error %v with times %+v", err, tt)
			}
			return
		}
		if len(s) > limits.MaxTokenBytes || strings.Count(s, ".") != 2 {
			t.Fatalf("accepted %d bytes with %d dots", len(s), strings.Count(s, "."))
		}
		for _, ts := range []time.Time{tt.Exp, tt.Nbf} {
			if !ts.IsZero() && (ts.Before(time.Unix(0, 0)) || ts.After(time.Unix(maxTokenTime, 0))) {
				t.Fatalf("accepted time %v", ts)
			}
		}
		now := time.Unix(1_800_000_000, 0)
		if tt.UsableAt(now, time.Minute) && !tt.UsableAt(now, 0) {
			t.Fatalf("%+v usable with a margin but not without", tt)
		}
	})
}

// FuzzParseChallenge: the /auth answer is attacker-controlled.
func FuzzParseChallenge(f *testing.F) {
	f.Add([]byte(`{"nonce":"bm9uY2U=","extra-params":""}`))
	f.Add([]byte(`{"nonce":"x","extra-params":{"selected-hash-algorithm":"sha512"}}`))
	f.Add([]byte(`{"nonce":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, h, err := parseChallenge(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidResponse) {
				t.Fatalf("error %v is not ErrInvalidResponse", err)
			}
			return
		}
		if ch.Nonce == "" {
			t.Fatal("accepted an empty nonce")
		}
		if _, err := h.New(); err != nil {
			t.Fatalf("accepted unusable hash %q", h)
		}
	})
}

// FuzzParseAttestResponse: the /attest answer is attacker-controlled.
func FuzzParseAttestResponse(f *testing.F) {
	f.Add([]byte(`{"token":"` + jwt(`{"exp":1}`) + `"}`))
	f.Add([]byte(`{"token":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := parseAttestResponse(b); err != nil && !errors.Is(err, ErrInvalidResponse) {
			t.Fatalf("error %v is not ErrInvalidResponse", err)
		}
	})
}

// FuzzStatusError: error bodies are attacker-controlled; the message must
// stay printable and short.
func FuzzStatusError(f *testing.F) {
	f.Add(401, []byte(`{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}`))
	f.Add(500, []byte("\x1b[2Jplain\r\ntext"))
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		e := statusError("get resource", &response{status: status, body: b})
		msg := e.Error()
		if len(msg) > 2000 {
			t.Fatalf("message of %d bytes", len(msg))
		}
		for _, r := range msg {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", msg)
			}
		}
	})
}
