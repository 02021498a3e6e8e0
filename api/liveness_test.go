package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// livenessFixture runs a dispatcher term over a store holding Ready nodes.
// grace is long, so no node is marked Down unless a test sets a deadline.
func livenessFixture(t *testing.T, nodes ...string) (*Dispatcher, *state.Store) {
	t.Helper()
	st := state.New()
	r := &storeRaft{store: st}
	for _, id := range nodes {
		dtApply(t, r, state.Create(&swarmpb.Node{Id: id, Status: swarmpb.NodeStatus_NODE_STATUS_READY}))
	}
	d := &Dispatcher{Store: st, Raft: r, Period: 100 * time.Millisecond, Grace: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 5*time.Second, "the dispatcher term to start", func() bool {
		s, _ := d.term()
		return s != nil
	})
	// These tests are about a term under way: every node has been heard
	// from (resumeFixture is for a term's first seconds).
	d.mu.Lock()
	for _, id := range nodes {
		d.resume.heard(id, time.Now())
	}
	d.mu.Unlock()
	return d, st
}

func nodeStatus(st *state.Store, id string) swarmpb.NodeStatus {
	var n *swarmpb.Node
	st.View(func(tx state.ReadTx) { n = tx.GetNode(id) })
	return n.GetStatus()
}

// requireReady fails the test unless every node in ids, each heartbeating,
// is Ready.
func requireReady(t *testing.T, st *state.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if got := nodeStatus(st, id); got != swarmpb.NodeStatus_NODE_STATUS_READY {
			t.Fatalf("%s, heartbeating, is %v", id, got)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *Dispatcher) expiryCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expiries
}

// TestLivenessSleepsUntilDeadline: with every deadline far away the
// liveness loop does not wake (it used to tick every quarter period), and
// a deadline set earlier than the one it sleeps until wakes it, so the
// node is marked Down at its deadline, not at the old one.
func TestLivenessSleepsUntilDeadline(t *testing.T) {
	d, st := livenessFixture(t, "A", "B")

	before := d.expiryCount()
	time.Sleep(500 * time.Millisecond) // a quiet spell, not a wait for a condition
	if n := d.expiryCount() - before; n != 0 {
		t.Fatalf("the liveness loop ran %d times with no deadline due (the old 25 ms tick: ~20)", n)
	}

	set := time.Now()
	d.setDeadline("A", set.Add(200*time.Millisecond))
	waitFor(t, 5*time.Second, "A to be marked Down", func() bool {
		return nodeStatus(st, "A") == swarmpb.NodeStatus_NODE_STATUS_DOWN
	})
	if took := time.Since(set); took < 200*time.Millisecond {
		t.Fatalf("A marked Down %v after its deadline was set 200 ms ahead", took)
	}
	if got := nodeStatus(st, "B"); got != swarmpb.NodeStatus_NODE_STATUS_READY {
		t.Fatalf("B, still within its grace, is %v", got)
	}
}

// TestLivenessKeepsHeartbeatingNodes: a node whose deadline keeps moving
// (heartbeats) stays Ready, one that stops is marked Down within a TTL and
// a pass, and the loop wakes about once per deadline, not per tick.
func TestLivenessKeepsHeartbeatingNodes(t *testing.T) {
	d, st := livenessFixture(t, "A", "B")
	ttl := d.ttl(2) // 300 ms at a 100 ms period

	start := d.expiryCount()
	stopB := time.Now().Add(400 * time.Millisecond)
	var lastB time.Time
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(d.base()) {
		now := time.Now()
		d.setDeadline("A", now.Add(ttl))
		if now.Before(stopB) {
			d.setDeadline("B", now.Add(ttl))
			lastB = now
		}
	}
	waitFor(t, 5*time.Second, "B to be marked Down", func() bool {
		return nodeStatus(st, "B") == swarmpb.NodeStatus_NODE_STATUS_DOWN
	})
	if took := time.Since(lastB); took < ttl {
		t.Fatalf("B marked Down %v after its last heartbeat, under its TTL %v", took, ttl)
	}
	requireReady(t, st, "A")
	// Over ~1 s the old loop ticked every 25 ms (~40 passes).
	if n := d.expiryCount() - start; n > 12 {
		t.Fatalf("the liveness loop ran %d times in ~1 s of heartbeats", n)
	}
}

