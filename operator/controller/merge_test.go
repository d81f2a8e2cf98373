package controller

import (
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/kbs"
	"github.com/go-trustee/go-trustee/operator/api/v1alpha1"
)

func TestMergeTLS(t *testing.T) {
	old, err := renderKbsConfig(&v1alpha1.TrusteeConfig{Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfileRestricted}})
	if err != nil {
		t.Fatal(err)
	}
	// A hand edit elsewhere in the file.
	edited := strings.Replace(old, "worker_count = 4", "worker_count = 9", 1)
	gen, err := renderKbsConfig(&v1alpha1.TrusteeConfig{Spec: v1alpha1.TrusteeConfigSpec{Profile: v1alpha1.ProfileRestricted,
		TLSConfig: &v1alpha1.TLSConfig{Profile: "custom", MinVersion: "1.3"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := mergeTLS(edited, gen)
	for _, w := range []string{"worker_count = 9", `tls_profile = "custom"`, `tls_min_version = "1.3"`} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
	if strings.Contains(got, `tls_profile = "intermediate"`) {
		t.Error("old TLS profile kept")
	}
	if _, _, err := kbs.ParseConfig([]byte(got)); err != nil {
		t.Errorf("merged configuration refused: %v", err)
	}
	// Idempotent.
	if again := mergeTLS(got, gen); again != got {
		t.Errorf("merge is not idempotent:\n%s\n---\n%s", got, again)
	}
}
