package raft

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/state"
)

// makeState writes 40 nodes, two snapshots and a tail of 5 more entries to
// dir, then shuts the node down.
func makeState(t *testing.T, dir string, dek []byte) {
	t.Helper()
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
		Store: state.New(), Timings: FastTimings(), NoSync: true, DEK: dek})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n, 10*time.Second)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 45; i++ {
		if _, err := n.Apply(ctx, createBatch(nodeObj(i))); err != nil {
			t.Fatal(err)
		}
		if i == 20 || i == 40 {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// newestState is the state.bin of the newest snapshot in dir.
func newestState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no snapshots in %s: %v", dir, err)
	}
	// Snapshot folder names start with term-index-time, so they sort.
	return filepath.Join(dir, "snapshots", ents[len(ents)-1].Name(), "state.bin")
}

func flip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
