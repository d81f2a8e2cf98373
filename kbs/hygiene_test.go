package kbs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/localfs"
	"github.com/go-trustee/go-trustee/storage/memory"
)

// TestResourceNameTooLongForStore: on LocalFs a resource path whose file
// name would pass 255 bytes is the client's error (404 InvalidRequestPath,
// a bounded detail), for admin writes and for attested reads alike, not a
// 500; a path that fits still works.
func TestResourceNameTooLongForStore(t *testing.T) {
	st, err := localfs.Open(localfs.Config{DirPath: t.TempDir()}, localfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig, st, nil)
	e.provision("default/short/key", "fits", allowAllPolicy)
	long := "default/long/" + strings.Repeat("k", 300)
	check := func(what string, code int, body []byte) {
		t.Helper()
		info := wantError(t, code, body, 404, "InvalidRequestPath")
		if !strings.Contains(info.Detail, "too long for the storage backend") || len(info.Detail) > 200 {
			t.Fatalf("%s: detail %q", what, info.Detail)
		}
	}
	code, body := e.adminDo("POST", "/kbs/v0/resource/"+long, []byte("x"))
	check("admin POST", code, body)
	code, body = e.adminDo("DELETE", "/kbs/v0/resource/"+long, nil)
	check("admin DELETE", code, body)

	g := e.guest(protocol.KeyEC256)
	g.rcar()
	code, body = g.do("GET", "/kbs/v0/resource/"+long, nil, nil)
	check("attested GET", code, body)
	code, body = g.do("GET", "/kbs/v0/resource/default/short/key", nil, nil)
	if code != 200 || string(g.decrypt(body)) != "fits" {
		t.Fatalf("GET of a path that fits: %d", code)
	}
}

// TestLongUnknownPathBounded: the 404 for an unknown path quotes at most
// 256 bytes of it, however long the request target.
func TestLongUnknownPathBounded(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	code, body := e.adminDo("GET", "/"+strings.Repeat("x", 100<<10), nil)
	info := wantError(t, code, body, 404, "InvalidRequestPath")
	if len(info.Detail) > 400 || !strings.Contains(info.Detail, "more bytes") {
		t.Fatalf("detail of %d bytes: %.100q", len(info.Detail), info.Detail)
	}
}

// TestWeakTeeKeyGetsNoToken: a tee-pubkey no release could be sealed to
// (RSA-512, an EC point off P-256) is refused at /attest with the reason,
// even with evidence bound to it; the guest's own key gets its token.
func TestWeakTeeKeyGetsNoToken(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	b64 := base64.RawURLEncoding.EncodeToString
	n := make([]byte, 64)
	n[0], n[63] = 0xc1, 0x01 // 512 bits, odd
	offCurve := make([]byte, 32)
	offCurve[31] = 1
	for name, tc := range map[string]struct {
		key  protocol.TeePubKey
		want string
	}{
		"rsa-512":  {protocol.TeePubKey{Kty: "RSA", Alg: "RSA-OAEP", N: b64(n), E: "AQAB"}, "512 bits"},
		"off-p256": {protocol.TeePubKey{Kty: "EC", Alg: "ECDH-ES+A256KW", Crv: "P-256", X: b64(offCurve), Y: b64(offCurve)}, "tee-pubkey"},
	} {
		t.Run(name, func(t *testing.T) {
			g := e.guest(protocol.KeyEC256)
			if code, b := g.auth("0.4.0", "sample"); code != 200 {
				t.Fatalf("auth: %d %s", code, b)
			}
			rd, err := protocol.ReportData(protocol.SHA384, g.nonce, tc.key, "")
			if err != nil {
				t.Fatal(err)
			}
			ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
			body, _ := json.Marshal(protocol.Attestation{
				RuntimeData: protocol.RuntimeData{Nonce: g.nonce, TeePubKey: tc.key},
				TeeEvidence: protocol.CompositeEvidence{PrimaryEvidence: ev},
			})
			code, b := g.do("POST", "/kbs/v0/attest", body, nil)
			info := wantError(t, code, b, 401, "AttestationError")
			if !strings.Contains(info.Detail, "tee-pubkey is not usable") || !strings.Contains(info.Detail, tc.want) {
				t.Fatalf("detail %q", info.Detail)
			}
			if strings.Contains(string(b), "token") {
				t.Fatalf("a token came back: %s", b)
			}
		})
	}
	g := e.guest(protocol.KeyEC256)
	g.rcar()
	if g.token == "" {
		t.Fatal("no token for a good key")
	}
}

// TestOneTokenPerChallenge: 64 concurrent /attest on one challenge, each
// with its own TEE key, yield one token: the others are refused while it
// is appraised or get that same token afterwards. (Before the claim all 64
// could succeed, with tokens for different keys from one nonce.) A failed
// attempt does not burn the challenge: the client may try again.
func TestOneTokenPerChallenge(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	// Several challenges: without the claim a round yields more than one
	// token often but not always.
	for round := range 24 {
		oneTokenRound(t, e, round)
	}
	// No claim is left behind.
	if keys, err := e.store.List(context.Background(), namespaceClaim); err != nil || len(keys) != 0 {
		t.Fatalf("claims left: %v %v", keys, err)
	}
}

