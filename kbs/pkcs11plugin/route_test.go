package pkcs11plugin

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRoute pins upstream's dispatch: the method first (validate_auth),
// then "wrap-key" or "resource/<ResourceDesc>" with upstream's texts.
func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		method string
		path   string
		op     Op
		res    string
		err    error
		text   string
	}{
		{"GET", "resource/default/key/1", OpReadResource, "default/key/1", nil, ""},
		{"POST", "resource/default/key/1", OpWriteResource, "default/key/1", nil, ""},
		{"DELETE", "resource/a.b/c-d/e_f.1", OpDeleteResource, "a.b/c-d/e_f.1", nil, ""},
		{"POST", "wrap-key", OpWrap, "", nil, ""},
		{"GET", "wrap-key", OpUnwrap, "", nil, ""},
		{"DELETE", "wrap-key", 0, "", ErrInvalidMethod, "invalid method"},
		{"PUT", "resource/default/key/1", 0, "", ErrInvalidMethod, "invalid method"},
		{"PATCH", "wrap-key", 0, "", ErrInvalidMethod, "invalid method"},
		{"GET", "", 0, "", ErrInvalidPath, "accessed path is invalid"},
		{"GET", "resource", 0, "", ErrInvalidPath, "accessed path is invalid"},
		{"GET", "wrap-keys", 0, "", ErrInvalidPath, "accessed path is invalid"},
		{"GET", "wrap-key/x", 0, "", ErrInvalidPath, "invalid path"},
		{"GET", "other/a/b/c", 0, "", ErrInvalidPath, "invalid path"},
		{"GET", "resource/a/b", 0, "", ErrInvalidPath, "invalid path: illegal ResourceDesc format."},
		{"GET", "resource/a/b/c/d", 0, "", ErrInvalidPath, "invalid path: illegal ResourceDesc format."},
		{"GET", "resource/.a/b/c", 0, "", ErrInvalidPath, "invalid path: illegal ResourceDesc format."},
		{"GET", "resource/a/b/c d", 0, "", ErrInvalidPath, "invalid path: illegal ResourceDesc format."},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var segs []string
			if tc.path != "" {
				segs = strings.Split(tc.path, "/")
			}
			r, err := Route(tc.method, segs)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || err.Error() != tc.text {
					t.Fatalf("err = %v, want %v %q", err, tc.err, tc.text)
				}
				return
			}
			if err != nil || r.Op != tc.op || r.Resource != tc.res {
				t.Fatalf("Route = %+v, %v", r, err)
			}
			if r.Op.Admin() != (tc.method != "GET") {
				t.Fatalf("Admin() = %v for %s", r.Op.Admin(), tc.method)
			}
		})
	}
}

// TestConfig checks Validate and that a printed Config hides the PIN.
func TestConfig(t *testing.T) {
	ok := Config{Module: "/lib/x.so", Pin: "s3cret-pin", LookupLabel: "k"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(ok), fmt.Sprintf("%+v", ok), fmt.Sprintf("%#v", ok), fmt.Sprintf("%v", &ok)} {
		if strings.Contains(s, "s3cret-pin") || !strings.Contains(s, "<redacted>") {
			t.Fatalf("printed %s", s)
		}
	}
	for _, bad := range []Config{
		{Pin: "1234"},
		{Module: "m", Pin: "1234", SlotIndex: -1},
		{Module: "m", Pin: "1234", SlotIndex: 256},
		{Module: "m"},
		{Module: "m", Pin: "1234", RsaMechanism: "rsapkcsoaep"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%v: valid", bad)
		}
	}
	for _, m := range []string{"", MechanismOAEP, MechanismTest} {
		if err := (Config{Module: "m", Pin: "1234", RsaMechanism: m}).Validate(); err != nil {
			t.Errorf("%q: %v", m, err)
		}
	}
}

// FuzzRoute: Route never panics, accepts only GET/POST/DELETE, and a
// resource it accepts is three segments of upstream's syntax.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"GET resource/default/key/1", "POST wrap-key", "DELETE wrap-key", "GET resource/a/b", "PUT x", "GET resource/a/b/c/../d", "GET resource//b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		method, path, _ := strings.Cut(in, " ")
		r, err := Route(method, strings.Split(path, "/"))
		if err != nil {
			if !errors.Is(err, ErrInvalidMethod) && !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if method != "GET" && method != "POST" && method != "DELETE" {
			t.Fatalf("method %q accepted", method)
		}
		switch r.Op {
		case OpWrap, OpUnwrap:
			if path != "wrap-key" {
				t.Fatalf("%q routed to wrap-key", path)
			}
		case OpReadResource, OpWriteResource, OpDeleteResource:
			segs := strings.Split(r.Resource, "/")
			if len(segs) != 3 || "resource/"+r.Resource != path {
				t.Fatalf("%q routed to resource %q", path, r.Resource)
			}
			for _, s := range segs {
				if s == "" || s[0] == '.' || strings.ContainsAny(s, " \x00") {
					t.Fatalf("segment %q accepted", s)
				}
			}
		default:
			t.Fatalf("op %d", r.Op)
		}
	})
}
