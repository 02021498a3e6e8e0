package manager

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

type tempErr struct{}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

// scriptListener returns its errors in order from Accept, then blocks until
// closed.
type scriptListener struct {
	mu    sync.Mutex
	errs  []error
	calls int
}

func (l *scriptListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if len(l.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}
func (l *scriptListener) Close() error   { return nil }
func (l *scriptListener) Addr() net.Addr { return &net.TCPAddr{} }

// recordHandler keeps the levels and messages of the records it gets.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level {
			n++
		}
	}
	return n
}

// TestMuxRetriesTemporaryAcceptErrors checks that temporary Accept errors
// are retried, and that a fatal one is logged at Error and closes gRPC's
// listener.
func TestMuxRetriesTemporaryAcceptErrors(t *testing.T) {
	ln := &scriptListener{errs: []error{tempErr{}, tempErr{}, errors.New("accept: broken")}}
	h := &recordHandler{}
	gl := newConnListener(ln.Addr())
	mx := &mux{ln: ln, grpc: gl, log: slog.New(h)}
	done := make(chan struct{})
	go func() { defer close(done); mx.serve() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after a fatal accept error")
	}
	if ln.calls != 3 {
		t.Errorf("Accept called %d times, want 3 (two temporary errors retried)", ln.calls)
	}
	if n := h.count(slog.LevelError); n != 1 {
		t.Errorf("%d Error records for a fatal accept error, want 1", n)
	}
	if _, err := gl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("gRPC listener still open after the mux stopped: %v", err)
	}
}
