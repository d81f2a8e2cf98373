package client

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// DefaultPlugin is the KBS plugin of a kbs:// URI and of a bare path.
const DefaultPlugin = "resource"

// maxURILen bounds a resource URI or path.
const maxURILen = limits.MaxResourceURIBytes

// ResourceURI names something served by a KBS plugin:
// kbs[+<plugin>]://[<host>[:port]]/<seg>/.../<seg>[?query]. The host is
// ignored when fetching (the client's URL is used), as upstream does.
type ResourceURI struct {
	// Address is the host[:port] of the URI; informational only.
	Address string
	// Plugin is the KBS plugin: "resource" for kbs://, "<p>" for kbs+<p>://.
	Plugin string
	// Path holds the segments after the plugin, in their escaped form.
	Path []string
	// Query is the raw query without "?"; "" when absent.
	Query string
}

// ParseResourceURI accepts a kbs:// or kbs+<plugin>:// URI, or a bare path
// "repo/type/tag[?query]" (a leading "/" is allowed) of the resource plugin,
// as kbs-client's --path. Segments must be non-empty and not "." or "..";
// the resource plugin needs exactly three of them.
func ParseResourceURI(s string) (ResourceURI, error) {
	if len(s) > maxURILen {
		return ResourceURI{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidResourceURI, maxURILen)
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == '#' {
			return ResourceURI{}, fmt.Errorf("%w: %q contains a space, control character or '#'", ErrInvalidResourceURI, s)
		}
	}
	var u ResourceURI
	var rest string
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		switch {
		case scheme == "kbs":
			u.Plugin = DefaultPlugin
		case strings.HasPrefix(scheme, "kbs+") && len(scheme) > len("kbs+"):
			u.Plugin = scheme[len("kbs+"):]
		default:
			return ResourceURI{}, fmt.Errorf("%w: scheme must be kbs or kbs+<plugin>, got %q", ErrInvalidResourceURI, scheme)
		}
		host, path, found := strings.Cut(after, "/")
		if !found {
			return ResourceURI{}, fmt.Errorf("%w: %q has no path", ErrInvalidResourceURI, s)
		}
		u.Address = host
		rest = path
	} else {
		u.Plugin = DefaultPlugin
		rest = strings.TrimPrefix(s, "/")
	}
	if !validSegment(u.Plugin) {
		return ResourceURI{}, fmt.Errorf("%w: bad plugin name %q", ErrInvalidResourceURI, u.Plugin)
	}
	rest, u.Query, _ = strings.Cut(rest, "?")
	u.Path = strings.Split(rest, "/")
	for _, seg := range u.Path {
		if !validSegment(seg) {
			return ResourceURI{}, fmt.Errorf("%w: bad path segment %q in %q", ErrInvalidResourceURI, seg, s)
		}
		if _, err := url.PathUnescape(seg); err != nil {
			return ResourceURI{}, fmt.Errorf("%w: %v", ErrInvalidResourceURI, err)
		}
	}
	if _, err := url.ParseQuery(u.Query); err != nil {
		return ResourceURI{}, fmt.Errorf("%w: query: %v", ErrInvalidResourceURI, err)
	}
	if u.Plugin == DefaultPlugin && len(u.Path) != 3 {
		return ResourceURI{}, fmt.Errorf("%w: resource path must be <repo>/<type>/<tag>, got %d segments", ErrInvalidResourceURI, len(u.Path))
	}
	// The bound holds for the canonical form too (a bare path gains its
	// "kbs://" scheme), so every accepted URI re-parses from String().
	if n := len(u.String()); n > maxURILen {
		return ResourceURI{}, fmt.Errorf("%w: longer than %d bytes as a kbs:// URI (%d)", ErrInvalidResourceURI, maxURILen, n)
	}
	return u, nil
}

func validSegment(seg string) bool {
	return seg != "" && seg != "." && seg != ".." && !strings.ContainsAny(seg, "/?")
}

// ResourcePath returns the path segments joined by "/".
func (u ResourceURI) ResourcePath() string { return strings.Join(u.Path, "/") }

// String returns the canonical URI: kbs://<address>/<path>[?query], with
// "kbs+<plugin>" as scheme for plugins other than "resource".
func (u ResourceURI) String() string {
	scheme := "kbs"
	if u.Plugin != DefaultPlugin {
		scheme = "kbs+" + u.Plugin
	}
	s := scheme + "://" + u.Address + "/" + u.ResourcePath()
	if u.Query != "" {
		s += "?" + u.Query
	}
	return s
}

// endpoint returns the KBS path of u: kbs/v0/<plugin>/<path> and its query.
func (u ResourceURI) endpoint() (path, query string) {
	return "/kbs/v0/" + u.Plugin + "/" + u.ResourcePath(), u.Query
}
