package kbs

import (
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/protocol"
	"github.com/go-trustee/go-trustee/storage/localfs"
)

// TestResourceNameTooLongForStore: on LocalFs a resource path whose file
// name would pass 255 bytes is the client's error (404 InvalidRequestPath,
// a bounded detail), for admin writes and for attested reads alike, not a
// 500; a path that fits still works.
func TestResourceNameTooLongForStore(t *testing.T) {
	st, err := localfs.Open(localfs.Config{DirPath: t.TempDir()}, localfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig, st, nil)
	e.provision("default/short/key", "fits", allowAllPolicy)
	long := "default/long/" + strings.Repeat("k", 300)
	check := func(what string, code int, body []byte) {
		t.Helper()
		info := wantError(t, code, body, 404, "InvalidRequestPath")
		if !strings.Contains(info.Detail, "too long for the storage backend") || len(info.Detail) > 200 {
			t.Fatalf("%s: detail %q", what, info.Detail)
		}
	}
	code, body := e.adminDo("POST", "/kbs/v0/resource/"+long, []byte("x"))
	check("admin POST", code, body)
	code, body = e.adminDo("DELETE", "/kbs/v0/resource/"+long, nil)
	check("admin DELETE", code, body)

	g := e.guest(protocol.KeyEC256)
	g.rcar()
	code, body = g.do("GET", "/kbs/v0/resource/"+long, nil, nil)
	check("attested GET", code, body)
	code, body = g.do("GET", "/kbs/v0/resource/default/short/key", nil, nil)
	if code != 200 || string(g.decrypt(body)) != "fits" {
		t.Fatalf("GET of a path that fits: %d", code)
	}
}

// TestLongUnknownPathBounded: the 404 for an unknown path quotes at most
// 256 bytes of it, however long the request target.
func TestLongUnknownPathBounded(t *testing.T) {
	e := newEnv(t, testConfig, nil, nil)
	code, body := e.adminDo("GET", "/"+strings.Repeat("x", 100<<10), nil)
	info := wantError(t, code, body, 404, "InvalidRequestPath")
	if len(info.Detail) > 400 || !strings.Contains(info.Detail, "more bytes") {
		t.Fatalf("detail of %d bytes: %.100q", len(info.Detail), info.Detail)
	}
}
