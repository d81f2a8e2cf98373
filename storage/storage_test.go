package storage

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name    string
		ns, key string
		ok      bool
	}{
		{"resource", NamespaceRepository, "default/key/1", true},
		{"policy", NamespaceAttestationPolicy, "default_cpu.rego", true},
		{"session uuid", NamespaceSession, "0a1b2c3d-0000-4000-8000-123456789abc", true},
		{"dots inside", "ns", "a..b", true},
		{"three dots", "ns", "...", true},
		{"hidden", "ns", ".hidden", true},
		{"trailing slash", "ns", "a/", true},
		{"namespace with dot and dash", "intel-dcap.collateral", "k", true},
		{"empty key", "ns", "", false},
		{"dot", "ns", ".", false},
		{"dot-dot", "ns", "..", false},
		{"absolute", "ns", "/abs", false},
		{"parent prefix", "ns", "../x", false},
		{"parent inside", "ns", "a/../b", false},
		{"parent suffix", "ns", "a/..", false},
		{"dot prefix", "ns", "./a", false},
		{"dot inside", "ns", "a/./b", false},
		{"dot suffix", "ns", "a/.", false},
		{"double slash", "ns", "a//b", false},
		{"backslash", "ns", `a\b`, false},
		{"space", "ns", "a b", false},
		{"colon", "ns", "a:b", false},
		{"NUL", "ns", "a\x00", false},
		{"non-ASCII", "ns", "é", false},
		{"empty namespace", "", "k", false},
		{"dot namespace", ".", "k", false},
		{"dot-dot namespace", "..", "k", false},
		{"slash namespace", "a/b", "k", false},
		{"colon namespace", "a:b", "k", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateKey(tc.ns, tc.key)
			if tc.ok && err != nil {
				t.Fatalf("ValidateKey(%q, %q) = %v, want nil", tc.ns, tc.key, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q, %q) = %v, want ErrInvalidKey", tc.ns, tc.key, err)
			}
		})
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ns := range []string{NamespaceKBS, NamespaceRepository, NamespaceSession, NamespaceAttestationPolicy, NamespaceReferenceValue, "intel-dcap-collateral"} {
		if err := ValidateNamespace(ns); err != nil {
			t.Errorf("ValidateNamespace(%q) = %v", ns, err)
		}
	}
	for _, ns := range []string{"", ".", "..", "a/b", "/", "a b", "a:b", "a*"} {
		if err := ValidateNamespace(ns); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateNamespace(%q) = %v, want ErrInvalidKey", ns, err)
		}
	}
}

// FuzzValidateKey checks that an accepted (namespace, key) can never leave
// its namespace, whether a backend uses the key as a path (LocalFs maps it
// to <dir>/<ns>/<key with "/" as \x2F>, a path module might clean it) or as
// a prefix-free suffix (Redis "<ns>:<key>").
func FuzzValidateKey(f *testing.F) {
	for _, seed := range [][2]string{
		{"repository", "default/key/1"}, {"..", "k"}, {".", "k"}, {"ns", "../x"}, {"ns", "a/../../b"},
		{"ns", "/etc/passwd"}, {"ns", "a//b"}, {"ns", "a/./b"}, {"ns", "..."}, {"ns", "a:b"}, {"ns:x", "k"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, ns, key string) {
		if ValidateKey(ns, key) != nil {
			return
		}
		if ValidateNamespace(ns) != nil {
			t.Fatalf("ValidateKey accepted namespace %q that ValidateNamespace rejects", ns)
		}
		for _, s := range []string{ns, key} {
			for i := 0; i < len(s); i++ {
				c := s[i]
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._/-", c) >= 0) {
					t.Fatalf("accepted %q with byte %q outside the charset", s, c)
				}
			}
		}
		if strings.Contains(ns, "/") || ns == "." || ns == ".." {
			t.Fatalf("accepted namespace %q", ns)
		}
		// As a path below <root>/<ns>, with and without \x2F encoding,
		// the key stays there and cleaning does not change it.
		root := "/root/" + ns
		for _, name := range []string{key, strings.ReplaceAll(key, "/", `\x2F`)} {
			p := path.Join(root, name)
			if !strings.HasPrefix(p, root+"/") {
				t.Fatalf("key %q resolves to %s, outside %s", key, p, root)
			}
		}
		key = strings.TrimSuffix(key, "/") // path.Clean drops a trailing slash, nothing else
		if path.Clean(key) != key {
			t.Fatalf("key %q is not clean (%q)", key, path.Clean(key))
		}
	})
}
