package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// LeaderAddrKey is the trailer in which a follower's dispatcher names the
// leader, so an agent can move there directly.
const LeaderAddrKey = "raftswarm-leader-addr"

// Heartbeat settings. The period grows with the cluster so the leader sees
// at most about MaxHeartbeatRate heartbeats a second (Nomad's approach;
// agents add jitter by calling up to 15 % early). A node is Down when its
// next heartbeat is more than HeartbeatTTL(period) - period late: the
// slack, not the period, is what absorbs a stalled node or a slow leader,
// so the period can be long (an idle cluster costs little) while the slack
// stays at most HeartbeatSlack (a dead node is found soon). BENCHMARKS.md
// ("An idle cluster") gives the node-loss times for 5, 100 and 1,000 nodes.
const (
	DefaultHeartbeatPeriod = 2 * time.Second
	MaxHeartbeatRate       = 200
	HeartbeatSlack         = 2 * time.Second
)

// HeartbeatTTL is how long after a heartbeat a node that sends no other is
// marked Down: one period plus a slack of two periods, at most
// HeartbeatSlack (4 s with the default 2 s period; 300 ms with the 100 ms
// period of test clusters).
func HeartbeatTTL(period time.Duration) time.Duration {
	return period + min(2*period, HeartbeatSlack)
}

// Dispatcher serves the agents on the leader. It is made of three parts,
// each in its own file and reaching the others only through a narrow seam:
//
//   - heartbeats and node liveness (this file);
//   - task sessions: one store watch fanned out to each node's Session
//     stream, and the batched writes of task status updates (sessions.go);
//   - the routing-mesh endpoint table (endpoints.go);
//   - the log broker, which routes PublishLogs streams to ServiceLogs calls
//     and reaches sessions only to push a subscription (logbroker.go).
//
// It is active only while Run runs, which the leader does for the length of
// its term; every part lives for one term.
type Dispatcher struct {
	swarmpb.UnimplementedDispatcherServer
	Store  *state.Store
	Raft   Raft
	Period time.Duration // base heartbeat period; DefaultHeartbeatPeriod if 0
	// Grace is how long after a leader change a silent node keeps its status
	// before being marked Down; 0 means one TTL.
	Grace  time.Duration
	Logger *slog.Logger

	mu        sync.Mutex
	active    bool
	deadlines map[string]time.Time // node ID -> heartbeat deadline
	// reported holds, per node, how long its last task status report
	// keeps it alive (the report's arrival plus one TTL): a node whose
	// report reaches the leader is up and connected, whatever became of
	// its heartbeat (reportAlive). Kept apart from deadlines so that the
	// heartbeats' lateness is still measured against heartbeats alone.
	reported map[string]time.Time
	// resume is the new term's grace for the nodes it has not heard from
	// yet, stretched while others are still coming back (resumeGrace).
	resume resumeGrace
	// armed is when the liveness loop (Run) next looks at the deadlines;
	// wake tells it that a deadline earlier than that was set.
	armed     time.Time
	wake      chan struct{}
	expiries  int            // passes of expire, for tests
	late      lateness       // how late live nodes' heartbeats come now (beat)
	ttlNow    time.Duration  // the cluster's TTL at the last heartbeat (lateness half-life)
	sessions  *sessions      // task dispatch for the current term (sessions.go)
	endpoints *endpointTable // routing-mesh table for the current term (endpoints.go)
	logs      *logBroker     // log subscriptions for the current term (logbroker.go)
	volumes   volumeRequests // volume removals waiting for the nodes (volumes.go)

	descBudgets   map[string]*descBudget // node ID -> description writes left (takeDescWrite)
	descConfirmed map[string]uint64      // node ID -> node version at which its description was confirmed (descriptionCurrent)
	addrWarned    map[string]string      // node ID -> last foreign address claim logged
}

func (d *Dispatcher) base() time.Duration {
	if d.Period <= 0 {
		return DefaultHeartbeatPeriod
	}
	return d.Period
}