// TestDescriptionCurrent: the heartbeat answer that lets an agent leave its
// description out. A description sent unchanged is confirmed at the node's
// version; one left out is current only while the node is not written
// since (a forged description, a status change) and only on the leader
// that confirmed it; a changed one is never confirmed at once.
func TestDescriptionCurrent(t *testing.T) {
	d := &Dispatcher{}
	node := func(v uint64) *swarmpb.Node {
		return &swarmpb.Node{Id: "n", Meta: &swarmpb.Meta{Version: v}, Description: &swarmpb.NodeDescription{Hostname: "h"}}
	}
	if d.descriptionCurrent(node(5), false, false) {
		t.Fatal("left out before any confirmation (a new leader): current")
	}
	if !d.descriptionCurrent(node(5), true, false) {
		t.Fatal("sent unchanged: not current")
	}
	if !d.descriptionCurrent(node(5), false, false) {
		t.Fatal("left out, node not written since the confirmation: not current")
	}
	if d.descriptionCurrent(node(6), false, false) {
		t.Fatal("left out after the node was written (a forged description): current")
	}
	if !d.descriptionCurrent(node(6), true, false) || !d.descriptionCurrent(node(6), false, false) {
		t.Fatal("resent unchanged after the write: not confirmed again")
	}
	if d.descriptionCurrent(node(6), true, true) {
		t.Fatal("a changed description (written or refused): current")
	}
	if d.descriptionCurrent(node(6), false, false) {
		t.Fatal("left out after a change: current")
	}
	bare := &swarmpb.Node{Id: "b", Meta: &swarmpb.Meta{Version: 1}}
	d.descConfirmed["b"] = 1
	if d.descriptionCurrent(bare, false, false) {
		t.Fatal("left out, none stored: current")
	}
}

// TestLivenessAllowsForLateHeartbeats: while live nodes' heartbeats arrive
// late (a loaded leader or host), a silent node is given that lateness
// again, up to one TTL, before it is marked Down; it is still marked Down.
// Before, B was marked Down one TTL after its last heartbeat even though
// A's heartbeat had just come seconds late: at 100,000 tasks on 1,000
// nodes that was 44 live nodes Down and 4,374 tasks made again.
func TestLivenessAllowsForLateHeartbeats(t *testing.T) {
	d, st := livenessFixture(t, "A", "B")
	ttl, period := d.ttl(2), d.period(2) // 300 ms, 100 ms

	// A's previous heartbeat was 2 s ago: this one is ~1.9 s late.
	d.beat("A", time.Now().Add(-2*time.Second), ttl, period)
	lastB := time.Now()
	d.beat("B", lastB, ttl, period)
	d.beat("A", time.Now(), ttl, period)

	waitFor(t, 5*time.Second, "B to be marked Down", func() bool {
		return nodeStatus(st, "B") == swarmpb.NodeStatus_NODE_STATUS_DOWN
	})
	// The allowance is capped at one TTL and decays (half-life one TTL)
	// from ~3.8 s: it is still a full TTL when B's deadline passes.
	if took := time.Since(lastB); took < 2*ttl-20*time.Millisecond {
		t.Fatalf("B marked Down %v after its last heartbeat while heartbeats came ~1.9 s late; want its TTL %v plus an allowance of one TTL", took, ttl)
	}
}

// TestLivenessOnTimeHeartbeatsNoAllowance: heartbeats that come on time
// leave the allowance at zero, so a node that stops is marked Down one TTL
// after its last heartbeat, as on an idle cluster.
func TestLivenessOnTimeHeartbeatsNoAllowance(t *testing.T) {
	d, _ := livenessFixture(t, "A")
	ttl, period := d.ttl(1), d.period(1)
	now := time.Now()
	d.beat("A", now.Add(-period), ttl, period)
	d.beat("A", now, ttl, period)
	d.mu.Lock()
	got := d.allowanceLocked(time.Now())
	d.mu.Unlock()
	if got != 0 {
		t.Fatalf("allowance %v after a heartbeat on time, want 0", got)
	}
}