func oneTokenRound(t *testing.T, e *env, round int) {
	t.Helper()
	g := e.guest(protocol.KeyEC256)
	if code, b := g.auth("0.4.0", "sample"); code != 200 {
		t.Fatalf("auth: %d %s", code, b)
	}
	// A failed attempt first (evidence bound to another nonce).
	code, b := g.do("POST", "/kbs/v0/attest", g.attestationBody(g.nonce, "other-nonce"), nil)
	wantError(t, code, b, 401, "AttestationError")

	const n = 64
	bodies := make([][]byte, n)
	for i := range bodies {
		kp, err := protocol.GenerateKeyPair(protocol.KeyEC256, nil)
		if err != nil {
			t.Fatal(err)
		}
		gi := *g
		gi.kp = kp
		bodies[i] = gi.attestationBody(g.nonce, g.nonce)
	}
	type result struct {
		code int
		body []byte
		err  error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			req, _ := http.NewRequest("POST", g.base+"/kbs/v0/attest", bytes.NewReader(bodies[i]))
			resp, err := g.hc.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- result{code: resp.StatusCode, body: b}
		}()
	}
	close(start)
	tokens := map[string]bool{}
	refused := 0
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		switch r.code {
		case 200:
			var ar protocol.AttestationResponse
			if err := json.Unmarshal(r.body, &ar); err != nil || ar.Token == "" {
				t.Fatalf("200 without a token: %s", r.body)
			}
			tokens[ar.Token] = true
		default:
			info := wantError(t, r.code, r.body, 401, "AttestationError")
			if !strings.Contains(info.Detail, "being attested by another request") {
				t.Fatalf("refusal detail %q", info.Detail)
			}
			refused++
		}
	}
	if len(tokens) != 1 {
		t.Fatalf("round %d: %d distinct tokens for one challenge (%d refused)", round, len(tokens), refused)
	}
}

// TestTokensSurviveRestartAndReplicas: without a configured signer the
// built-in AS's key is kept in the store, so a token issued before a
// restart, or by another replica on the same store, is accepted without
// insecure_header_jwk (the guest would otherwise hold a refused token until
// it expires).
func TestTokensSurviveRestartAndReplicas(t *testing.T) {
	store := memory.New()
	a := newEnv(t, testConfig, store, nil)
	a.provision("default/test/secret", "kept", allowAllPolicy)
	g := a.guest(protocol.KeyEC256)
	g.rcar()
	read := func(e *env) (int, []byte) {
		h := e.guest(protocol.KeyEC256)
		h.kp, h.token = g.kp, g.token
		return h.do("GET", "/kbs/v0/resource/default/test/secret", nil, map[string]string{"Authorization": "Bearer " + g.token})
	}
	b := newEnv(t, testConfig, store, nil) // another replica, or A restarted
	for name, e := range map[string]*env{"same": a, "other": b} {
		code, body := read(e)
		if code != 200 || string(g.decrypt(body)) != "kept" {
			t.Fatalf("%s replica: %d %s", name, code, body)
		}
	}
	// A store of its own: a different key, the token refused.
	c := newEnv(t, testConfig, memory.New(), nil)
	c.provision("default/test/secret", "kept", allowAllPolicy)
	if code, _ := read(c); code == 200 {
		t.Fatal("a KBS with another store accepted the token")
	}
}

// leakyStore is a store whose session reads fail with an error quoting
// the key, as a LocalFs path or a Redis key would.
type leakyStore struct {
	storage.Store
	fail atomic.Bool
}

func (s *leakyStore) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if s.fail.Load() && ns == storage.NamespaceSession {
		return nil, fmt.Errorf("open /var/lib/kbs/%s/%s: input/output error", ns, key)
	}
	return s.Store.Get(ctx, ns, key)
}

// TestSessionIDNeverInErrorsOrLogs: a session id is the cookie's bearer
// credential; a failing session store that quotes it reaches neither the
// client's error detail nor the log, which carry the session's tag.
func TestSessionIDNeverInErrorsOrLogs(t *testing.T) {
	st := &leakyStore{Store: memory.New()}
	e := newEnv(t, testConfig, st, nil)
	g := e.guest(protocol.KeyEC256)
	if code, b := g.auth("0.4.0", "sample"); code != 200 {
		t.Fatalf("auth: %d %s", code, b)
	}
	u, _ := url.Parse(g.base + "/kbs/v0/attest")
	var id string
	for _, c := range g.hc.Jar.Cookies(u) {
		if c.Name == protocol.CookieName {
			id = c.Value
		}
	}
	if len(id) != 32 {
		t.Fatalf("session cookie %q", id)
	}
	st.fail.Store(true)
	code, body := g.do("POST", "/kbs/v0/attest", g.attestationBody(g.nonce, g.nonce), nil)
	info := wantError(t, code, body, 500, "InternalError")
	if strings.Contains(string(body), id) || !strings.Contains(info.Detail, "<session "+sessionTag(id)+">") {
		t.Fatalf("detail %q", info.Detail)
	}
	if logs := e.logs.String(); strings.Contains(logs, id) || !strings.Contains(logs, sessionTag(id)) {
		t.Fatalf("the session id is in the logs, or its tag is not:\n%s", logs)
	}
}