// period is the heartbeat interval handed to agents for a cluster of n nodes.
func (d *Dispatcher) period(n int) time.Duration {
	p := d.base()
	if scaled := time.Duration(n) * time.Second / MaxHeartbeatRate; scaled > p {
		p = scaled
	}
	return p
}

func (d *Dispatcher) ttl(n int) time.Duration { return HeartbeatTTL(d.period(n)) }

// term returns the running term's task sessions and log broker, nils on a
// follower.
func (d *Dispatcher) term() (*sessions, *logBroker) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.active {
		return nil, nil
	}
	return d.sessions, d.logs
}

func (d *Dispatcher) notLeader(ctx context.Context) error {
	if _, addr := d.Raft.Leader(); addr != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderAddrKey, addr))
	}
	return status.Error(codes.FailedPrecondition, "this manager is not the leader")
}

// leaderWait bounds how long a manager holds a heartbeat while no leader
// is known or its own term has not started (awaitLeader).
const leaderWait = 2 * time.Second

// leadershipNotifier is the part of the Raft node that signals changes
// of the known leader (raft.Node.Leadership) and tells a follower that its
// leader has gone quiet (raft.Node.LeaderSilent).
type leadershipNotifier interface {
	Leadership() (bool, <-chan struct{})
	LeaderSilent() bool
}

// awaitLeader holds a heartbeat, a task session or a status report that
// reached a manager without an active dispatcher while an election is
// under way: no leader is known, the one known has gone silent (dead, most
// likely: naming it would send the node back to it), or this manager was
// just elected and its term has not started. It returns once a leader is
// known elsewhere or this dispatcher is active, at leaderWait, or halfway
// to the call's deadline, whichever comes first; the caller then answers
// as before (the leader's address as a hint).
//
// Without it every node retried with growing backoff through the election
// and found the new leader up to a backoff later (1.6 s at 1,000 nodes,
// when the election itself took 1.3 s; 3 s and more for the workers'
// status reports, whose backoff grows to 5 s), each retry another call,
// and after a leader's death that was every node of the cluster.
func (d *Dispatcher) awaitLeader(ctx context.Context) {
	ln, ok := d.Raft.(leadershipNotifier)
	if !ok {
		return
	}
	until := time.Now().Add(leaderWait)
	if dl, ok := ctx.Deadline(); ok {
		if half := time.Now().Add(time.Until(dl) / 2); half.Before(until) {
			until = half
		}
	}
	for {
		_, changed := ln.Leadership()
		_, addr := d.Raft.Leader()
		d.mu.Lock()
		active := d.active
		d.mu.Unlock()
		if active || (addr != "" && !d.Raft.IsLeader() && !ln.LeaderSilent()) {
			return
		}
		left := time.Until(until)
		if left <= 0 {
			return
		}
		// The dispatcher's start is not signalled: look again every 50 ms
		// (a parked call costs a timer and a few lock takes per look).
		if !retry.SleepOrWake(ctx, min(left, 50*time.Millisecond), changed) {
			return
		}
	}
}

