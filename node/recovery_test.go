package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
)

// recInfo is hostname -> node info as the cluster lists it.
func recInfo(ctx context.Context, c swarmpb.ControlClient) (map[string]*swarmpb.NodeInfo, error) {
	resp, err := c.ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]*swarmpb.NodeInfo{}
	for _, n := range resp.Nodes {
		out[n.Node.GetDescription().GetHostname()] = n
	}
	return out, nil
}

func recLabel(ctx context.Context, c swarmpb.ControlClient, node, key string) (string, error) {
	resp, err := c.GetNode(ctx, &swarmpb.GetNodeRequest{Node: node})
	if err != nil {
		return "", err
	}
	return resp.Node.Node.GetSpec().GetLabels()[key], nil
}

func recSetLabel(ctx context.Context, c swarmpb.ControlClient, node, key, val string) error {
	_, err := c.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: node, LabelAdd: map[string]string{key: val}})
	return err
}

// recFollower returns a running manager that is not the leader.
func recFollower(t *testing.T, c *testcluster.Cluster) *testcluster.Member {
	t.Helper()
	leader := c.Leader(10 * time.Second)
	for _, m := range c.Members {
		if m != leader && m.Running() && m.Node.Manager() != nil {
			return m
		}
	}
	t.Fatal("no follower")
	return nil
}

func TestForceNewCluster(t *testing.T) {
	c := testcluster.New(t, 3, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)
	if err := recSetLabel(ctx, c.Control(), "w1", "k", "kept"); err != nil {
		t.Fatal(err)
	}
	// Whichever manager survives, the other two are gone for good.
	survivor := recFollower(t, c)
	var dead []*testcluster.Member
	for _, m := range c.Members {
		if m != survivor && m.Node.Manager() != nil {
			dead = append(dead, m)
			m.Stop()
		}
	}
	if len(dead) != 2 {
		t.Fatalf("stopped %d managers", len(dead))
	}
	// Without quorum, writes fail.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := recSetLabel(wctx, survivor.Control(), "w1", "k", "no-quorum")
	cancel()
	if err == nil {
		t.Fatal("write accepted without quorum")
	}

	resp, err := survivor.Local().Init(ctx, &swarmpb.InitRequest{ForceNewCluster: true})
	if err != nil {
		t.Fatalf("init --force-new-cluster: %v", err)
	}
	if resp.NodeId != survivor.NodeID() || resp.WorkerToken == "" {
		t.Fatalf("init --force-new-cluster answered %v", resp)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		return recSetLabel(ctx, survivor.Control(), survivor.Name, "k", "after-recovery")
	})
	testutil.Eventually(t, 15*time.Second, func() error {
		info, err := recInfo(ctx, survivor.Control())
		if err != nil {
			return err
		}
		if len(info) != 4 {
			return fmt.Errorf("%d nodes listed, want 4", len(info))
		}
		if got := info["w1"].Node.GetSpec().GetLabels()["k"]; got != "kept" {
			return fmt.Errorf("w1 label k = %q, want kept", got)
		}
		if got := info[survivor.Name].Node.GetSpec().GetLabels()["k"]; got != "after-recovery" {
			return fmt.Errorf("%s label k = %q", survivor.Name, got)
		}
		if s := info[survivor.Name].ManagerStatus; s != "Leader" {
			return fmt.Errorf("%s manager status %q, want Leader", survivor.Name, s)
		}
		for _, d := range dead {
			if s := info[d.Name].ManagerStatus; s != "" {
				return fmt.Errorf("dead %s manager status %q, want none", d.Name, s)
			}
			if r := info[d.Name].Node.GetSpec().GetDesiredRole(); r != swarmpb.NodeRole_NODE_ROLE_WORKER {
				return fmt.Errorf("dead %s desired role %v", d.Name, r)
			}
		}
		// The worker finds the surviving manager.
		if s := info["w1"].Node.Status; s != swarmpb.NodeStatus_NODE_STATUS_READY {
			return fmt.Errorf("w1 is %v", s)
		}
		return nil
	})
	members, err := survivor.Node.Manager().Raft().Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].ID != survivor.NodeID() {
		t.Fatalf("raft members after recovery: %+v", members)
	}
	info, err := survivor.Local().Info(ctx, &swarmpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "active" || len(info.Managers) != 1 || info.Managers[0] != survivor.Addr {
		t.Fatalf("survivor info after recovery: %v", info)
	}

	// A new manager can join the recovered cluster.
	m4 := c.Join("m4", swarmpb.NodeRole_NODE_ROLE_MANAGER)
	testutil.Eventually(t, 15*time.Second, func() error {
		info, err := recInfo(ctx, survivor.Control())
		if err != nil {
			return err
		}
		if s := info["m4"].GetManagerStatus(); s != "Reachable" {
			return fmt.Errorf("m4 manager status %q", s)
		}
		return nil
	})
	if err := recSetLabel(ctx, m4.Control(), "w1", "k2", "v"); err != nil {
		t.Fatalf("write through m4: %v", err)
	}
}

