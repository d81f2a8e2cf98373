package client

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/client/fakekbs"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenNonce is the fixed challenge nonce of the golden transcripts.
const goldenNonce = "rc4+CvVhfqP0vmnb2C0ErtDDfVHn03ZaEpkW/qi7zbU="

const goldenInitData = `version = "0.1.0"
algorithm = "sha384"

[data]
"policy.rego" = '''
package agent_policy
default AllowRequestsFailingPolicy := true
small if { input.n < 3 && true }
'''
`

// TestGoldenRCAR pins the exact /kbs/v0/auth and /kbs/v0/attest bodies the
// client sends for a fixed TEE key and a fixed nonce. Run with -update to
// rewrite them after a deliberate change.
func TestGoldenRCAR(t *testing.T) {
	tests := []struct {
		name, key, initData string
	}{
		{"ec-p256", "tee-key-p256.pem", ""},
		{"ec-p521", "tee-key-p521.pem", ""},
		{"rsa-2048", "tee-key-rsa.pem", ""},
		{"ec-p256-initdata", "tee-key-p256.pem", goldenInitData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp := loadKey(t, tt.key)
			e := newEnv(t, fakekbs.Options{Nonce: goldenNonce}, func(o *Options) {
				o.KeyPair = kp
				o.InitDataTOML = tt.initData
			})
			if _, err := e.c.Attest(ctxT(t)); err != nil {
				t.Fatalf("Attest: %v", err)
			}
			reqs := e.kbs.Requests()
			if len(reqs) != 2 || reqs[0].Path != "/kbs/v0/auth" || reqs[1].Path != "/kbs/v0/attest" {
				t.Fatalf("requests = %+v, want auth then attest", reqs)
			}
			if reqs[0].Cookie != "" || reqs[1].Cookie == "" {
				t.Errorf("cookies: auth %q, attest %q; want none then the session", reqs[0].Cookie, reqs[1].Cookie)
			}
			for i, step := range []string{"auth", "attest"} {
				if reqs[i].Method != http.MethodPost {
					t.Errorf("%s method = %s", step, reqs[i].Method)
				}
				golden(t, filepath.Join("testdata", "golden", tt.name+"."+step+".json"), reqs[i].Body)
			}
			checkBinding(t, reqs[1].Body)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs\n got: %s\nwant: %s", path, got, want)
	}
}

// checkBinding recomputes the sample evidence's report data from the attest
// body with a hand-written JCS (keys in code-point order, compact), an
// oracle independent of package protocol:
// SHA-384({"additional-evidence":"","nonce":N,"tee-pubkey":{sorted JWK}}).
func checkBinding(t *testing.T, body []byte) {
	t.Helper()
	var att struct {
		RuntimeData struct {
			Nonce string            `json:"nonce"`
			Key   map[string]string `json:"tee-pubkey"`
		} `json:"runtime-data"`
		TeeEvidence struct {
			Primary struct {
				ReportData string `json:"report_data"`
			} `json:"primary_evidence"`
		} `json:"tee-evidence"`
	}
	if err := json.Unmarshal(body, &att); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(att.RuntimeData.Key))
	for k := range att.RuntimeData.Key {
		names = append(names, k)
	}
	sort.Strings(names)
	var jwk []string
	for _, k := range names {
		jwk = append(jwk, fmt.Sprintf("%q:%q", k, att.RuntimeData.Key[k]))
	}
	doc := fmt.Sprintf(`{"additional-evidence":"","nonce":%q,"tee-pubkey":{%s}}`, att.RuntimeData.Nonce, strings.Join(jwk, ","))
	want := sha512.Sum384([]byte(doc))
	got, err := base64.StdEncoding.DecodeString(att.TeeEvidence.Primary.ReportData)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[:]) {
		t.Errorf("report data %x, want SHA-384(%s) = %x", got, doc, want)
	}
}