// Heartbeat records that the calling node is alive and tells it when to
// call again, which managers exist and which role it should have.
//
// What a node reports is a claim: a description out of the bounds of
// package spec is refused (InvalidArgument, nothing written); the node's
// address is never taken from the request (it was recorded from the
// connection at join, see nodeAddr); and a changed description is written
// at most descWriteBurst times in a row, then once per descWriteEvery, so a
// node cannot turn its heartbeats into a stream of Raft writes. Status
// changes (Ready) are written at once.
func (d *Dispatcher) Heartbeat(ctx context.Context, req *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if err := spec.ValidateNodeDescription(req.Description); err != nil {
		return nil, Status(invalidf("heartbeat of node %s refused: %v", id.NodeID, err))
	}
	d.mu.Lock()
	active := d.active
	d.mu.Unlock()
	if !active {
		d.awaitLeader(ctx)
		return nil, d.notLeader(ctx)
	}
	var node *swarmpb.Node
	var count int
	d.Store.View(func(tx state.ReadTx) {
		node = tx.GetNode(id.NodeID)
		count = tx.NodeCount()
	})
	if node == nil {
		d.mu.Lock()
		delete(d.descBudgets, id.NodeID)
		delete(d.descConfirmed, id.NodeID)
		delete(d.addrWarned, id.NodeID)
		d.mu.Unlock()
		return &swarmpb.HeartbeatResponse{Removed: true}, nil
	}
	now := time.Now()
	d.beat(id.NodeID, now, d.ttl(count), d.period(count))

	d.checkClaimedAddr(ctx, node, req.Addr)
	statusChanged := node.Status != swarmpb.NodeStatus_NODE_STATUS_READY
	descChanged := req.Description != nil && !proto.Equal(node.Description, req.Description)
	writeDesc := descChanged && d.takeDescWrite(id.NodeID, now, statusChanged)
	if statusChanged || writeDesc {
		err := updateNode(ctx, d.Store, d.Raft, id.NodeID, func(n *swarmpb.Node) bool {
			changed := false
			if n.Status != swarmpb.NodeStatus_NODE_STATUS_READY {
				n.Status = swarmpb.NodeStatus_NODE_STATUS_READY
				n.StatusMessage = ""
				n.LastHeartbeat = now.UnixNano()
				changed = true
			}
			if writeDesc && !proto.Equal(n.Description, req.Description) {
				n.Description = req.Description
				changed = true
			}
			return changed
		})
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			return nil, Status(err)
		}
	}
	return &swarmpb.HeartbeatResponse{
		PeriodNs:    int64(d.period(count)),
		Managers:    managerAddrs(d.Raft),
		DesiredRole: node.GetSpec().GetDesiredRole(),
		Role:        node.Role,
		// The agent leaves its description out while the stored one is
		// current; a change refused above, or a node written since, has
		// it sent again.
		DescriptionCurrent: d.descriptionCurrent(node, req.Description != nil, descChanged),
	}, nil
}

// descriptionCurrent reports whether the node may leave its description
// out of its next heartbeats. A description sent equal to the stored one
// is confirmed at the node's current version (Meta.Version: the index of
// its last write). One left out is current only while the node has not
// been written since that confirmation: any write (a status change, a
// label, a description forged with the node's certificate, even ours)
// has the agent send it again, and a new leader, which has confirmed
// nothing, asks once. A changed description, written or refused, is not
// confirmed: the agent resends it and the next heartbeat confirms it.
func (d *Dispatcher) descriptionCurrent(node *swarmpb.Node, sent, changed bool) bool {
	v := node.GetMeta().GetVersion()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.descConfirmed == nil {
		d.descConfirmed = make(map[string]uint64)
	}
	if !sent {
		cv, ok := d.descConfirmed[node.Id]
		return ok && cv == v && node.Description != nil
	}
	if changed {
		delete(d.descConfirmed, node.Id)
		return false
	}
	d.descConfirmed[node.Id] = v
	return true
}

// Description write rate per node: a burst of descWriteBurst writes, then
// one per descWriteEvery. A refused change is not lost: the response says
// the description is not current, so the agent sends its latest one with
// every heartbeat until it is written, once the node's budget allows.
const (
	descWriteBurst = 3
	descWriteEvery = 2 * time.Second
)

// descBudget is a token bucket of description writes for one node.
type descBudget struct {
	tokens float64
	at     time.Time
}

// takeDescWrite reports whether a description change of node may be
// written now, and spends the write. With force (the write happens anyway,
// for a status change) it spends a write if one is left and says yes.
func (d *Dispatcher) takeDescWrite(node string, now time.Time, force bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.descBudgets == nil {
		d.descBudgets = make(map[string]*descBudget)
	}
	b := d.descBudgets[node]
	if b == nil {
		b = &descBudget{tokens: descWriteBurst, at: now}
		d.descBudgets[node] = b
	}
	b.tokens = min(descWriteBurst, b.tokens+now.Sub(b.at).Seconds()/descWriteEvery.Seconds())
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return force
}

