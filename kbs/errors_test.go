package kbs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestToWire(t *testing.T) {
	sentinel := errors.New("boom")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantType   string
	}{
		{"invalid path is 404", newError(KindInvalidRequestPath, nil, "x"), http.StatusNotFound, "InvalidRequestPath"},
		{"unknown plugin is 404", newError(KindPluginNotFound, nil, "x"), http.StatusNotFound, "PluginNotFound"},
		{"policy deny is 401", newError(KindPolicyDeny, nil, "x"), http.StatusUnauthorized, "PolicyDeny"},
		{"wrapped kbs error keeps its kind", fmt.Errorf("outer: %w", newError(KindTokenVerifierError, sentinel, "x")), http.StatusUnauthorized, "TokenVerifierError"},
		{"payload too large is 413", newError(KindPayloadTooLarge, nil, "x"), http.StatusRequestEntityTooLarge, "PayloadTooLarge"},
		{"internal is 500", newError(KindInternal, sentinel, "x"), http.StatusInternalServerError, "InternalError"},
		{"foreign error is internal and hides its text", sentinel, http.StatusInternalServerError, "InternalError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, info := toWire(tc.err)
			if code != tc.wantStatus || info.Kind() != tc.wantType {
				t.Fatalf("toWire = %d %+v, want %d %s", code, info, tc.wantStatus, tc.wantType)
			}
			if tc.err == sentinel && info.Detail == sentinel.Error() {
				t.Fatalf("foreign error text leaked: %q", info.Detail)
			}
		})
	}
	var e *Error
	if !errors.As(fmt.Errorf("w: %w", newError(KindJweError, sentinel, "x")), &e) || !errors.Is(e, sentinel) {
		t.Fatal("Error does not unwrap to its cause")
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		in   string
		want int // number of segments, -1 for error
	}{
		{"resource/a/b/c", 4},
		{"resource/a/b/c.txt", 4},
		{"resource-policy/", 1},
		{"resource/../b/c", -1},
		{"resource/%2e%2e/b/c", -1},
		{"resource/a%2Fb/c/d", -1},
		{"resource/a/.hidden/c", -1},
		{"resource//b/c", -1},
		{"resource/a/b/c%00", -1},
		{"", -1},
		{"resource/a b/c/d", -1},
	}
	for _, tc := range tests {
		got, err := splitPath(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("splitPath(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || len(got) != tc.want {
			t.Errorf("splitPath(%q) = %v, %v; want %d segments", tc.in, got, err, tc.want)
		}
	}
}

func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"resource/a/b/c", "resource/%2e%2e/x/y", "a%2Fb", "reference-value/x/y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, err := splitPath(s)
		if err != nil {
			return
		}
		for _, seg := range segs {
			if seg == "." || seg == ".." || seg == "" || !segmentRE.MatchString(seg) {
				t.Fatalf("splitPath(%q) accepted segment %q", s, seg)
			}
		}
	})
}
