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
	"github.com/raftswarm/raftswarm/raft"
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
			leadership: func() (uint64, <-chan struct{}) { return 1, never },
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

// TestLeaderWorkRestartsInANewTerm: when this manager leads again in a
// later term without leader work having seen the end of the earlier one,
// the work is stopped and started again, fenced to the new term (its
// writes are refused in any other: raft.WithLeaderTerm).
func TestLeaderWorkRestartsInANewTerm(t *testing.T) {
	stop := make(chan struct{})
	var mu sync.Mutex
	term := uint64(3)
	changed := make(chan struct{})
	started := make(chan uint64, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runLeaderTerms(leaderTerms{
			leadership: func() (uint64, <-chan struct{}) {
				mu.Lock()
				defer mu.Unlock()
				return term, changed
			},
			stop:    stop,
			log:     slog.New(&recordHandler{}),
			backoff: retry.NewBackoff(10*time.Millisecond, time.Hour),
			sleep:   func(time.Duration, <-chan struct{}) bool { return true },
			work: func(ctx context.Context) error {
				got, _ := raft.LeaderTermOf(ctx)
				started <- got
				<-ctx.Done()
				return ctx.Err()
			},
		})
	}()
	next := func() uint64 {
		t.Helper()
		select {
		case got := <-started:
			return got
		case <-time.After(10 * time.Second):
			t.Fatal("leader work was not started")
			return 0
		}
	}
	if got := next(); got != 3 {
		t.Fatalf("work fenced to term %d, want 3", got)
	}
	// A change of the known leader, same term: the work goes on.
	mu.Lock()
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	// Leader again, in term 5.
	mu.Lock()
	term = 5
	close(changed)
	changed = make(chan struct{})
	mu.Unlock()
	if got := next(); got != 5 {
		t.Fatalf("work restarted fenced to term %d, want 5", got)
	}
	close(stop)
	<-done
	if len(started) != 0 {
		t.Fatalf("work started %d more times", len(started))
	}
}
