package raft

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/state"
)

// recorder is a slog.Handler that keeps every record it is given.
type recorder struct {
	level slog.Level
	mu    *sync.Mutex
	recs  *[]slog.Record
	attrs []slog.Attr
}

func newRecorder(level slog.Level) *recorder {
	return &recorder{level: level, mu: new(sync.Mutex), recs: new([]slog.Record)}
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	*r.recs = append(*r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}
func (r *recorder) WithGroup(string) slog.Handler { return r }

func (r *recorder) records() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), *r.recs...)
}

func attr(rec slog.Record, key string) string {
	var v string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// Raft's own lines reach the node's slog handler, marked as Raft's.
func TestRaftLogsThroughSlog(t *testing.T) {
	rec := newRecorder(slog.LevelDebug)
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{
		NodeID: "n1", Addr: layer.Addr().String(), Dir: t.TempDir(), Stream: layer,
		Store: state.New(), Timings: FastTimings(), NoSync: true, Logger: slog.New(rec),
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n, 10*time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, r := range rec.records() {
			if attr(r, "component") == "raft" && r.Message == "entering leader state" {
				return nil
			}
		}
		return errors.New(`no "entering leader state" record from Raft yet`)
	})
}

// The adapter keeps hclog's gate (Info only when the node logs at Debug)
// and passes levels and key/values through.
func TestHCLogAdapterLevelsAndArgs(t *testing.T) {
	rec := newRecorder(slog.LevelInfo)
	l := hclogger(slog.New(rec)).Named("snapshot").With("id", "n1")
	l.Info("chatty")
	l.Warn("failed to contact", "server-id", "n2", "error", errors.New("boom"))
	l.StandardLogger(nil).Print("[ERR] from a standard logger")
	got := rec.records()
	if len(got) != 2 {
		t.Fatalf("got %d records, want 2 (Info is below the gate): %v", len(got), got)
	}
	if got[0].Level != slog.LevelWarn || got[0].Message != "failed to contact" ||
		attr(got[0], "component") != "raft.snapshot" || attr(got[0], "id") != "n1" ||
		attr(got[0], "server-id") != "n2" || attr(got[0], "error") != "boom" {
		t.Errorf("warn record = %v %q %v", got[0].Level, got[0].Message, got[0])
	}
	if got[1].Level != slog.LevelError || got[1].Message != "from a standard logger" {
		t.Errorf("standard logger record = %v %q", got[1].Level, got[1].Message)
	}
	if hl := hclogger(slog.New(newRecorder(slog.LevelDebug))); !hl.IsInfo() || hl.IsDebug() {
		t.Errorf("at slog Debug the gate is %v, want Info", hl.GetLevel())
	}
}
