package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// TestManagerRefusesDamagedRaftLog restarts a manager whose raft.db was
// emptied (a truncation to nothing): the restart fails with an error
// naming the file and the way to recover, and the daemon does not come up
// serving an empty cluster (before, bbolt re-created the file empty and
// the manager started with no state).
func TestManagerRefusesDamagedRaftLog(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{}); err != nil {
		t.Fatal(err)
	}
	m1 := c.Get("m1")
	m1.Stop()
	db := filepath.Join(m1.Dir, "raft", "raft.db")
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}
	err := m1.Restart()
	if err == nil {
		t.Fatal("manager restarted on an emptied raft.db")
	}
	for _, want := range []string{db, "corrupt", "backup", "--force-new-cluster"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("restart error does not say %q: %v", want, err)
		}
	}
	if m1.Running() {
		t.Fatal("the daemon runs after refusing its state")
	}
}
