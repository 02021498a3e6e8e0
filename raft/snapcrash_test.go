package raft

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/state"
)

const (
	snapCrashEnv  = "RAFTSWARM_TEST_SNAPCRASH_DIR"
	snapCrashLine = "SNAPSHOT-WRITING"
	snapCrashAcks = 45
)

// stallingSnapshots stalls the second snapshot's first write for good
// after saying so on stdout: the parent kills the process right there.
type stallingSnapshots struct {
	hraft.SnapshotStore
	creates int
}

func (s *stallingSnapshots) Create(version hraft.SnapshotVersion, index, term uint64, c hraft.Configuration, ci uint64, tr hraft.Transport) (hraft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, c, ci, tr)
	s.creates++
	if err != nil || s.creates < 2 {
		return sink, err
	}
	return &stallingSink{SnapshotSink: sink}, nil
}

type stallingSink struct {
	hraft.SnapshotSink
	wrote bool
}

func (s *stallingSink) Write(p []byte) (int, error) {
	if !s.wrote {
		s.wrote = true
		n, err := s.SnapshotSink.Write(p[:len(p)/2])
		if err != nil {
			return n, err
		}
		fmt.Println(snapCrashLine)
		select {} // killed here
	}
	return s.SnapshotSink.Write(p)
}

// TestSnapshotCrashChild is the process TestSnapshotCrashKill9 kills; it
// does nothing when run on its own.
func TestSnapshotCrashChild(t *testing.T) {
	dir := os.Getenv(snapCrashEnv)
	if dir == "" {
		t.Skip("the child of TestSnapshotCrashKill9")
	}
	tm := FastTimings()
	tm.TrailingLogs = 2 // the first snapshot compacts the log: what follows it is only in the log
	tm.SnapshotThreshold = 1 << 20
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
		Store: state.New(), Timings: tm,
		snapshotHook: func(s hraft.SnapshotStore) hraft.SnapshotStore { return &stallingSnapshots{SnapshotStore: s} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n, 10*time.Second)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < snapCrashAcks; i++ {
		if _, err := n.Apply(ctx, createBatch(nodeObj(i))); err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = n.Snapshot() // stalls in stallingSink.Write
	t.Fatal("the snapshot did not stall")
}

// TestSnapshotCrashKill9 kills -9 a manager in the middle of writing a
// snapshot (after a first snapshot compacted the log) and restarts it on
// the same dir: it must start with every acknowledged write (older
// snapshot plus the log), and remove the partial snapshot folder the
// crash left behind.
func TestSnapshotCrashKill9(t *testing.T) {
	if os.Getenv(snapCrashEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSnapshotCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), snapCrashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	seen := make(chan bool, 1)
	var lines strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines.WriteString(sc.Text() + "\n")
			if sc.Text() == snapCrashLine {
				seen <- true
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		seen <- false
	}()
	select {
	case ok := <-seen:
		if !ok {
			t.Fatalf("the child ended before its snapshot stalled:\n%s", lines.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the child's snapshot did not start within 60s")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	tmps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*"+snapTmpSuffix))
	if len(tmps) != 1 {
		t.Fatalf("want the crash to leave one partial snapshot, found %v", tmps)
	}
	st := state.New()
	openNode(t, dir, "127.0.0.1:0", st)
	if got := countNodes(st); got != snapCrashAcks {
		t.Fatalf("restarted with %d nodes, want every acknowledged write (%d)", got, snapCrashAcks)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*"+snapTmpSuffix)); len(left) != 0 {
		t.Fatalf("partial snapshots left after the restart: %v", left)
	}
}
