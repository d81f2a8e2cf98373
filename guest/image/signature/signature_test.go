//go:build containers_image_openpgp

package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var vectors = testvectors.Path("guest-components/image-rs/test_data/")

type fakeKBS map[string][]byte

func (f fakeKBS) GetResource(_ context.Context, uri string) ([]byte, error) {
	if b, ok := f[uri]; ok {
		return b, nil
	}
	return nil, errors.New("not found")
}

func TestNewUpstreamPolicy(t *testing.T) {
	for _, p := range []string{"signature/policy.json", "simple-signing-scheme/security_policy.json"} {
		t.Run(p, func(t *testing.T) {
			b, err := os.ReadFile(vectors + p)
			if err != nil {
				t.Fatal(err)
			}
			v, err := New(context.Background(), b, nil, Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			v.Close()
		})
	}
}

func TestResolvePolicy(t *testing.T) {
	pub, err := os.ReadFile(vectors + "signature/cosign/cosign1.pub")
	if err != nil {
		t.Fatal(err)
	}
	kbs := fakeKBS{"kbs:///default/cosign-key/1": pub, "kbs:///default/gpg/1": []byte("ring1"), "kbs:///default/gpg/2": []byte("ring2")}
	local := filepath.Join(t.TempDir(), "key.pub")
	os.WriteFile(local, pub, 0o600)
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		policy  string
		wantErr error
		want    map[string]any // expected fields of default[0]
	}{
		{name: "kbs keyPath", policy: `{"default":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1"}],"transports":{}}`,
			want: map[string]any{"keyData": b64(pub)}},
		{name: "file keyPath", policy: `{"default":[{"type":"sigstoreSigned","keyPath":"file://` + local + `"}],"transports":{}}`,
			want: map[string]any{"keyData": b64(pub)}},
		{name: "pem keyData", policy: `{"default":[{"type":"sigstoreSigned","keyData":` + mustJSON(string(pub)) + `}],"transports":{}}`,
			want: map[string]any{"keyData": b64(pub)}},
		{name: "gpg keyPaths concatenate", policy: `{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPaths":["kbs:///default/gpg/1","kbs:///default/gpg/2"]}],"transports":{}}`,
			want: map[string]any{"keyData": b64([]byte("ring1ring2"))}},
		{name: "missing resource", policy: `{"default":[{"type":"sigstoreSigned","keyPath":"kbs:///default/none/1"}],"transports":{}}`, wantErr: ErrResource},
		{name: "missing transports", policy: `{"default":[{"type":"reject"}]}`, wantErr: ErrPolicy},
		{name: "missing default", policy: `{"transports":{}}`, wantErr: ErrPolicy},
		{name: "not json", policy: `{`, wantErr: ErrPolicy},
		{name: "keyPath and keyData", policy: `{"default":[{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign-key/1","keyData":"eA=="}],"transports":{}}`, wantErr: ErrPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ResolvePolicy(context.Background(), []byte(tc.policy), kbs)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var doc struct {
				Default []map[string]any `json:"default"`
			}
			json.Unmarshal(out, &doc)
			for k, v := range tc.want {
				if doc.Default[0][k] != v {
					t.Fatalf("%s = %v, want %v", k, doc.Default[0][k], v)
				}
			}
			if typ := doc.Default[0]["type"]; typ == "sigstoreSigned" {
				if id, _ := doc.Default[0]["signedIdentity"].(map[string]any); id["type"] != "matchRepository" {
					t.Fatalf("sigstoreSigned signedIdentity = %v, want matchRepository by default", doc.Default[0]["signedIdentity"])
				}
			}
			if _, ok := doc.Default[0]["keyPath"]; ok {
				t.Fatal("keyPath kept")
			}
		})
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestRegistriesD(t *testing.T) {
	for _, f := range []string{"simple-signing-scheme/sigstore_config.yaml", "signature/sigstore_config/test_case_1/1.yaml"} {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(vectors + f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := registriesD(b)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "use-sigstore-attachments: true") {
				t.Fatalf("attachments not enabled:\n%s", out)
			}
		})
	}
	if _, err := registriesD([]byte("unknown: 1")); !errors.Is(err, ErrPolicy) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestReadResource(t *testing.T) {
	if _, err := ReadResource(context.Background(), nil, "kbs:///a/b/c", 10); !errors.Is(err, ErrResource) {
		t.Fatalf("no getter: %v", err)
	}
	if _, err := ReadResource(context.Background(), nil, "https://x/y", 10); !errors.Is(err, ErrResource) {
		t.Fatalf("https: %v", err)
	}
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("0123456789abc"), 0o600)
	if _, err := ReadResource(context.Background(), nil, p, 10); !errors.Is(err, ErrResource) {
		t.Fatalf("oversized: %v", err)
	}
	if b, err := ReadResource(context.Background(), nil, "file://"+p, 100); err != nil || string(b) != "0123456789abc" {
		t.Fatalf("file: %q %v", b, err)
	}
}

func FuzzResolvePolicy(f *testing.F) {
	if b, err := os.ReadFile(vectors + "signature/policy.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"default":[{"type":"sigstoreSigned","keyPath":"kbs:///a/b/c"}],"transports":{"docker":{"x":[]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ResolvePolicy(context.Background(), b, fakeKBS{"kbs:///a/b/c": []byte("k")})
	})
}

func FuzzSigstoreConfig(f *testing.F) {
	if b, err := os.ReadFile(vectors + "simple-signing-scheme/sigstore_config.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = registriesD(b) })
}
