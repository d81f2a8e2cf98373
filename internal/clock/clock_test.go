package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

// long is a wait no test may sit through: a Sleep that honours its context
// or its non-positive duration returns long before.
const long = time.Hour

func TestSleepCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, long); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Sleep on a cancelled context took %v", el)
	}
}

func TestSleepCancelledWhileWaiting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, long) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Sleep = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep did not return after its context was cancelled")
	}
}

func TestSleepDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := Sleep(ctx, long); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep past the deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestSleepNonPositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		start := time.Now()
		if err := Sleep(context.Background(), d); err != nil {
			t.Fatalf("Sleep(%v) = %v, want nil", d, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("Sleep(%v) took %v", d, el)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestSleepElapses(t *testing.T) {
	const d = 20 * time.Millisecond
	start := time.Now()
	if err := Sleep(context.Background(), d); err != nil {
		t.Fatalf("Sleep = %v, want nil", err)
	}
	if el := time.Since(start); el < d {
		t.Fatalf("Sleep(%v) returned after %v", d, el)
	}
}
