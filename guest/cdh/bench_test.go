package cdh

import (
	"context"
	"net/http"
	"testing"

	"github.com/go-trustee/go-trustee/client/fakekbs"
)

// BenchmarkGetResource100 reads one resource 100 times through the hub
// (over ttRPC on a unix socket, against a fake KBS on loopback), with the
// token cache (one attestation for all 100) and without it (one attestation
// per read, upstream's behaviour). attestations/op is counted at the KBS.
func BenchmarkGetResource100(b *testing.B) {
	for _, bc := range []struct {
		name    string
		noCache bool
	}{{"token-cache", false}, {"no-cache", true}} {
		b.Run(bc.name, func(b *testing.B) {
			env := newKBS(b, fakekbs.Options{})
			env.kbs.SetResource("default/key/1", make([]byte, 32))
			h := newHub(b, env, nil, func(o *Options) { o.CC.DisableTokenCache = bc.noCache })
			c, _ := serve(b, h)
			b.ResetTimer()
			for b.Loop() {
				for range 100 {
					if _, err := c.GetResource(context.Background(), "kbs:///default/key/1"); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(env.kbs.Count(http.MethodPost, "/kbs/v0/attest"))/float64(b.N), "attestations/op")
		})
	}
}
