package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// captureHandler records every log record, at every level.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level mention word.
func (h *captureHandler) count(level slog.Level, word string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level && strings.Contains(r.Message, word) {
			n++
		}
	}
	return n
}

// flakyDispatcher answers heartbeats while up, and fails them as a
// manager cut off would while down.
type flakyDispatcher struct {
	fakeDispatcher
	down     atomic.Bool
	failures atomic.Int64
}

func (d *flakyDispatcher) Heartbeat(ctx context.Context, r *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	if d.down.Load() {
		d.failures.Add(1)
		return nil, status.Error(codes.Unavailable, "manager unreachable")
	}
	return d.fakeDispatcher.Heartbeat(ctx, r)
}

// A worker whose heartbeats fail says so once at Warn, however many
// retries follow, and at Info once they are answered again. Before, every
// failure was at Debug: silent at the default level.
func TestHeartbeatOutageLoggedOnce(t *testing.T) {
	ln := listenLoopback(t)
	d := &flakyDispatcher{fakeDispatcher: fakeDispatcher{addr: ln.Addr().String()}}
	conns := serveDispatcher(t, ln, d)

	logs := &captureHandler{}
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1",
		Managers: []string{d.addr}, Conns: conns, Logger: slog.New(logs)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 5*time.Second, func() error {
		if n := d.heartbeats.Load(); n < 2 {
			return fmt.Errorf("%d heartbeats answered", n)
		}
		return nil
	})
	d.down.Store(true)
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := d.failures.Load(); n < 5 {
			return fmt.Errorf("%d heartbeats failed, want 5", n)
		}
		return nil
	})
	if n := logs.count(slog.LevelWarn, "heartbeat"); n != 1 {
		t.Fatalf("%d Warn records about heartbeats during one outage of %d failures, want 1", n, d.failures.Load())
	}
	d.down.Store(false)
	testutil.Eventually(t, 5*time.Second, func() error {
		if logs.count(slog.LevelInfo, "heartbeats recovered") != 1 {
			return fmt.Errorf("no Info record of the recovery")
		}
		return nil
	})
	if n := logs.count(slog.LevelWarn, "heartbeat"); n != 1 {
		t.Fatalf("%d Warn records about heartbeats, want 1", n)
	}
	// The fake serves no task session: it fails on every retry, with one
	// Warn for the whole run.
	if n := logs.count(slog.LevelWarn, "task session"); n > 1 {
		t.Fatalf("%d Warn records about the task session, want at most 1", n)
	}
}