func TestForceNewClusterNeedsManagerState(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 30*time.Second)
	x := c.Add("x")
	_, err := x.Local().Init(ctx, &swarmpb.InitRequest{ForceNewCluster: true})
	wantStatus(t, "force-new-cluster on a fresh node", err, codes.FailedPrecondition, "not a manager")
	assertPristine(t, ctx, x)
	_, err = c.Get("w1").Local().Init(ctx, &swarmpb.InitRequest{ForceNewCluster: true})
	wantStatus(t, "force-new-cluster on a worker", err, codes.FailedPrecondition, "not a manager")
	// The worker is still in the cluster.
	info, err := c.Get("w1").Local().Info(ctx, &swarmpb.InfoRequest{})
	if err != nil || info.State != "active" {
		t.Fatalf("w1 after a refused force-new-cluster: %v, %v", info, err)
	}
}

func TestManagerRestartCatchesUp(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	if err := recSetLabel(ctx, c.Control(), "m1", "before", "1"); err != nil {
		t.Fatal(err)
	}
	down := recFollower(t, c)
	id := down.NodeID()
	down.Stop()

	var live *testcluster.Member
	for _, m := range c.Members {
		if m.Running() {
			live = m
		}
	}
	// The cluster keeps taking writes while it is away.
	for i := 0; i < 20; i++ {
		if err := recSetLabel(ctx, live.Control(), "m1", "while-down", fmt.Sprint(i)); err != nil {
			t.Fatalf("write %d with %s down: %v", i, down.Name, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		info, err := recInfo(ctx, live.Control())
		if err != nil {
			return err
		}
		if s := info[down.Name].ManagerStatus; s != "Unreachable" {
			return fmt.Errorf("%s manager status %q while down", down.Name, s)
		}
		return nil
	})

	down.Start(t)
	if down.NodeID() != id {
		t.Fatalf("%s restarted as %s, was %s", down.Name, down.NodeID(), id)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		// Its own replica caught up ...
		var n *swarmpb.Node
		mgr := down.Node.Manager()
		if mgr == nil {
			return fmt.Errorf("%s runs no manager", down.Name)
		}
		mgr.Store().View(func(tx state.ReadTx) {
			for _, nd := range tx.ListNodes() {
				if nd.GetDescription().GetHostname() == "m1" {
					n = nd
				}
			}
		})
		if l := n.GetSpec().GetLabels(); l["while-down"] != "19" || l["before"] != "1" {
			return fmt.Errorf("%s's replica has labels %v", down.Name, l)
		}
		// ... its control socket serves the current state ...
		if v, err := recLabel(ctx, down.Control(), "m1", "while-down"); err != nil || v != "19" {
			return fmt.Errorf("label via %s: %q, %v", down.Name, v, err)
		}
		// ... and the cluster sees it as a reachable manager again.
		info, err := recInfo(ctx, live.Control())
		if err != nil {
			return err
		}
		if s := info[down.Name].ManagerStatus; s != "Reachable" && s != "Leader" {
			return fmt.Errorf("%s manager status %q after restart", down.Name, s)
		}
		if s := info[down.Name].Node.Status; s != swarmpb.NodeStatus_NODE_STATUS_READY {
			return fmt.Errorf("%s is %v after restart", down.Name, s)
		}
		return nil
	})
	// And it takes writes itself.
	if err := recSetLabel(ctx, down.Control(), "m1", "after", "1"); err != nil {
		t.Fatalf("write via restarted %s: %v", down.Name, err)
	}
}

