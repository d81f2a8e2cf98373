package kbs

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/go-trustee/go-trustee/as"
	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/resourcepolicy"
)

// BenchmarkFlowFloor is the unavoidable work of one guest flow, in process
// and without HTTP: TEE key generation, report-data binding, evidence
// verification with the attestation policy and EAR signing, token
// verification, resource policy evaluation, JWE sealing and the guest's
// decryption. Run in parallel on every core, its ops/s is the ceiling the
// load tool's flows/s is compared with.
func BenchmarkFlowFloor(b *testing.B) {
	e := newEnv(b, testConfig, nil, nil)
	e.provision("default/test/secret", "benchmark secret", allowAllPolicy)
	s := e.srv
	ctx := context.Background()
	data := resourcepolicy.Data{Plugin: "resource", ResourcePath: []string{"default", "test", "secret"}, Query: map[string]string{}}
	secret := []byte("benchmark secret")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			kp, err := protocol.GenerateKeyPair(protocol.KeyEC256, nil)
			if err != nil {
				b.Fatal(err)
			}
			var n [32]byte
			rand.Read(n[:])
			nonce := base64.StdEncoding.EncodeToString(n[:])
			pk := kp.PublicKey()
			rd, _ := protocol.ReportData(protocol.SHA384, nonce, pk, "")
			ev, _ := json.Marshal(map[string]string{"svn": "1", "report_data": base64.StdEncoding.EncodeToString(rd)})
			srd, _ := json.Marshal(protocol.PrimaryRuntimeData{Nonce: nonce, TeePubKey: pk})
			tok, err := s.as.Evaluate(ctx, []as.VerificationRequest{{Tee: protocol.TeeSample, Evidence: ev,
				HashAlgorithm: protocol.SHA384, RuntimeData: &as.RuntimeData{Structured: srd}}}, []string{"default"})
			if err != nil {
				b.Fatal(err)
			}
			claims, err := s.tokens.Verify(ctx, tok)
			if err != nil {
				b.Fatal(err)
			}
			dec, err := s.policy.Evaluate(ctx, claims, data)
			if err != nil || !dec.Allowed {
				b.Fatal(err, dec.Reason)
			}
			key, err := s.tokens.TeePubKey(claims)
			if err != nil {
				b.Fatal(err)
			}
			jwe, err := protocol.Encrypt(key, secret, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := kp.Decrypt(jwe); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFlowHTTP is the same flow as BenchmarkFlowFloor through the HTTP
// handler and the client library, as the load tool runs it: fresh key and
// session per flow, Bearer resource read. Its gap to the floor is the cost
// of HTTP, JSON, sessions, logging and metrics.
func BenchmarkFlowHTTP(b *testing.B) {
	e := newEnv(b, testConfig, nil, nil)
	e.provision("default/test/secret", "benchmark secret", allowAllPolicy)
	ctx := context.Background()
	hc := e.ts.Client()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := client.New(client.Options{URL: e.ts.URL, HTTPClient: hc, Attester: sample.New(false), Bearer: true})
			if err != nil {
				b.Fatal(err)
			}
			got, err := c.GetResource(ctx, "default/test/secret")
			if err != nil || string(got) != "benchmark secret" {
				b.Fatal(err)
			}
		}
	})
}
