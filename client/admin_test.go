package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/client/fakekbs"
)

func TestAdminCalls(t *testing.T) {
	const admin = "admin-token"
	e := newEnv(t, fakekbs.Options{AdminToken: admin}, func(o *Options) { o.Attester = nil })
	ctx := ctxT(t)
	policy := []byte("package policy\ndefault allow = false\nallow if { input.x < 3 }\n")

	if err := e.c.SetResource(ctx, admin, "default/key/1", secret); err != nil {
		t.Fatalf("SetResource: %v", err)
	}
	if got, _ := e.kbs.Resource("default/key/1"); !bytes.Equal(got, secret) {
		t.Errorf("stored resource = %q", got)
	}
	if err := e.c.SetResourcePolicy(ctx, admin, policy); err != nil {
		t.Fatalf("SetResourcePolicy: %v", err)
	}
	if !bytes.Equal(e.kbs.ResourcePolicy(), policy) {
		t.Errorf("stored policy = %q", e.kbs.ResourcePolicy())
	}
	ids, err := e.c.GetResourcePolicy(ctx, admin)
	if err != nil || string(ids) != `["resource-policy"]` {
		t.Errorf("GetResourcePolicy = %s, %v", ids, err)
	}
	if err := e.c.SetAttestationPolicy(ctx, admin, "", "", policy); err != nil {
		t.Fatalf("SetAttestationPolicy: %v", err)
	}
	if got, ok := e.kbs.AttestationPolicy("default_cpu"); !ok || !bytes.Equal(got, policy) {
		t.Errorf("stored attestation policy = %q", got)
	}
	msg := json.RawMessage(`{"payload":"eyJzdm4iOlsiMSJdfQ==","type":"sample","version":"0.1.0"}`)
	if err := e.c.SetReferenceValue(ctx, admin, msg); err != nil {
		t.Fatalf("SetReferenceValue: %v", err)
	}
	rv, err := e.c.GetReferenceValue(ctx, admin, "svn")
	if err != nil || string(rv) != `["1"]` {
		t.Errorf("GetReferenceValue = %s, %v", rv, err)
	}
	if err := e.c.DeleteResource(ctx, admin, "kbs:///default/key/1"); err != nil {
		t.Fatalf("DeleteResource: %v", err)
	}
	if _, ok := e.kbs.Resource("default/key/1"); ok {
		t.Error("resource still stored")
	}

	// The wire bodies, exactly as trustee-server.md §2 has them.
	want := map[string]string{
		"/kbs/v0/resource-policy":        `{"policy":"cGFja2FnZSBwb2xpY3kKZGVmYXVsdCBhbGxvdyA9IGZhbHNlCmFsbG93IGlmIHsgaW5wdXQueCA8IDMgfQo"}`,
		"/kbs/v0/attestation-policy":     `{"type":"rego","policy_id":"default_cpu","policy":"cGFja2FnZSBwb2xpY3kKZGVmYXVsdCBhbGxvdyA9IGZhbHNlCmFsbG93IGlmIHsgaW5wdXQueCA8IDMgfQo"}`,
		"/kbs/v0/resource/default/key/1": string(secret),
	}
	for _, r := range e.kbs.Requests() {
		if r.Bearer != admin {
			t.Errorf("%s %s: bearer %q", r.Method, r.Path, r.Bearer)
		}
		if w, ok := want[r.Path]; ok && r.Method == "POST" && string(r.Body) != w {
			t.Errorf("%s body = %s, want %s", r.Path, r.Body, w)
		}
	}

	// A wrong admin token: 401 with the server's detail.
	err = e.c.SetResource(ctx, "wrong", "default/key/1", secret)
	var kerr *Error
	if !errors.As(err, &kerr) || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "AdminAuthAccess") {
		t.Fatalf("wrong admin token: %v", err)
	}
	if _, err := e.c.GetReferenceValue(ctx, admin, "../x"); err == nil {
		t.Error("GetReferenceValue accepted a dot-dot id")
	}
	if err := e.c.SetReferenceValue(ctx, admin, json.RawMessage("{")); err == nil {
		t.Error("SetReferenceValue accepted invalid JSON")
	}
	if err := e.c.SetResource(ctx, admin, "a/b", secret); !errors.Is(err, ErrInvalidResourceURI) {
		t.Errorf("SetResource with a bad path: %v", err)
	}
}