// TestStatusReportsKeepANodeAlive: a node whose heartbeats stop but whose
// task status reports keep reaching the leader is up, and is not marked
// Down; once its reports stop too it is, one TTL after the last. In the
// scale benchmark (1,000 nodes' agents on one starved host) heartbeat
// calls timed out while status reports got through, and live nodes were
// marked Down and their tasks made again.
func TestStatusReportsKeepANodeAlive(t *testing.T) {
	d, st := livenessFixture(t, "A", "B")
	ttl, period := d.ttl(2), d.period(2) // 300 ms, 100 ms
	now := time.Now()
	d.beat("A", now, ttl, period)
	d.beat("B", now, ttl, period)

	report := func() {
		_, _ = d.UpdateTaskStatus(nodeCtx("A"), &swarmpb.UpdateTaskStatusRequest{Updates: []*swarmpb.TaskStatusUpdate{{
			TaskId: "t1", Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}}})
	}
	deadline := time.Now().Add(5 * time.Second)
	for nodeStatus(st, "B") != swarmpb.NodeStatus_NODE_STATUS_DOWN {
		if time.Now().After(deadline) {
			t.Fatal("B, silent, was not marked Down within 5 s")
		}
		report()
		time.Sleep(20 * time.Millisecond)
	}
	// B went 2 TTLs after the heartbeats; A reported all along.
	for i := 0; i < 5; i++ {
		report()
		time.Sleep(ttl / 3)
	}
	if got := nodeStatus(st, "A"); got != swarmpb.NodeStatus_NODE_STATUS_READY {
		t.Fatalf("A, reporting task status every 20-100 ms but not heartbeating, is %v; want READY", got)
	}
	stopped := time.Now()
	report() // the last one
	waitFor(t, 5*time.Second, "A to be marked Down once its reports stop", func() bool {
		return nodeStatus(st, "A") == swarmpb.NodeStatus_NODE_STATUS_DOWN
	})
	if took := time.Since(stopped); took < ttl-20*time.Millisecond {
		t.Fatalf("A marked Down %v after its last report; want at least its TTL %v", took, ttl)
	}
}

// resumeFixture runs a dispatcher term over Ready nodes with the default
// grace (one TTL) and the given heartbeat period: at 300 ms the TTL is
// 900 ms, so the term's base grace ends 1.8 s after it starts and the
// stretched one 1.8 s later.
func resumeFixture(t *testing.T, period time.Duration, nodes ...string) (*Dispatcher, *state.Store, time.Time) {
	t.Helper()
	st := state.New()
	r := &storeRaft{store: st}
	for _, id := range nodes {
		dtApply(t, r, state.Create(&swarmpb.Node{Id: id, Status: swarmpb.NodeStatus_NODE_STATUS_READY}))
	}
	d := &Dispatcher{Store: st, Raft: r, Period: period}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := time.Now()
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 5*time.Second, "the dispatcher term to start", func() bool {
		s, _ := d.term()
		return s != nil
	})
	return d, st, started
}

