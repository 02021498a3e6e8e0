package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// nodeStatus returns hostname -> "STATUS/MANAGERSTATUS".
func nodeStatus(ctx context.Context, c swarmpb.ControlClient) (map[string]string, error) {
	resp, err := c.ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range resp.Nodes {
		out[n.Node.Description.Hostname] = fmt.Sprintf("%s/%s", n.Node.Status, n.ManagerStatus)
	}
	return out, nil
}

func TestClusterJoinAndNodeList(t *testing.T) {
	c := testcluster.New(t, 3, 2, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	want := map[string]string{
		"m1": "NODE_STATUS_READY/Leader", "m2": "NODE_STATUS_READY/Reachable", "m3": "NODE_STATUS_READY/Reachable",
		"w1": "NODE_STATUS_READY/", "w2": "NODE_STATUS_READY/",
	}
	// Every manager answers node ls the same way (followers relay to the leader).
	for _, name := range []string{"m1", "m2", "m3"} {
		testutil.Eventually(t, 10*time.Second, func() error {
			st, err := nodeStatus(ctx, c.Get(name).Control())
			if err != nil {
				return err
			}
			if fmt.Sprint(st) != fmt.Sprint(want) {
				return fmt.Errorf("via %s: got %v, want %v", name, st, want)
			}
			return nil
		})
	}
	// A worker refuses control commands, saying where to run them.
	_, err := c.Get("w1").Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err == nil || !strings.Contains(err.Error(), "run this command on a manager") {
		t.Fatalf("node ls on a worker: got %v", err)
	}
}
