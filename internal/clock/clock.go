// Package clock holds the context-aware waiting shared by the retry loops
// of the guest components and the client (back-off between attestation
// attempts, the settling time of a vTPM report).
//
// Callers keep the wait injectable (an Options.Sleep of the same
// signature) so that tests do not wait; Sleep is the default they inject.
package clock

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx is done, whichever comes first.
//
// It returns ctx.Err() when ctx is done, so a retry loop stops on a
// cancelled context even when d <= 0, and nil otherwise. A d <= 0 does not
// wait. Sleep holds no timer once it has returned.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
