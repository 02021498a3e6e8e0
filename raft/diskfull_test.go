package raft

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// smallDisk mounts a tmpfs of size bytes under /tmp (root only) and
// unmounts it in the test's cleanup, even on failure.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt, err := os.MkdirTemp("", "rel-disk-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "rel-disk-tmpfs", mnt).CombinedOutput(); err != nil {
		_ = os.Remove(mnt)
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			return
		}
		_ = os.Remove(mnt)
	})
	return mnt
}

// fill writes a file on dir's filesystem until it is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 1<<16; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return
		}
	}
	t.Fatal("fill: the disk never filled")
}

// bigNode is a node object with a label of about 16 KiB, so that a few
// hundred writes outgrow what the log file has already allocated.
func bigNode(i int) *swarmpb.Node {
	n := nodeObj(i)
	n.Spec.Labels["pad"] = strings.Repeat(fmt.Sprintf("%08d", i), 2048)
	return n
}

// tightStable is a stable store whose writes fail with ENOSPC while its
// filesystem is full. bbolt may fit a term into pages raft.db has
// already allocated, or may need a new one; this makes the test take the
// second case every time.
type tightStable struct {
	hraft.StableStore
	dir string
}

func (s tightStable) full() error {
	if free, err := freeBytes(s.dir); err == nil && free < 64<<10 {
		return &fs.PathError{Op: "write", Path: filepath.Join(s.dir, "raft.db"), Err: syscall.ENOSPC}
	}
	return nil
}

func (s tightStable) Set(k, v []byte) error {
	if err := s.full(); err != nil {
		return err
	}
	return s.StableStore.Set(k, v)
}

func (s tightStable) SetUint64(k []byte, v uint64) error {
	if err := s.full(); err != nil {
		return err
	}
	return s.StableStore.SetUint64(k, v)
}

func openDiskNode(t *testing.T, dir string, st *state.Store, minFree int64) *Node {
	t.Helper()
	hasState, err := HasState(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
		Store: st, Timings: FastTimings(), MinFreeBytes: minFree,
		stableHook: func(s hraft.StableStore) hraft.StableStore { return tightStable{s, dir} }})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if !hasState {
		if err := n.BootstrapSelf(); err != nil {
			t.Fatal(err)
		}
	}
	waitLeader(t, n, 10*time.Second)
	return n
}

// checkDiskFullErr checks that err is a DiskFullError that names dir and
// what is free, not a timeout.
func checkDiskFullErr(t *testing.T, err error, dir string) {
	t.Helper()
	var dfe *DiskFullError
	if !errors.As(err, &dfe) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("got %v, want a DiskFullError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "free") || strings.Contains(msg, "deadline") {
		t.Fatalf("the error does not say which dir is full and what is free: %v", err)
	}
}

// applyUntil retries a write until it succeeds or the deadline passes:
// after space returns, a node that stepped down needs an election first.
func applyUntil(t *testing.T, n *Node, b *swarmpb.StoreBatch, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := n.Apply(ctx, b)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume after space returned: %v", err)
		}
		retry.Sleep(context.Background(), 50*time.Millisecond)
	}
}

func haveNodes(t *testing.T, st *state.Store, ids []string) {
	t.Helper()
	st.View(func(tx state.ReadTx) {
		for _, id := range ids {
			if tx.GetNode(id) == nil {
				t.Fatalf("acknowledged write %s lost", id)
			}
		}
	})
}

// TestDiskFull fills a small tmpfs holding a single manager's state dir
// and checks that writes fail with a DiskFullError naming the dir and
// the free space, that reads keep working, that writes resume once the
// filler is deleted with no restart, and that every acknowledged write is
// there, also after a restart.
//
// "refused before raft" is the normal path (the leader's free-space
// check). "raft write fails" turns that check off so that the log write
// itself fails: hashicorp/raft then steps the leader down, and the
// election after it writes the term to the stable store, which on a full
// disk panicked in raft's setCurrentTerm before the store waited for space.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name    string
		minFree int64
	}{
		{"refused before raft", 1 << 20},
		{"raft write fails", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := smallDisk(t, "24m")
			dir := filepath.Join(mnt, "state")
			st := state.New()
			n := openDiskNode(t, dir, st, tc.minFree)
			var acked []string
			write := func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := n.Apply(ctx, createBatch(bigNode(i)))
				if err == nil {
					acked = append(acked, bigNode(i).Id)
				}
				return err
			}
			for i := 0; i < 20; i++ {
				if err := write(i); err != nil {
					t.Fatalf("write %d before the disk filled: %v", i, err)
				}
			}
			filler := filepath.Join(mnt, "filler")
			fill(t, filler)

			// Writes fail, with the reason. With the check off, the
			// first writes may still fit in pages raft.db has already
			// allocated.
			next := 20
			var err error
			for ; next < 2000; next++ {
				if err = write(next); err != nil {
					break
				}
			}
			checkDiskFullErr(t, err, dir)
			for k := 0; k < 3; k++ {
				next++
				checkDiskFullErr(t, write(next), dir)
			}

			// Reads keep working: on the leader with the check on; with
			// it off the node stepped down and serves reads again once
			// it is re-elected, which its stable store lets it do when
			// space returns. Either way the process is alive and its
			// store holds every acknowledged write.
			if tc.minFree > 0 {
				for k := 0; k < 3; k++ {
					if err := n.ReadBarrier(ctxT(t, 5*time.Second)); err != nil {
						t.Fatalf("read on a full disk: %v", err)
					}
				}
			}
			haveNodes(t, st, acked)

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			applyUntil(t, n, createBatch(bigNode(5000)), 20*time.Second)
			acked = append(acked, bigNode(5000).Id)
			for i := 5001; i < 5010; i++ {
				if err := write(i); err != nil {
					t.Fatalf("write after space returned: %v", err)
				}
			}
			if err := n.ReadBarrier(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			haveNodes(t, st, acked)

			// Nothing lost on disk either.
			if err := n.Shutdown(); err != nil {
				t.Fatal(err)
			}
			st2 := state.New()
			openDiskNode(t, dir, st2, tc.minFree)
			haveNodes(t, st2, acked)
		})
	}
}

// TestDiskFullShutdownWhileWaiting shuts a node down while its stable
// store waits for space: Shutdown must end (the waiting raft goroutine
// exits) instead of hanging or panicking.
func TestDiskFullShutdownWhileWaiting(t *testing.T) {
	mnt := smallDisk(t, "16m")
	dir := filepath.Join(mnt, "state")
	n := openDiskNode(t, dir, state.New(), -1)
	fill(t, filepath.Join(mnt, "filler"))
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !n.stable.waiting(); i++ {
		if time.Now().After(deadline) {
			t.Fatal("the stable store never waited for space")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = n.Apply(ctx, createBatch(bigNode(i)))
		cancel()
	}
	done := make(chan error, 1)
	go func() { done <- n.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hung while the stable store waited for space")
	}
}
