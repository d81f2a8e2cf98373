package controller

import (
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

func equalObjects(a, b any) bool { return apiequality.Semantic.DeepEqual(a, b) }

// mergeTLS returns the kbs-config.toml current with its [http_server]
// tls_* keys replaced by those of generated: a TLS change in the
// TrusteeConfig reaches the KBS, and every other hand edit survives.
func mergeTLS(current, generated string) string {
	var tls []string
	for _, l := range sectionLines(generated, "http_server") {
		if strings.HasPrefix(strings.TrimSpace(l), "tls_") {
			tls = append(tls, strings.TrimSpace(l))
		}
	}
	lines := strings.Split(current, "\n")
	out := make([]string, 0, len(lines)+len(tls))
	in, inserted := false, false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			if in && !inserted {
				out = appendBeforeBlank(out, tls)
				inserted = true
			}
			in = t == "[http_server]"
			out = append(out, l)
			continue
		}
		if in && strings.HasPrefix(t, "tls_") {
			continue
		}
		out = append(out, l)
	}
	if in && !inserted {
		out = appendBeforeBlank(out, tls)
		inserted = true
	}
	if !inserted && len(tls) > 0 {
		out = append([]string{"[http_server]"}, append(tls, append([]string{""}, out...)...)...)
	}
	return strings.Join(out, "\n")
}

// appendBeforeBlank appends add before the trailing blank lines of out.
func appendBeforeBlank(out, add []string) []string {
	i := len(out)
	for i > 0 && strings.TrimSpace(out[i-1]) == "" {
		i--
	}
	tail := append([]string{}, out[i:]...)
	return append(append(out[:i], add...), tail...)
}

func sectionLines(doc, section string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			in = t == "["+section+"]"
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out
}
