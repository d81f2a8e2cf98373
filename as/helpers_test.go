package as

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/storagetest"

	"github.com/BurntSushi/toml"
	"github.com/go-jose/go-jose/v4"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage"
)

// testNow is the fixed time of the tests.
var testNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newTestService(t testing.TB, cfg Config, st storage.Store) *Service {
	t.Helper()
	if st == nil {
		st = storagetest.NewFaulty(memory.New())
	}
	s, err := New(context.Background(), cfg, Options{Store: st, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// kbsRuntimeData is the structured runtime data the KBS passes for the
// primary evidence, and its report data.
func kbsRuntimeData(t testing.TB, additional string) (json.RawMessage, []byte) {
	t.Helper()
	key := protocol.TeePubKey{}
	if err := json.Unmarshal([]byte(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}`), &key); err != nil {
		t.Fatal(err)
	}
	rd := protocol.PrimaryRuntimeData{AdditionalEvidence: additional, Nonce: "bm9uY2U=", TeePubKey: key}
	raw, err := json.Marshal(rd)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := protocol.ReportData(protocol.SHA384, rd.Nonce, key, additional)
	if err != nil {
		t.Fatal(err)
	}
	return raw, digest
}

// sampleEvidence is what the sample attester sends.
func sampleEvidence(svn string, rd []byte) []byte {
	b, _ := json.Marshal(map[string]string{"svn": svn, "report_data": base64.StdEncoding.EncodeToString(rd)})
	return b
}

// sampleRequest is a sample CPU request bound to KBS-style runtime data.
func sampleRequest(t testing.TB) VerificationRequest {
	t.Helper()
	rd, digest := kbsRuntimeData(t, "")
	return VerificationRequest{Tee: protocol.TeeSample, Evidence: sampleEvidence("1", digest), RuntimeData: &RuntimeData{Structured: rd}}
}

// registerRV registers one sample reference value, as the upstream
// integration harness does.
func registerRV(t testing.TB, s *Service, name string, value any) {
	t.Helper()
	payload, err := json.Marshal(map[string]any{name: value})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(map[string]string{"version": "0.1.0", "type": "sample", "payload": base64.StdEncoding.EncodeToString(payload)})
	if err := s.RVPS().Register(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// parsedToken is a verified token.
type parsedToken struct {
	header map[string]any
	jwk    *jose.JSONWebKey
	claims map[string]any
}

// verifyToken verifies a token with the key in its own header (as a KBS
// with insecure_header_jwk does) using go-jose, and returns its parts.
func verifyToken(t testing.TB, token string) parsedToken {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures", len(jws.Signatures))
	}
	jwk := jws.Signatures[0].Protected.JSONWebKey
	if jwk == nil {
		t.Fatal("no jwk in the protected header")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var pt parsedToken
	pt.jwk = jwk
	hdr, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(hdr, &pt.header); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&pt.claims); err != nil {
		t.Fatal(err)
	}
	return pt
}

// submod returns a submodule of the token.
func (p parsedToken) submod(t testing.TB, name string) map[string]any {
	t.Helper()
	subs, _ := p.claims["submods"].(map[string]any)
	sm, ok := subs[name].(map[string]any)
	if !ok {
		t.Fatalf("no submod %q in %v", name, p.claims["submods"])
	}
	return sm
}

// vector returns a submodule's trust vector as ints.
func (p parsedToken) vector(t testing.TB, name string) map[string]int64 {
	t.Helper()
	tv, _ := p.submod(t, name)["ear.trustworthiness-vector"].(map[string]any)
	out := map[string]int64{}
	for k, v := range tv {
		n, err := v.(json.Number).Int64()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

func certPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func x509VerifyOptions(leaf *x509.Certificate) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: certPool(leaf), CurrentTime: testNow}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func rvpsGrpc() rvps.Config {
	return rvps.Config{Type: rvps.TypeGrpcRemote, Address: "http://127.0.0.1:50003"}
}

// decodeKBSConfig decodes the [attestation_service] section of a KBS
// configuration file.
func decodeKBSConfig(t testing.TB, path string) Config {
	t.Helper()
	var doc struct {
		AS Config `toml:"attestation_service"`
	}
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.AS
}

func pemKey(t testing.TB, curve elliptic.Curve, sec1 bool) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if sec1 {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
