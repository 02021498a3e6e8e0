package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RemoveVolumes answers for every node: one whose engine cannot remove
// volumes (the in-memory one) says so, a stopped one is reported not
// reached, and bad names are refused before any node is asked.
func TestRemoveVolumesReportsEveryNode(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	ctl := c.Control()
	if _, err := ctl.RemoveVolumes(ctx, &swarmpb.RemoveVolumesRequest{Names: []string{"ok", "../etc"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad volume name: %v, want InvalidArgument", err)
	}
	c.Get("w1").Stop()
	// Down: its session is long closed.
	testutil.Eventually(t, 20*time.Second, func() error {
		n, err := ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "w1"})
		if err != nil {
			return err
		}
		if s := n.Node.Node.Status; s != swarmpb.NodeStatus_NODE_STATUS_DOWN {
			return fmt.Errorf("w1 is %s", s)
		}
		return nil
	})
	start := time.Now()
	resp, err := ctl.RemoveVolumes(ctx, &swarmpb.RemoveVolumesRequest{Names: []string{"st_db", "st_db"}})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s although the only node asked answers at once", time.Since(start))
	}
	got := map[string]string{}
	for _, r := range resp.Results {
		if r.Name != "st_db" || r.Removed {
			t.Errorf("result %v", r)
		}
		got[r.Hostname] = r.Error
	}
	if len(resp.Results) != 2 {
		t.Errorf("%d results, want one per node for the one (deduplicated) name", len(resp.Results))
	}
	if !strings.Contains(got["m1"], "cannot remove volumes") {
		t.Errorf("m1: %q", got["m1"])
	}
	if !strings.Contains(got["w1"], "not reached") {
		t.Errorf("w1: %q", got["w1"])
	}
}
