package image

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Credential is a registry user name and password.
type Credential struct {
	Username string
	Password string
}

// Auths is a parsed containers auth.json ({"auths":{"<key>":{"auth":
// "<base64 user:pass>"}}}), keyed by normalized registry/repository
// prefixes.
type Auths struct {
	byKey map[string]Credential
}

// ParseAuthFile decodes an auth.json document.
func ParseAuthFile(b []byte) (*Auths, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: auth.json exceeds %d bytes", ErrInvalidConfig, limits.MaxConfigBytes)
	}
	var doc struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: auth.json: %v", ErrInvalidConfig, err)
	}
	a := &Auths{byKey: map[string]Credential{}}
	for k, v := range doc.Auths {
		c := Credential{Username: v.Username, Password: v.Password}
		if v.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(v.Auth)
			if err != nil {
				return nil, fmt.Errorf("%w: auth.json entry %q: auth is not base64", ErrInvalidConfig, k)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("%w: auth.json entry %q: auth is not user:password", ErrInvalidConfig, k)
			}
			c = Credential{Username: u, Password: p}
		}
		a.byKey[normalizeAuthKey(k)] = c
	}
	return a, nil
}

// normalizeAuthKey trims a scheme and a docker v1/v2 path off a key and
// folds the Docker Hub aliases into docker.io.
func normalizeAuthKey(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	if host, path, ok := strings.Cut(k, "/"); ok && (path == "" || path == "v1/" || path == "v2/" || path == "v1" || path == "v2") {
		k = host
	}
	k = strings.TrimSuffix(k, "/")
	host, rest, _ := strings.Cut(k, "/")
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		host = dockerHub
	}
	if rest != "" {
		return host + "/" + rest
	}
	return host
}

// Lookup returns the credential for repo ("host/path"): the longest
// matching registry/repository key first, then the registry alone. ok is
// false for anonymous access.
func (a *Auths) Lookup(repo string) (c Credential, ok bool) {
	if a == nil {
		return Credential{}, false
	}
	key := normalizeAuthKey(repo)
	for {
		if c, ok := a.byKey[key]; ok {
			return c, true
		}
		i := strings.LastIndexByte(key, '/')
		if i < 0 {
			return Credential{}, false
		}
		key = key[:i]
	}
}