// checkClaimedAddr logs a heartbeat that claims an address other than the
// one recorded for the node. The claim is never stored: a worker's address
// comes from its connection at join, and a manager's from its Raft join.
// An advertised name (not an IP) is not compared.
func (d *Dispatcher) checkClaimedAddr(ctx context.Context, node *swarmpb.Node, claimed string) {
	ip := hostIP(claimed)
	if ip == nil || ip.Equal(hostIP(node.Addr)) || d.Logger == nil {
		return
	}
	d.mu.Lock()
	if d.addrWarned == nil {
		d.addrWarned = make(map[string]string)
	}
	seen := d.addrWarned[node.Id] == claimed
	d.addrWarned[node.Id] = claimed
	d.mu.Unlock()
	if !seen {
		from, _ := peerIP(ctx)
		d.Logger.Warn("ignoring the address a node claims in its heartbeat; keeping the one recorded at join",
			"node", node.Id, "claimed", clip(claimed), "recorded", node.Addr, "peer", from)
	}
}

// Run makes the dispatcher active for one leadership term and marks nodes
// Down when their heartbeats stop. Every known node starts with a grace
// period, since the new leader has not heard from anyone yet.
func (d *Dispatcher) Run(ctx context.Context) error {
	var nodes []*swarmpb.Node
	d.Store.View(func(tx state.ReadTx) { nodes = tx.ListNodes() })
	grace := d.Grace
	if grace <= 0 {
		grace = d.ttl(len(nodes))
	}
	ttl := d.ttl(len(nodes))
	began := time.Now()
	start := began.Add(ttl + grace)
	tasks := d.startSessions(ctx)
	table := d.startEndpoints(ctx)
	logs := newLogBroker(tasks.ctx, d.termEnded, tasks)
	d.mu.Lock()
	d.deadlines = make(map[string]time.Time, len(nodes))
	d.reported = make(map[string]time.Time, len(nodes))
	wake := make(chan struct{}, 1)
	d.wake = wake
	d.armed = time.Time{}
	d.descBudgets = make(map[string]*descBudget, len(nodes))
	d.descConfirmed = make(map[string]uint64, len(nodes))
	d.addrWarned = make(map[string]string)
	d.resume = resumeGrace{unheard: make(map[string]struct{}, len(nodes)), ttl: ttl,
		base: start, limit: began.Add(resumeTTLs * ttl)}
	for _, n := range nodes {
		d.deadlines[n.Id] = start
		if n.Status != swarmpb.NodeStatus_NODE_STATUS_DOWN {
			d.resume.unheard[n.Id] = struct{}{}
		}
	}
	d.resume.total = len(d.resume.unheard)
	// Status reports keep a node alive for one TTL (reportAlive) from the
	// term's first moment, before any heartbeat has set the TTL.
	d.ttlNow = ttl
	d.late = lateness{}
	d.active = true
	d.sessions = tasks
	d.endpoints = table
	d.logs = logs
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.active = false
		d.sessions = nil
		d.endpoints = nil
		d.logs = nil
		d.mu.Unlock()
		tasks.stop()
		table.stop()
	}()

	// The loop sleeps until the earliest deadline instead of polling:
	// with nodes heartbeating, deadlines keep moving later and an idle
	// leader wakes up about once per heartbeat period, not four times a
	// second. Two passes are at least minPass apart (a quarter period, at
	// most 250 ms, what the old fixed tick was), which bounds the rate of
	// retries after a failed write and how late a silent node found just
	// after another may be marked Down.
	minPass := min(d.base()/4, 250*time.Millisecond)
	// (Go 1.23+ timers: Reset needs no drained channel.)
	timer := time.NewTimer(idleWait)
	defer timer.Stop()
	var last time.Time
	for {
		timer.Reset(time.Until(d.arm(last.Add(minPass))))
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			continue
		case <-timer.C:
		}
		last = time.Now()
		d.noteStall(last)
		d.expire(ctx)
	}
}

// idleWait is how long the liveness loop sleeps when no node has a
// deadline; a new deadline wakes it anyway.
const idleWait = time.Minute

