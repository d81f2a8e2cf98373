// Package testwait is the one polling loop tests use: it waits for a
// condition with a deadline, so a test whose condition never comes fails
// with a message instead of hanging until the go test timeout.
package testwait

import (
	"testing"
	"time"
)

// Timeout bounds every wait. Generous: it only decides how long a broken
// test takes to fail, never whether a working one passes.
const Timeout = 30 * time.Second

// Until polls cond every millisecond until it holds, and fails t (naming
// what was awaited) if it does not within Timeout.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
