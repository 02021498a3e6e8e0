package manager

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/retry"
)

// TestLeaderWorkRestartsWithBackoff checks that leader work failing while
// leadership continues is logged at Error and restarted after growing
// delays, not at once.
func TestLeaderWorkRestartsWithBackoff(t *testing.T) {
	stop := make(chan struct{})
	never := make(chan struct{})
	h := &recordHandler{}
	var mu sync.Mutex
	var delays []time.Duration
	runs := 0
	running := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		runLeaderTerms(leaderTerms{
			leadership: func() (bool, <-chan struct{}) { return true, never },
			stop:       stop,
			log:        slog.New(h),
			backoff:    retry.NewBackoff(10*time.Millisecond, time.Hour),
			sleep: func(d time.Duration, wake <-chan struct{}) bool {
				mu.Lock()
				delays = append(delays, d.Round(10*time.Millisecond))
				mu.Unlock()
				return true
			},
			work: func(ctx context.Context) error {
				runs++ // runs are sequential
				if runs <= 3 {
					return errors.New("injected failure")
				}
				close(running)
				<-ctx.Done()
				return ctx.Err()
			},
		})
	}()
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("leader work was not restarted after its failures")
	}
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	if !slices.Equal(delays, want) {
		t.Errorf("restart delays %v, want %v", delays, want)
	}
	if n := h.count(slog.LevelError); n != 3 {
		t.Errorf("%d Error records for 3 failures, want 3", n)
	}
}
