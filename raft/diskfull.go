package raft

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/internal/retry"
)

// A full state dir. hashicorp/raft copes with a failed log write (the
// leader answers the write with the error and steps down, a follower
// rejects the AppendEntries) but not with a failed write of the stable
// store: setCurrentTerm panics, so the first election after the disk
// fills (the step-down above causes one) would kill the manager. Three
// defences, in the order a write meets them:
//
//  1. Before appending a write, the leader checks the free space of its
//     state dir and refuses the write with a DiskFullError when less than
//     Config.MinFreeBytes is left. Raft itself never sees the error, so
//     the leader stays leader and keeps serving reads.
//  2. A log write that fails all the same (the space went between the
//     check and the write, or a follower's disk) is reported as a
//     DiskFullError naming the dir and what is free.
//  3. The stable store (current term, vote) waits for space instead of
//     failing: the term or vote is not acknowledged before it is on disk
//     (persisting it first is what stops a double vote, see DESIGN.md),
//     and the node resumes by itself once space is freed, with no restart.

// ErrDiskFull is wrapped by DiskFullError.
var ErrDiskFull = errors.New("the manager's state disk is full")

// DiskFullError says which state dir is full and how much is free.
type DiskFullError struct {
	Dir  string
	Free uint64 // bytes available to the manager
	Need uint64 // bytes it keeps free before refusing writes; 0 when a write failed
	Err  error  // the failed write, if any
}

func (e *DiskFullError) Error() string {
	msg := fmt.Sprintf("%v: %s has %s free", ErrDiskFull, e.Dir, humanBytes(e.Free))
	if e.Need > 0 {
		msg += fmt.Sprintf(", less than the %s kept free for Raft", humanBytes(e.Need))
	}
	msg += "; writes are refused until space is freed on that filesystem (reads keep working, nothing acknowledged is lost, no restart is needed)"
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

func (e *DiskFullError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrDiskFull}
	}
	return []error{ErrDiskFull, e.Err}
}

// DefaultMinFreeBytes is the free space a leader keeps in its state dir:
// room for Raft's own writes (terms, votes, barriers, the log's growth)
// once client writes are refused.
const DefaultMinFreeBytes = 4 << 20

// isNoSpace reports whether err is a write that failed for want of space
// (or of quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// freeBytes is the space available to this process on dir's filesystem.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// minFree is the threshold of check 1; a negative Config value turns the
// check off (tests of the checks behind it).
func (c *Config) minFree() (uint64, bool) {
	switch {
	case c.MinFreeBytes < 0:
		return 0, false
	case c.MinFreeBytes == 0:
		return DefaultMinFreeBytes, true
	}
	return uint64(c.MinFreeBytes), true
}

// checkSpace is check 1: it refuses a write of size bytes when the state
// dir would keep less than the minimum free. A failed statfs lets the
// write through: Raft reports a real write failure itself.
func (n *Node) checkSpace(size int) error {
	need, on := n.cfg.minFree()
	if !on {
		return nil
	}
	free, err := freeBytes(n.cfg.Dir)
	if err != nil {
		return nil
	}
	if free < need+uint64(size) {
		n.cfg.Logger.Error("state dir is full: refusing writes until space is freed", "dir", n.cfg.Dir, "free_bytes", free, "min_free_bytes", need)
		return &DiskFullError{Dir: n.cfg.Dir, Free: free, Need: need}
	}
	return nil
}

// diskFull reports whether the state dir has less free space than the
// leader's check requires (or, with the check off, than a few pages).
func (n *Node) diskFull() bool {
	need, on := n.cfg.minFree()
	if !on {
		need = 64 << 10
	}
	free, err := freeBytes(n.cfg.Dir)
	return err == nil && free < need
}

// diskFull turns a write error caused by a full disk into a DiskFullError
// naming dir; other errors pass through.
func diskFull(dir string, err error) error {
	var dfe *DiskFullError
	if err == nil || !isNoSpace(err) || errors.As(err, &dfe) {
		return err
	}
	free, _ := freeBytes(dir)
	return &DiskFullError{Dir: dir, Free: free, Err: err}
}

// fullDiskLogs reports a log write that failed for want of space as a
// DiskFullError (check 2).
type fullDiskLogs struct {
	hraft.LogStore
	dir string
}

func (l *fullDiskLogs) StoreLog(log *hraft.Log) error {
	return diskFull(l.dir, l.LogStore.StoreLog(log))
}

func (l *fullDiskLogs) StoreLogs(logs []*hraft.Log) error {
	return diskFull(l.dir, l.LogStore.StoreLogs(logs))
}

func (l *fullDiskLogs) DeleteRange(min, max uint64) error {
	return diskFull(l.dir, l.LogStore.DeleteRange(min, max))
}

// patientStable is check 3: a stable store whose writes wait for space
// instead of failing. hashicorp/raft calls it from its own goroutines
// only (Open passes it to NewRaft; the offline RecoverSingle uses the bare
// store). When the node shuts down while a write waits, the write ends its
// goroutine with runtime.Goexit: returning the error would make raft
// panic, and returning success would claim a term or vote that is not on
// disk. Goexit runs raft's deferred calls, so its shutdown completes.
type patientStable struct {
	hraft.StableStore
	dir    string
	done   <-chan struct{}
	logger *slog.Logger
	wait   time.Duration // the longest pause between attempts
	nwait  atomic.Int32  // writes waiting for space now
}

// waiting reports whether a term or vote is waiting for space.
func (s *patientStable) waiting() bool { return s != nil && s.nwait.Load() > 0 }

func (s *patientStable) Set(key, val []byte) error {
	return s.patient(string(key), func() error { return s.StableStore.Set(key, val) })
}

func (s *patientStable) SetUint64(key []byte, val uint64) error {
	if bytes.Equal(key, keyLastVoteTerm) {
		// hashicorp/raft#661: persistVote writes the vote's term, then
		// its candidate, in two transactions. A crash between them
		// leaves the new term beside the candidate of an older vote,
		// and after a restart raft grants that candidate's request in
		// the new term as a "duplicate", skipping the check that its
		// log is up to date. Clearing the candidate first (raft reads
		// an empty value as no vote) leaves every crash point safe:
		// (old term, no candidate) is never asked about again, since
		// the current term was saved as the new one before the vote;
		// (new term, no candidate) is an election this node has not
		// voted in, and it had not answered anyone in it yet.
		if err := s.patient(string(keyLastVoteCand), func() error { return s.StableStore.Set(keyLastVoteCand, nil) }); err != nil {
			return err
		}
	}
	return s.patient(string(key), func() error { return s.StableStore.SetUint64(key, val) })
}

// hashicorp/raft's stable store keys (raft.go), which it does not export.
var (
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

func (s *patientStable) patient(key string, write func() error) error {
	err := write()
	if !isNoSpace(err) {
		return err
	}
	s.nwait.Add(1)
	defer s.nwait.Add(-1)
	b := retry.NewBackoff(20*time.Millisecond, s.wait)
	for logged := false; isNoSpace(err); err = write() {
		if !logged {
			s.logger.Error("state dir is full: Raft waits to save its term/vote until space is freed; this manager takes no part in elections meanwhile",
				"dir", s.dir, "key", key, "err", diskFull(s.dir, err))
			logged = true
		}
		t := time.NewTimer(b.Next())
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			runtime.Goexit()
		}
	}
	if err == nil {
		s.logger.Info("state dir has space again: Raft saved its term/vote", "dir", s.dir, "key", key)
	}
	return err
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}