// arm returns when the liveness loop should next run expire: the earliest
// deadline, but not before notBefore, and records it so setDeadline knows
// when to wake the loop early.
func (d *Dispatcher) arm(notBefore time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	next := now.Add(idleWait)
	for id := range d.deadlines {
		if dl := d.dueLocked(id); dl.Before(next) {
			next = dl
		}
	}
	// expire takes a node whose deadline, plus the allowance for the
	// heartbeats' current lateness, is strictly before its now.
	next = next.Add(d.allowanceLocked(now) + time.Millisecond)
	if next.Before(notBefore) {
		next = notBefore
	}
	d.armed = next
	return next
}

// setDeadlineLocked records a node's heartbeat deadline, waking the
// liveness loop if it falls before the loop's next pass (a new node, or a
// TTL that shrank with the cluster). d.mu is held.
func (d *Dispatcher) setDeadlineLocked(node string, dl time.Time) {
	d.deadlines[node] = dl
	if d.wake != nil && dl.Before(d.armed) {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// beat records a heartbeat of node at now: its next deadline (now + ttl),
// and how late it came, against the period the node was given (period),
// for the lateness allowance. A node whose deadline is the grace of a new
// term, or that is new, is not late.
func (d *Dispatcher) beat(node string, now time.Time, ttl, period time.Duration) {
	d.mu.Lock()
	if prev, ok := d.deadlines[node]; ok {
		// The node was due at prev - (ttl - period): one period after
		// its last heartbeat.
		if late := now.Sub(prev.Add(period - ttl)); late > 0 {
			d.late.note(now, late, ttl)
		}
	}
	d.ttlNow = ttl
	// The new deadline first, under the same lock: heardLocked may wake
	// the liveness loop (half of the nodes back), and a pass between the
	// two would find this node heard, no longer held by the new term's
	// wait, and still at its old deadline, and mark it Down as it
	// heartbeats.
	d.setDeadlineLocked(node, now.Add(ttl))
	d.heardLocked(node, now)
	d.mu.Unlock()
}

// heardLocked records a sign of life of node for the new term's grace,
// and wakes the liveness loop when that brings the silent nodes' time
// forward (half of the nodes are back). d.mu is held.
func (d *Dispatcher) heardLocked(node string, now time.Time) {
	if d.resume.heard(node, now) && d.wake != nil {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// dueLocked is when node id is next due: its heartbeat deadline, or
// later if a task status report of it arrived since (reportAlive). d.mu
// is held.
func (d *Dispatcher) dueLocked(id string) time.Time {
	dl := d.deadlines[id]
	if r := d.resume.due(id); r.After(dl) {
		dl = r
	}
	if r := d.reported[id]; r.After(dl) {
		return r
	}
	return dl
}

// reportAlive takes a task status report of node, which arrived at now,
// as proof that the node is up: the node is not marked Down before one
// TTL after it. Under load (1,000 nodes' agents sharing a starved host in
// the scale benchmark) heartbeat calls timed out on the agents' side
// while their status reports, far more frequent, kept reaching the
// leader, and live nodes were marked Down and their tasks replaced. A
// node already marked Down stays so until it heartbeats: a report does
// not bring it back, as a heartbeat also tells it its role and period.
func (d *Dispatcher) reportAlive(node string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, tracked := d.deadlines[node]; !tracked || d.ttlNow <= 0 {
		return
	}
	if until := now.Add(d.ttlNow); until.After(d.reported[node]) {
		d.reported[node] = until
	}
	d.heardLocked(node, now)
}

// resumeGrace is how long a new leader waits for the nodes it has not
// heard from yet. Every node known at the start of a term is given one
// TTL plus the grace (Dispatcher.Grace, one TTL by default) to heartbeat
// the new leader. When the term starts, though, all of them reconnect at
// once, and with 1,000 nodes on a loaded host their TLS handshakes,
// sessions and first heartbeats took far longer than that: the new leader
// marked live nodes Down and made their tasks again (BENCHMARKS.md §14:
// +450 to +61,296 tasks after a change of leader under load). So:
//
//   - while nodes are still coming back, the wait goes on: a node not
//     heard from yet is due no earlier than one TTL after the last node
//     that was first heard from;
//   - while fewer than half of the nodes that were up are back, none of
//     the others is marked Down: most of a cluster's nodes failing in the
//     same seconds as its leader is far less likely than the new leader
//     being the one they cannot reach yet (a leader elected on a saturated
//     host heard from 52 of 1,000 nodes in 35 s and marked the other 948
//     Down). Kubernetes' node lifecycle controller stops evicting when a
//     whole zone goes silent for the same reason, and Nomad gives every
//     node five minutes after a leader change;
//   - neither wait goes past limit, resumeTTLs TTLs into the term.
//
// A node that does not come back is still marked Down: one TTL after the
// reconnections stop, once half are back, or at limit. With nodes that all
// reconnect at once, as on a healthy cluster, nothing changes. Guarded by
// the dispatcher's mu.
type resumeGrace struct {
	unheard map[string]struct{} // nodes up at the term's start not heard from since
	total   int                 // nodes up at the term's start
	last    time.Time           // when the last other node was first heard from
	ttl     time.Duration       // the TTL at the term's start
	limit   time.Time           // the latest the wait may stretch to
	base    time.Time           // the end of the grace every node gets
	told    bool                // the hold for fewer than half was logged
}

// resumeTTLs is how many TTLs into a term a new leader may wait for the
// nodes still reconnecting to it: 40 s with the default 2 s heartbeat
// period, 70 s at 1,000 nodes.
const resumeTTLs = 10

// heard records that node was heard from (a heartbeat, a status report,
// a session) at now, and reports whether that made half of the nodes
// back, which may bring the silent nodes' time forward.
func (g *resumeGrace) heard(node string, now time.Time) bool {
	if _, ok := g.unheard[node]; !ok {
		return false
	}
	few := g.few()
	delete(g.unheard, node)
	if now.After(g.last) {
		g.last = now
	}
	return few && !g.few()
}

// few reports whether fewer than half of the nodes up at the term's
// start have been heard from.
func (g *resumeGrace) few() bool {
	return 2*(g.total-len(g.unheard)) < g.total
}

// due is the earliest a node not heard from yet may be marked Down for
// its silence, or the zero time for a node heard from (its deadlines
// apply).
func (g *resumeGrace) due(node string) time.Time {
	if _, ok := g.unheard[node]; !ok {
		return time.Time{}
	}
	if g.few() {
		return g.limit
	}
	if g.last.IsZero() {
		return time.Time{}
	}
	if due := g.last.Add(g.ttl); due.Before(g.limit) {
		return due
	}
	return g.limit
}

// noteStall counts the liveness loop's own lateness, when it woke (now)
// later than it was armed for, as heartbeat lateness: a leader stalled
// that long (CPU, GC, a blocked process) took in no heartbeat either.
func (d *Dispatcher) noteStall(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if stall := now.Sub(d.armed); !d.armed.IsZero() && stall > stallNoticed {
		d.late.note(now, stall, d.ttlNow)
	}
}

// stallNoticed is how late the liveness loop may wake before its
// lateness counts as a stall of the leader.
const stallNoticed = 100 * time.Millisecond

// allowanceLocked is how long past its deadline a silent node is still
// not marked Down: twice the current lateness of the heartbeats that do
// arrive, at most one TTL. With heartbeats on time (an idle or healthy
// cluster) it is 0 and a dead node is marked Down one TTL after its last
// heartbeat as before; under load it is found within two TTLs at most.
// d.mu is held.
func (d *Dispatcher) allowanceLocked(now time.Time) time.Duration {
	if d.ttlNow <= 0 {
		return 0
	}
	return min(2*d.late.value(now, d.ttlNow), d.ttlNow)
}

// lateness is a decaying maximum of how late heartbeats arrive: it
// takes the largest lateness seen and halves every half-life after it.
// A heartbeat that arrives late proves that a live node's heartbeats take
// that long now; a dead node sends none, so its silence never feeds it.
type lateness struct {
	v    time.Duration
	when time.Time
}

func (l *lateness) value(now time.Time, halfLife time.Duration) time.Duration {
	if l.v <= 0 || halfLife <= 0 {
		return 0
	}
	age := now.Sub(l.when)
	if age <= 0 {
		return l.v
	}
	return time.Duration(float64(l.v) * math.Exp2(-float64(age)/float64(halfLife)))
}

func (l *lateness) note(now time.Time, late, halfLife time.Duration) {
	if cur := l.value(now, halfLife); late < cur {
		late = cur
	}
	l.v, l.when = late, now
}

// expire marks the nodes whose deadline passed Down, in one batch.
func (d *Dispatcher) expire(ctx context.Context) {
	now := time.Now()
	var expired []string
	d.mu.Lock()
	d.expiries++
	// A node is judged against the heartbeats the leader receives now,
	// not against an idle cluster: while live nodes' heartbeats come late
	// (a loaded leader or host), a silent node gets as much again.
	cutoff := now.Add(-d.allowanceLocked(now))
	for id := range d.deadlines {
		if cutoff.After(d.dueLocked(id)) {
			expired = append(expired, id)
		}
	}
	g := &d.resume
	holding := g.few() && now.After(g.base) && !g.told
	if holding {
		g.told = true
	}
	heard, total, until := g.total-len(g.unheard), g.total, g.limit
	d.mu.Unlock()
	if holding && d.Logger != nil {
		d.Logger.Warn("new leader has heard from fewer than half of the nodes; marking none of the others Down yet, as this leader is the likelier one cut off",
			"heard", heard, "nodes", total, "until", until.Format(time.RFC3339))
	}
	if len(expired) == 0 {
		return
	}
	var actions []*swarmpb.StoreAction
	d.Store.View(func(tx state.ReadTx) {
		for _, id := range expired {
			n := tx.GetNode(id)
			if n == nil || n.Status == swarmpb.NodeStatus_NODE_STATUS_DOWN {
				continue
			}
			c := proto.Clone(n).(*swarmpb.Node)
			c.Status = swarmpb.NodeStatus_NODE_STATUS_DOWN
			c.StatusMessage = "heartbeat failure"
			actions = append(actions, state.Update(c))
		}
	})
	d.mu.Lock()
	for _, id := range expired {
		if _, ok := d.deadlines[id]; ok && cutoff.After(d.dueLocked(id)) {
			delete(d.deadlines, id)
			delete(d.reported, id)
			// Should it come back now, it is not one of the
			// reconnections the others' grace waits for.
			if _, ok := d.resume.unheard[id]; ok {
				delete(d.resume.unheard, id)
				d.resume.total--
			}
		}
	}
	d.mu.Unlock()
	// A heartbeat may have arrived while the batch was built: drop the
	// nodes it revived rather than mark a live node Down.
	d.mu.Lock()
	kept := actions[:0]
	for _, a := range actions {
		if _, ok := d.deadlines[a.GetNode().Id]; ok && !cutoff.After(d.dueLocked(a.GetNode().Id)) {
			continue
		}
		kept = append(kept, a)
	}
	actions = kept
	d.mu.Unlock()
	if len(actions) == 0 {
		return
	}
	if d.Logger != nil {
		d.Logger.Warn("marking nodes down: no heartbeat before their deadline", "nodes", len(actions),
			"first", actions[0].GetNode().Id, "allowance", now.Sub(cutoff))
	}
	if _, err := d.Raft.Apply(ctx, state.Batch(actions...)); err != nil {
		// A heartbeat raced with us; the nodes that are still silent are
		// picked up again on the next tick.
		d.mu.Lock()
		for _, id := range expired {
			if _, ok := d.deadlines[id]; !ok {
				d.deadlines[id] = now
			}
		}
		d.mu.Unlock()
		if d.Logger != nil {
			d.Logger.Warn("marking nodes down failed; retrying", "err", err)
		}
	}
}