// TestNewLeaderWaitsWhileNodesReconnect: a new leader gives a node it has
// not heard from yet more than the base grace while the other nodes are
// still coming back to it one after another, and marks it Down one TTL
// after they stop coming. Before, every node not heard from within the
// base grace was marked Down, however many were still reconnecting: at
// 1,000 nodes on a loaded host that was up to 61,296 tasks made again.
func TestNewLeaderWaitsWhileNodesReconnect(t *testing.T) {
	ids := []string{"silent"}
	for i := 0; i < 12; i++ {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	d, st, _ := resumeFixture(t, 300*time.Millisecond, ids...)
	ttl, period := d.ttl(len(ids)), d.period(len(ids)) // 900 ms, 300 ms
	d.mu.Lock()
	base, limit := d.resume.base, d.resume.limit
	d.mu.Unlock()

	// One more node comes back every third of a TTL, and those back keep
	// heartbeating, until the silent node is marked Down. The last comes
	// back 3.6 s into the term, two TTLs past the base grace.
	var back int
	var lastBack time.Time
	for step := time.Now(); nodeStatus(st, "silent") != swarmpb.NodeStatus_NODE_STATUS_DOWN; {
		now := time.Now()
		if now.After(limit.Add(5 * time.Second)) {
			t.Fatalf("the silent node is still %v 5 s after the limit", nodeStatus(st, "silent"))
		}
		if !now.Before(step) && back < len(ids)-1 {
			back++
			lastBack = now
			step = now.Add(ttl / 3)
		}
		for _, id := range ids[1 : back+1] {
			d.beat(id, now, ttl, period)
		}
		time.Sleep(20 * time.Millisecond)
	}
	downAt := time.Now()
	if back < len(ids)-1 {
		t.Fatalf("the silent node was marked Down %v after the base grace while nodes kept coming back (%d of %d back)",
			downAt.Sub(base), back, len(ids)-1)
	}
	if downAt.Sub(lastBack) < ttl-50*time.Millisecond {
		t.Fatalf("the silent node was marked Down %v after the last node came back; want one TTL (%v)", downAt.Sub(lastBack), ttl)
	}
	if !lastBack.After(base.Add(ttl)) {
		t.Fatalf("the last node came back %v after the base grace; the test needs it a TTL past it", lastBack.Sub(base))
	}
	requireReady(t, st, ids[1:]...)
}

// TestNewLeaderGraceUnchangedWhenAllReconnectAtOnce: when every other node
// comes back at once, as on a healthy cluster, a silent node is marked
// Down at the end of the base grace, not later.
func TestNewLeaderGraceUnchangedWhenAllReconnectAtOnce(t *testing.T) {
	d, st, _ := resumeFixture(t, 300*time.Millisecond, "silent", "A", "B")
	ttl, period := d.ttl(3), d.period(3)
	d.mu.Lock()
	base := d.deadlines["silent"]
	d.mu.Unlock()
	for nodeStatus(st, "silent") != swarmpb.NodeStatus_NODE_STATUS_DOWN {
		now := time.Now()
		if now.After(base.Add(5 * time.Second)) {
			t.Fatal("the silent node is not Down 5 s after the base grace")
		}
		d.beat("A", now, ttl, period)
		d.beat("B", now, ttl, period)
		time.Sleep(20 * time.Millisecond)
	}
	if late := time.Since(base); late > ttl {
		t.Fatalf("the silent node was marked Down %v after the base grace, with every other node back at once; want at once", late)
	}
}

// TestNewLeaderHoldsWhileMostNodesAreSilent: a new leader that has heard
// from fewer than half of the nodes marks none of the others Down (it is
// the likelier one cut off) until half are back, when the silent ones are
// judged at once, or until resumeTTLs TTLs into the term. A leader
// elected on a saturated host heard from 52 of 1,000 nodes in its first
// 35 s and marked the other 948 Down.
func TestNewLeaderHoldsWhileMostNodesAreSilent(t *testing.T) {
	d, st, _ := resumeFixture(t, 100*time.Millisecond, "A", "B", "C", "D", "E")
	ttl, period := d.ttl(5), d.period(5) // 300 ms, 100 ms
	d.mu.Lock()
	base, limit := d.resume.base, d.resume.limit
	d.mu.Unlock()
	if got := limit.Sub(base); got < (resumeTTLs-2)*ttl-50*time.Millisecond || got > (resumeTTLs-2)*ttl {
		t.Fatalf("the hold for fewer than half ends %v after the base grace, want %v (%d TTLs into the term)", got, (resumeTTLs-2)*ttl, resumeTTLs)
	}
	beat := func(ids ...string) {
		for _, id := range ids {
			d.beat(id, time.Now(), ttl, period)
		}
	}
	silent := []string{"C", "D", "E"}
	// Two of five back: past the base grace by two TTLs, the three silent
	// nodes are still Ready.
	for end := base.Add(2 * ttl); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		beat("A", "B")
	}
	for _, id := range silent {
		if got := nodeStatus(st, id); got != swarmpb.NodeStatus_NODE_STATUS_READY {
			t.Fatalf("%s is %v with only two of five nodes back, two TTLs past the grace; want Ready until half are back", id, got)
		}
	}
	// A third comes back: the two still silent are past their time and are
	// marked Down without waiting for the hold's end.
	beat("C")
	deadline := time.Now().Add(5 * time.Second)
	for nodeStatus(st, "D") != swarmpb.NodeStatus_NODE_STATUS_DOWN || nodeStatus(st, "E") != swarmpb.NodeStatus_NODE_STATUS_DOWN {
		if time.Now().After(deadline) {
			t.Fatalf("D and E are %v, %v 5 s after half of the nodes came back", nodeStatus(st, "D"), nodeStatus(st, "E"))
		}
		beat("A", "B", "C")
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().After(limit) {
		t.Fatalf("D and E were marked Down only after the hold's end (%v past it), not when half came back", time.Since(limit))
	}
	requireReady(t, st, "A", "B", "C")
}

// TestNewLeaderHoldEnds: the hold for fewer than half of the nodes back
// ends resumeTTLs TTLs into the term; the silent nodes are then marked
// Down.
func TestNewLeaderHoldEnds(t *testing.T) {
	d, st, _ := resumeFixture(t, 100*time.Millisecond, "A", "B", "C")
	ttl, period := d.ttl(3), d.period(3)
	d.mu.Lock()
	limit := d.resume.limit
	d.mu.Unlock()
	deadline := limit.Add(5 * time.Second)
	for nodeStatus(st, "B") != swarmpb.NodeStatus_NODE_STATUS_DOWN || nodeStatus(st, "C") != swarmpb.NodeStatus_NODE_STATUS_DOWN {
		if time.Now().After(deadline) {
			t.Fatalf("B and C are %v, %v 5 s after the hold's end", nodeStatus(st, "B"), nodeStatus(st, "C"))
		}
		d.beat("A", time.Now(), ttl, period)
		time.Sleep(20 * time.Millisecond)
	}
	if early := limit.Sub(time.Now()); early > 20*time.Millisecond {
		t.Fatalf("B and C marked Down %v before the hold's end, with one of three nodes back", early)
	}
	requireReady(t, st, "A")
}

// setDeadline sets node's heartbeat deadline as a heartbeat would.
func (d *Dispatcher) setDeadline(node string, dl time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setDeadlineLocked(node, dl)
}
