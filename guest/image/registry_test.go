package image

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

var vectors = testvectors.Path("guest-components/image-rs/test_data/")

func TestRegistryConfigResolve(t *testing.T) {
	b, err := os.ReadFile(vectors + "registry-configuration.toml")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ParseRegistryConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     string
		want    []Source
		wantErr error
	}{
		{name: "short name", ref: "busybox:latest", want: []Source{{Ref: "docker.io/library/busybox:latest"}, {Ref: "example1.com/busybox:latest"}}},
		{name: "blocked", ref: "example.com/banned/app:v1", wantErr: ErrBlocked},
		{name: "not blocked sibling", ref: "example.com/bannedx/app:v1", want: []Source{{Ref: "example.com/bannedx/app:v1"}}},
		{name: "mirror", ref: "mirror-test.com/ns/app:v1", want: []Source{{Ref: "127.0.0.1:5000/ns/app:v1", Insecure: true}, {Ref: "mirror-test.com/ns/app:v1"}}},
		{name: "remap", ref: "remapping-test.com/ns/app@sha256:" + zeros, want: []Source{{Ref: "127.0.0.1:5000/ns/app@sha256:" + zeros, Insecure: true}}},
		{name: "insecure", ref: "127.0.0.1:5000/app:v1", want: []Source{{Ref: "127.0.0.1:5000/app:v1", Insecure: true}}},
		{name: "empty", ref: "", wantErr: ErrInvalidReference},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rc.Resolve(tc.ref)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	var nilRC *RegistryConfig
	if got, err := nilRC.Resolve("alpine"); err != nil || got[0].Ref != "docker.io/library/alpine" {
		t.Fatalf("nil config: %v %v", got, err)
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

func TestParseRegistryConfigErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":   "foo = 1",
		"scheme":        "[[registry]]\nlocation = \"https://x.io\"",
		"no prefix":     "[[registry]]\ninsecure = true",
		"bad search":    "unqualified-search-registries = [\"a/b\"]",
		"wildcard path": "[[registry]]\nprefix = \"*.x.io/a\"",
		"not toml":      "[[",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseRegistryConfig([]byte(doc)); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func FuzzRegistryConfig(f *testing.F) {
	if b, err := os.ReadFile(vectors + "registry-configuration.toml"); err == nil {
		f.Add(b, "busybox")
	}
	f.Add([]byte("[[registry]]\nprefix=\"*.io\"\nblocked=true"), "a.io/b:c")
	f.Fuzz(func(t *testing.T, b []byte, ref string) {
		rc, err := ParseRegistryConfig(b)
		if err != nil {
			return
		}
		srcs, err := rc.Resolve(ref)
		if err == nil && len(srcs) == 0 {
			t.Fatal("no sources and no error")
		}
	})
}

func TestAuths(t *testing.T) {
	a, err := ParseAuthFile([]byte(`{"auths":{
		"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
		"quay.io/org":{"auth":"b3JnOm9yZw=="},
		"quay.io":{"auth":"cTpx"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		repo string
		want Credential
		ok   bool
	}{
		{"docker.io/library/busybox", Credential{"user", "pass"}, true},
		{"quay.io/org/app", Credential{"org", "org"}, true},
		{"quay.io/other/app", Credential{"q", "q"}, true},
		{"ghcr.io/x", Credential{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.repo, func(t *testing.T) {
			got, ok := a.Lookup(tc.repo)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %v %v", got, ok)
			}
		})
	}
	if _, err := ParseAuthFile([]byte(`{"auths":{"x":{"auth":"!!"}}}`)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad base64: %v", err)
	}
}

func FuzzAuthFile(f *testing.F) {
	f.Add([]byte(`{"auths":{"quay.io":{"auth":"cTpx"}}}`), "quay.io/a")
	f.Fuzz(func(t *testing.T, b []byte, repo string) {
		a, err := ParseAuthFile(b)
		if err != nil {
			return
		}
		a.Lookup(repo)
	})
}
