package image

import (
	"fmt"
	"strings"
)

// Source is one place to pull an image from: a fully qualified reference
// and whether its registry may be reached over plain HTTP or unverified
// TLS.
type Source struct {
	Ref      string
	Insecure bool
}

// dockerHub is the registry of unqualified names without a registry
// configuration.
const dockerHub = "docker.io"

// splitRef splits a reference into its repository ("host/path") and its
// tag/digest suffix (":tag", "@sha256:...", or both).
func splitRef(ref string) (repo, suffix string) {
	repo = ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo, suffix = repo[:i], repo[i:]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, suffix = repo[:i], repo[i:]+suffix
	}
	return repo, suffix
}

// qualified reports whether ref names its registry (docker rules).
func qualified(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// Resolve expands ref into the sources to try, in order: an unqualified
// name against each unqualified-search registry (docker.io without any),
// then, per candidate, its registry entry's mirrors and its (possibly
// remapped) location. A blocked candidate gives ErrBlocked when ref is
// qualified and is skipped otherwise. A nil RegistryConfig resolves like
// an empty one.
func (rc *RegistryConfig) Resolve(ref string) ([]Source, error) {
	if ref == "" || len(ref) > 4096 || strings.ContainsAny(ref, " \t\n") {
		return nil, fmt.Errorf("%w: %q", ErrInvalidReference, ref)
	}
	var search []string
	if rc != nil {
		search = rc.UnqualifiedSearchRegistries
	}
	var names []string
	if qualified(ref) {
		names = []string{ref}
	} else {
		if len(search) == 0 {
			search = []string{dockerHub}
		}
		for _, reg := range search {
			n := reg + "/" + ref
			repo, _ := splitRef(ref)
			if (reg == dockerHub || reg == "index.docker.io") && !strings.Contains(repo, "/") {
				n = reg + "/library/" + ref
			}
			names = append(names, n)
		}
	}
	var out []Source
	var blocked []string
	for _, n := range names {
		repo, suffix := splitRef(n)
		reg := rc.match(repo)
		if reg == nil {
			out = append(out, Source{Ref: n})
			continue
		}
		if reg.Blocked {
			blocked = append(blocked, n)
			continue
		}
		rest := ""
		if !strings.HasPrefix(reg.Prefix, "*.") {
			rest = repo[len(reg.Prefix):]
		}
		for _, m := range reg.Mirrors {
			out = append(out, Source{Ref: m.Location + rest + suffix, Insecure: m.Insecure})
		}
		if reg.Location != "" {
			out = append(out, Source{Ref: reg.Location + rest + suffix, Insecure: reg.Insecure})
		} else {
			out = append(out, Source{Ref: n, Insecure: reg.Insecure})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, strings.Join(blocked, ", "))
	}
	if len(blocked) > 0 && qualified(ref) {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, ref)
	}
	return out, nil
}

// match returns the [[registry]] entry with the longest prefix matching
// repo; exact prefixes beat wildcard ("*.host") ones.
func (rc *RegistryConfig) match(repo string) *Registry {
	if rc == nil {
		return nil
	}
	host, _, _ := strings.Cut(repo, "/")
	var best *Registry
	bestLen := -1
	for i := range rc.Registries {
		r := &rc.Registries[i]
		l := -1
		if strings.HasPrefix(r.Prefix, "*.") {
			if strings.HasSuffix(host, r.Prefix[1:]) {
				l = 0 // wildcards lose to any exact prefix
			}
		} else if repo == r.Prefix || strings.HasPrefix(repo, r.Prefix+"/") {
			l = len(r.Prefix) + 1
		}
		if l > bestLen {
			best, bestLen = r, l
		}
	}
	return best
}