func TestWorkerRestartDownThenReady(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{HeartbeatPeriod: 50 * time.Millisecond})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	w1 := c.Get("w1")
	status := func(want swarmpb.NodeStatus) func() error {
		return func() error {
			info, err := recInfo(ctx, c.Control())
			if err != nil {
				return err
			}
			if s := info["w1"].Node.Status; s != want {
				return fmt.Errorf("w1 is %v, want %v", s, want)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, status(swarmpb.NodeStatus_NODE_STATUS_READY))
	w1.Stop()
	testutil.Eventually(t, 10*time.Second, status(swarmpb.NodeStatus_NODE_STATUS_DOWN))
	w1.Start(t)
	testutil.Eventually(t, 10*time.Second, status(swarmpb.NodeStatus_NODE_STATUS_READY))
}

// stayFor checks fn at every tick for d, failing at the first error.
func stayFor(t *testing.T, d, tick time.Duration, fn func() error) {
	t.Helper()
	end := time.NewTimer(d)
	defer end.Stop()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		if err := fn(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-end.C:
			return
		case <-tk.C:
		}
	}
}

func TestAgentFollowsNewLeader(t *testing.T) {
	// Short enough that an agent stuck on the dead leader would be marked
	// Down quickly, long enough not to flake on a loaded machine.
	const period = 100 * time.Millisecond
	c := testcluster.New(t, 3, 1, testcluster.Options{HeartbeatPeriod: period})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	old := c.Leader(10 * time.Second)
	old.Stop()
	var newLeader *testcluster.Member
	testutil.Eventually(t, 10*time.Second, func() error {
		newLeader = c.Leader(10 * time.Second)
		if newLeader == old {
			return fmt.Errorf("old leader still leads")
		}
		return nil
	})
	var via *testcluster.Member
	for _, m := range c.Members {
		if m.Running() && m.Node.Manager() != nil {
			via = m // either survivor; followers relay to the leader
		}
	}
	ready := func() error {
		info, err := recInfo(ctx, via.Control())
		if err != nil {
			return err
		}
		if s := info["w1"].Node.Status; s != swarmpb.NodeStatus_NODE_STATUS_READY {
			return fmt.Errorf("w1 is %v (%s)", s, info["w1"].Node.StatusMessage)
		}
		return nil
	}
	testutil.Eventually(t, 10*time.Second, ready)
	// The new leader marks silent nodes Down after its grace period plus
	// three missed heartbeats; staying Ready well past that means the
	// agent heartbeats to the new leader.
	stayFor(t, 20*period, period/2, ready)
	// The old leader is the one that is Down.
	testutil.Eventually(t, 10*time.Second, func() error {
		info, err := recInfo(ctx, via.Control())
		if err != nil {
			return err
		}
		if s := info[old.Name].Node.Status; s != swarmpb.NodeStatus_NODE_STATUS_DOWN {
			return fmt.Errorf("stopped %s is %v", old.Name, s)
		}
		return nil
	})
}

