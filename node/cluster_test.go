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

func leaderName(t *testing.T, c *testcluster.Cluster) string {
	return c.Leader(10 * time.Second).Name
}

// writeLabel performs a replicated write through member m.
func writeLabel(ctx context.Context, m *testcluster.Member, node, val string) error {
	_, err := m.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: node, LabelAdd: map[string]string{"k": val}})
	return err
}

func TestLeaderFailoverAndQuorumLoss(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	old := c.Get(leaderName(t, c))
	old.Stop()
	var survivor *testcluster.Member
	for _, m := range c.Members {
		if m.Running() {
			survivor = m
		}
	}
	// A new leader is elected and writes resume.
	testutil.Eventually(t, 10*time.Second, func() error { return writeLabel(ctx, survivor, "m1", "after-failover") })
	if l := leaderName(t, c); l == old.Name {
		t.Fatalf("leader is still %s", l)
	}

	// Two of three down: writes and current reads fail fast with the quorum error.
	for _, m := range c.Members {
		if m.Running() && m != survivor {
			m.Stop()
		}
	}
	start := time.Now()
	err := writeLabel(ctx, survivor, "m1", "no-quorum")
	if err == nil || !strings.Contains(err.Error(), "lost quorum") || !strings.Contains(err.Error(), "1 of 3 managers reachable, 2 needed") {
		t.Fatalf("write without quorum: got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("write without quorum took %v", d)
	}
	if _, err := survivor.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{}); err == nil || !strings.Contains(err.Error(), "lost quorum") {
		t.Fatalf("read without quorum: got %v", err)
	}

	// Managers come back on their state dirs: quorum and state return.
	for _, m := range c.Members {
		if !m.Running() {
			m.Start(t)
		}
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		resp, err := survivor.Control().GetNode(ctx, &swarmpb.GetNodeRequest{Node: "m1"})
		if err != nil {
			return err
		}
		if got := resp.Node.Node.Spec.Labels["k"]; got != "after-failover" {
			return fmt.Errorf("label k = %q", got)
		}
		return nil
	})
}

func TestRestartAllManagersKeepsState(t *testing.T) {
	c := testcluster.New(t, 3, 1, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	if err := writeLabel(ctx, c.Get("m2"), "w1", "persisted"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		m.Stop()
	}
	for _, m := range c.Members {
		m.Start(t)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		st, err := nodeStatus(ctx, c.Get("m3").Control())
		if err != nil {
			return err
		}
		if len(st) != 4 || st["w1"] != "NODE_STATUS_READY/" {
			return fmt.Errorf("nodes: %v", st)
		}
		resp, err := c.Get("m1").Control().GetNode(ctx, &swarmpb.GetNodeRequest{Node: "w1"})
		if err != nil {
			return err
		}
		if resp.Node.Node.Spec.Labels["k"] != "persisted" {
			return fmt.Errorf("labels %v", resp.Node.Node.Spec.Labels)
		}
		return nil
	})
}

func managerStatus(ctx context.Context, c swarmpb.ControlClient, name string) (string, error) {
	resp, err := c.GetNode(ctx, &swarmpb.GetNodeRequest{Node: name})
	if err != nil {
		return "", err
	}
	return resp.Node.ManagerStatus, nil
}

func TestPromoteDemoteLive(t *testing.T) {
	c := testcluster.New(t, 1, 2, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	mgr := swarmpb.NodeRole_NODE_ROLE_MANAGER
	wrk := swarmpb.NodeRole_NODE_ROLE_WORKER

	// With one manager, demoting it is refused.
	_, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m1", DesiredRole: &wrk})
	if err == nil || !strings.Contains(err.Error(), "last manager") {
		t.Fatalf("demote last manager: %v", err)
	}
	// Promote both workers: each becomes a Raft voter without a restart.
	for _, w := range []string{"w1", "w2"} {
		if _, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: w, DesiredRole: &mgr}); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []string{"w1", "w2"} {
		testutil.Eventually(t, 15*time.Second, func() error {
			s, err := managerStatus(ctx, c.Control(), w)
			if err != nil {
				return err
			}
			if s != "Reachable" {
				return fmt.Errorf("%s manager status %q", w, s)
			}
			if c.Get(w).Node.Manager() == nil {
				return fmt.Errorf("%s runs no manager", w)
			}
			return nil
		})
	}
	// The promoted node serves control commands itself.
	if _, err := c.Get("w1").Control().ListNodes(ctx, &swarmpb.ListNodesRequest{}); err != nil {
		t.Fatalf("node ls on promoted node: %v", err)
	}
	// Demote the leader: leadership is handed over first, then it leaves Raft
	// and keeps running as a worker.
	if _, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m1", DesiredRole: &wrk}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if c.Get("m1").Node.Manager() != nil {
			return fmt.Errorf("m1 still runs a manager")
		}
		st, err := nodeStatus(ctx, c.Get("w1").Control())
		if err != nil {
			return err
		}
		if st["m1"] != "NODE_STATUS_READY/" {
			return fmt.Errorf("m1 is %s", st["m1"])
		}
		if st["w1"] == "NODE_STATUS_READY/Reachable" && st["w2"] == "NODE_STATUS_READY/Reachable" {
			return fmt.Errorf("no leader among w1, w2: %v", st)
		}
		return nil
	})
	// Now two managers: stop w2, and demoting w1 would lose quorum.
	c.Get("w2").Stop()
	testutil.Eventually(t, 15*time.Second, func() error {
		_, err := c.Get("w1").Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w1", DesiredRole: &wrk})
		if err == nil {
			t.Fatal("demote accepted while it would lose quorum")
		}
		if !strings.Contains(err.Error(), "quorum") {
			return err
		}
		return nil
	})
}