func TestLeave(t *testing.T) {
	c := testcluster.New(t, 3, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)

	// A worker leaves: nothing of the cluster is left on it.
	w1 := c.Get("w1")
	if _, err := w1.Local().Leave(ctx, &swarmpb.LeaveRequest{}); err != nil {
		t.Fatalf("worker leave: %v", err)
	}
	info, err := w1.Local().Info(ctx, &swarmpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "inactive" {
		t.Fatalf("w1 after leave: %v", info)
	}
	for _, p := range []string{"node.json", "certs"} {
		if _, err := os.Stat(filepath.Join(w1.Dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("w1 after leave: %s still there (%v)", p, err)
		}
	}
	_, err = w1.Local().Leave(ctx, &swarmpb.LeaveRequest{})
	wantStatus(t, "leave twice", err, codes.FailedPrecondition, "not part of a swarm")
	// A restart finds nothing to rejoin.
	w1.Stop()
	w1.Start(t)
	if info, err := w1.Local().Info(ctx, &swarmpb.InfoRequest{}); err != nil || info.State != "inactive" {
		t.Fatalf("w1 restarted after leave: %v, %v", info, err)
	}

	// A manager must be demoted first ...
	leaving := recFollower(t, c)
	_, err = leaving.Local().Leave(ctx, &swarmpb.LeaveRequest{})
	wantStatus(t, "manager leave without force", err, codes.FailedPrecondition, "demote")
	if leaving.Node.Manager() == nil {
		t.Fatal("refused leave stopped the manager")
	}
	// ... or demote itself with --force.
	if _, err := leaving.Local().Leave(ctx, &swarmpb.LeaveRequest{Force: true}); err != nil {
		t.Fatalf("manager leave --force: %v", err)
	}
	if info, err := leaving.Local().Info(ctx, &swarmpb.InfoRequest{}); err != nil || info.State != "inactive" {
		t.Fatalf("%s after leave --force: %v, %v", leaving.Name, info, err)
	}
	if _, err := os.Stat(filepath.Join(leaving.Dir, "node.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after leave --force: node.json still there (%v)", leaving.Name, err)
	}
	if leaving.Node.Manager() != nil {
		t.Fatalf("%s still runs a manager after leaving", leaving.Name)
	}
	// The two remaining managers still take writes, and no longer count it.
	for _, m := range c.Members {
		if m == leaving || m.Node.Manager() == nil {
			continue
		}
		if err := recSetLabel(ctx, m.Control(), "m1", "after-leave", m.Name); err != nil {
			t.Fatalf("write via %s after %s left: %v", m.Name, leaving.Name, err)
		}
		members, err := m.Node.Manager().Raft().Members()
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 2 {
			t.Fatalf("raft members seen by %s: %+v", m.Name, members)
		}
	}
	nodes, err := recInfo(ctx, c.Control())
	if err != nil {
		t.Fatal(err)
	}
	if s := nodes[leaving.Name].GetManagerStatus(); s != "" {
		t.Fatalf("%s manager status %q after leaving", leaving.Name, s)
	}
}

func TestLeaderLeavesWithForce(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)
	leader := c.Leader(10 * time.Second)
	if _, err := leader.Local().Leave(ctx, &swarmpb.LeaveRequest{Force: true}); err != nil {
		t.Fatalf("leader leave --force: %v", err)
	}
	if info, err := leader.Local().Info(ctx, &swarmpb.InfoRequest{}); err != nil || info.State != "inactive" {
		t.Fatalf("%s after leave --force: %v, %v", leader.Name, info, err)
	}
	var rest []*testcluster.Member
	for _, m := range c.Members {
		if m != leader {
			rest = append(rest, m)
		}
	}
	for _, m := range rest {
		testutil.Eventually(t, 15*time.Second, func() error {
			return recSetLabel(ctx, m.Control(), rest[0].Name, "after-leave", m.Name)
		})
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		info, err := recInfo(ctx, rest[0].Control())
		if err != nil {
			return err
		}
		if s := info[leader.Name].ManagerStatus; s != "" {
			return fmt.Errorf("%s manager status %q after leaving", leader.Name, s)
		}
		for _, m := range rest {
			if s := info[m.Name].ManagerStatus; s != "Leader" && s != "Reachable" {
				return fmt.Errorf("%s manager status %q", m.Name, s)
			}
		}
		return nil
	})
}
