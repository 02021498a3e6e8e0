package api

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftswarm/raftswarm/internal/clock"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Task dispatch tuning.
const (
	// sessionBatch bounds the entries (changed tasks plus removed IDs) of one
	// KIND_UPDATE message; a bigger backlog goes out in several messages.
	sessionBatch = 1000
	// statusBatchMax and statusBatchWait bound how many task status updates
	// are gathered into one Raft write, and for how long.
	statusBatchMax  = state.MaxBatchActions
	statusBatchWait = 20 * time.Millisecond
	// statusConflictRetries bounds the re-reads after a write conflict.
	statusConflictRetries = 5
	// watchDrain bounds how many store events the fan-out takes in before
	// waking the sessions it touched.
	watchDrain = 4096
)

// dispatched reports whether a task belongs to its node's task set: the
// scheduler assigned it (including tasks being shut down or finished).
func dispatched(t *swarmpb.Task) bool {
	return t != nil && t.GetNodeId() != "" && t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_ASSIGNED
}

// sessions is the task-dispatch half of the dispatcher for one leadership
// term: one store watch fanned out to the open sessions by node, and one
// goroutine that batches the agents' task status updates into Raft writes.
type sessions struct {
	d      *Dispatcher
	ctx    context.Context // the term; cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	updates chan *statusRequest

	// What the term's first sessions cost (resumeReport): sessions
	// opened, those resumed from the tasks the agent holds, and the
	// tasks and removed IDs their first messages carried.
	opened, resumed, firstTasks, firstRemoved atomic.Int64

	// mu is the fan-out lock: a session registers and takes its snapshot
	// under it, and every event is routed under it, so a session sees each
	// change exactly once.
	mu      sync.Mutex
	byNode  map[string]map[*session]struct{}
	events  <-chan state.Event
	unwatch func()
}

// session is one agent's open Session stream.
type session struct {
	nodeID    string
	snapIndex uint64        // the snapshot's store index: older events are in it
	notify    chan struct{} // capacity 1: pending is non-empty
	reset     chan struct{} // closed when the session must start over

	mu      sync.Mutex
	pending map[string]*swarmpb.Task  // task ID -> latest version; nil = removed
	oob     []*swarmpb.SessionMessage // out-of-band messages (log subscriptions), sent first
}

type statusRequest struct {
	nodeID  string
	updates []*swarmpb.TaskStatusUpdate
	done    chan error // capacity 1
}

// startSessions starts the task-dispatch goroutines for a term. The store
// watch is registered before it returns, so every session registered later
// (its snapshot taken after) is covered by it.
func (d *Dispatcher) startSessions(ctx context.Context) *sessions {
	ctx, cancel := context.WithCancel(ctx)
	s := &sessions{
		d:       d,
		ctx:     ctx,
		cancel:  cancel,
		updates: make(chan *statusRequest, 256),
		byNode:  make(map[string]map[*session]struct{}),
	}
	s.events, s.unwatch = d.Store.Watch()
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.fanOut() }()
	go func() { defer s.wg.Done(); s.writeStatuses() }()
	go func() { defer s.wg.Done(); s.resumeReport(resumeReportAfter) }()
	return s
}

// resumeReportAfter is when into a term resumeReport logs what the
// sessions opened so far cost: after a leader change, the agents'
// resume.
const resumeReportAfter = 10 * time.Second

// resumeReport logs, once, after the term's first while, how many
// sessions were opened and resumed and what their first messages carried:
// how much a new leader resent (the full set of every node, or only the
// differences from what the agents hold).
func (s *sessions) resumeReport(after time.Duration) {
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return
	case <-t.C:
	}
	if s.d.Logger != nil && s.opened.Load() > 0 {
		s.d.Logger.Info("task sessions of the term's first seconds", "after", after,
			"opened", s.opened.Load(), "resumed", s.resumed.Load(),
			"tasks_sent_first", s.firstTasks.Load(), "removed_first", s.firstRemoved.Load())
	}
}

// stop ends the term's task dispatch: open sessions return Unavailable and
// pending status updates fail, so agents move to the next leader.
func (s *sessions) stop() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	s.unwatch()
	s.byNode = make(map[string]map[*session]struct{})
	s.mu.Unlock()
}

// termEnded is what a session or status update gets when the term ends
// under it: Unavailable, naming the new leader when known.
func (d *Dispatcher) termEnded(ctx context.Context) error {
	if _, addr := d.Raft.Leader(); addr != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderAddrKey, addr))
	}
	return status.Error(codes.Unavailable, "the manager's leadership term ended; reconnect to the leader")
}

// register opens a session for nodeID and returns its full task set.
func (s *sessions) register(nodeID string) (*session, []*swarmpb.Task) {
	sess := &session{
		nodeID:  nodeID,
		notify:  make(chan struct{}, 1),
		reset:   make(chan struct{}),
		pending: make(map[string]*swarmpb.Task),
	}
	var full []*swarmpb.Task
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d.Store.View(func(tx state.ReadTx) {
		sess.snapIndex = tx.Index()
		for _, t := range tx.TasksByNode(nodeID) {
			if dispatched(t) {
				full = append(full, t)
			}
		}
	})
	set := s.byNode[nodeID]
	if set == nil {
		set = make(map[*session]struct{})
		s.byNode[nodeID] = set
	}
	set[sess] = struct{}{}
	return sess, full
}

func (s *sessions) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set := s.byNode[sess.nodeID]; set != nil {
		delete(set, sess)
		if len(set) == 0 {
			delete(s.byNode, sess.nodeID)
		}
	}
}

// fanOut routes the term's store events to the sessions of the nodes they
// concern.
func (s *sessions) fanOut() {
	batch := make([]state.Event, 0, 64)
	touched := make(map[*session]struct{})
	for {
		var ev state.Event
		var ok bool
		select {
		case <-s.ctx.Done():
			return
		case ev, ok = <-s.events:
		}
		if !ok {
			s.rewatch()
			continue
		}
		batch = append(batch[:0], ev)
	drain:
		for len(batch) < watchDrain {
			select {
			case ev, ok = <-s.events:
				if !ok {
					break drain // the next receive sees the close
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		s.mu.Lock()
		for _, ev := range batch {
			s.route(ev, touched)
		}
		s.mu.Unlock()
		for sess := range touched {
			select {
			case sess.notify <- struct{}{}:
			default:
			}
			delete(touched, sess)
		}
		clear(batch) // let delivered objects be collected
	}
}

// route queues one event for the sessions it concerns; s.mu is held.
func (s *sessions) route(ev state.Event, touched map[*session]struct{}) {
	t := ev.Task()
	if t == nil {
		return
	}
	var old *swarmpb.Task
	switch ev.Kind {
	case state.EventUpdate:
		old, _ = ev.Old.(*swarmpb.Task)
	case state.EventDelete:
		old, t = t, nil
	}
	// The new version goes to its node if it belongs there; a node that
	// had the old version and no longer has it sees it removed.
	if dispatched(t) {
		s.queue(t.GetNodeId(), ev.Index, t.GetId(), t, touched)
	}
	if dispatched(old) && (!dispatched(t) || t.GetNodeId() != old.GetNodeId()) {
		s.queue(old.GetNodeId(), ev.Index, old.GetId(), nil, touched)
	}
}

func (s *sessions) queue(nodeID string, index uint64, id string, t *swarmpb.Task, touched map[*session]struct{}) {
	for sess := range s.byNode[nodeID] {
		if index <= sess.snapIndex {
			continue // already in the session's snapshot
		}
		sess.mu.Lock()
		sess.pending[id] = t
		sess.mu.Unlock()
		touched[sess] = struct{}{}
	}
}

// rewatch replaces a watch the store closed (a Restore replaced the whole
// state): every open session starts over with a new full set.
func (s *sessions) rewatch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unwatch()
	s.events, s.unwatch = s.d.Store.Watch()
	for nodeID, set := range s.byNode {
		for sess := range set {
			close(sess.reset)
		}
		delete(s.byNode, nodeID)
	}
}

// take returns the session's queued changes, at most max entries.
func (sess *session) take(max int) (changed []*swarmpb.Task, removed []string, more bool) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for id, t := range sess.pending {
		if len(changed)+len(removed) >= max {
			return changed, removed, true
		}
		if t == nil {
			removed = append(removed, id)
		} else {
			changed = append(changed, t)
		}
		delete(sess.pending, id)
	}
	return changed, removed, false
}

// Session streams the calling node's tasks: the full set, then changes.
func (d *Dispatcher) Session(req *swarmpb.SessionRequest, stream swarmpb.Dispatcher_SessionServer) error {
	ctx := stream.Context()
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return err
	}
	s, _ := d.term()
	if s == nil {
		d.awaitLeader(ctx) // during an election: answer with the new leader
		return d.notLeader(ctx)
	}
	// A node that opens its session is up, whether or not its
	// heartbeats get through (reportAlive).
	d.reportAlive(id.NodeID, time.Now())
	sess, full := s.register(id.NodeID)
	defer s.unregister(sess)

	managers := managerAddrs(d.Raft)
	sent := newSentData() // sessions_data.go
	secrets, configs := d.payloads(sent, full)
	first := &swarmpb.SessionMessage{
		Kind:         swarmpb.SessionMessage_KIND_FULL,
		Tasks:        full,
		Managers:     managers,
		Secrets:      secrets,
		Configs:      configs,
		ImageSources: d.imageSources(id.NodeID, full), // images.go
	}
	resumeSession(first, req.GetKnownTasks())
	s.opened.Add(1)
	if first.Resumed {
		s.resumed.Add(1)
	}
	s.firstTasks.Add(int64(len(first.Tasks)))
	s.firstRemoved.Add(int64(len(first.RemovedTaskIds)))
	if err := stream.Send(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.ctx.Done():
			return d.termEnded(ctx)
		case <-sess.reset:
			return status.Error(codes.Unavailable, "the manager's state was replaced; reconnect for a new task set")
		case <-sess.notify:
		}
		for _, m := range sess.takeOOB() {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		managers = managerAddrs(d.Raft)
		for more := true; more; {
			var changed []*swarmpb.Task
			var removed []string
			changed, removed, more = sess.take(sessionBatch)
			if len(changed) == 0 && len(removed) == 0 {
				break
			}
			secrets, configs := d.payloads(sent, changed)
			if err := stream.Send(&swarmpb.SessionMessage{
				Kind:           swarmpb.SessionMessage_KIND_UPDATE,
				Tasks:          changed,
				RemovedTaskIds: removed,
				Managers:       managers,
				Secrets:        secrets,
				Configs:        configs,
				ImageSources:   d.imageSources(sess.nodeID, changed),
			}); err != nil {
				return err
			}
		}
	}
}

// maxKnownTasks bounds the known tasks a session request may claim; a
// longer list is ignored (the full set is sent).
const maxKnownTasks = 1_000_000

// resumeSession turns msg, a full task set, into the difference from the
// tasks the agent says it holds (ID and version; versions are Raft indexes,
// the same on every manager): tasks it holds at their current version are
// left out, and those it holds that left the set are listed as removed.
// A new leader thus sends each agent only what changed, not its every
// task. The agent's list is a claim: a false one only costs the agent its
// own tasks, never another node's, and it is bounded.
func resumeSession(msg *swarmpb.SessionMessage, known []*swarmpb.SessionKnownTask) {
	if len(known) == 0 || len(known) > maxKnownTasks {
		return
	}
	have := make(map[string]uint64, len(known))
	for _, k := range known {
		have[k.GetId()] = k.GetVersion()
	}
	changed := make([]*swarmpb.Task, 0, len(msg.Tasks))
	for _, t := range msg.Tasks {
		if v, ok := have[t.GetId()]; ok {
			delete(have, t.GetId())
			if v == t.GetMeta().GetVersion() {
				continue
			}
		}
		changed = append(changed, t)
	}
	removed := make([]string, 0, len(have))
	for id := range have {
		removed = append(removed, id)
	}
	slices.Sort(removed)
	msg.Tasks, msg.RemovedTaskIds, msg.Resumed = changed, removed, true
}

// UpdateTaskStatus records the statuses an agent observed for its tasks.
// It returns once they are committed, or dropped (deleted tasks, states
// that would move backwards).
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *swarmpb.UpdateTaskStatusRequest) (*swarmpb.UpdateTaskStatusResponse, error) {
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	s, _ := d.term()
	if s == nil {
		// During an election, hold the report until the new leader is
		// known (awaitLeader): refused at once, the worker's retries back
		// off (100 ms doubling to 5 s) through the election and land
		// seconds after it.
		d.awaitLeader(ctx)
		return nil, d.notLeader(ctx)
	}
	for _, u := range req.GetUpdates() {
		if u.GetTaskId() == "" || u.GetStatus() == nil {
			return nil, Status(invalidf("a task status update needs a task ID and a status"))
		}
	}
	// The node's identity is its certificate's: whatever the report
	// holds, it came from that node now.
	d.reportAlive(id.NodeID, time.Now())
	var denied error
	var updates []*swarmpb.TaskStatusUpdate
	d.Store.View(func(tx state.ReadTx) {
		nodeIP := hostIP(tx.GetNode(id.NodeID).GetAddr())
		updates = make([]*swarmpb.TaskStatusUpdate, 0, len(req.GetUpdates()))
		for _, u := range req.GetUpdates() {
			t := tx.GetTask(u.GetTaskId())
			if t != nil && t.GetNodeId() != id.NodeID {
				denied = deniedf("task %s is not assigned to node %s", u.GetTaskId(), id.NodeID)
				return
			}
			c, err := d.checkStatus(id.NodeID, t, u, nodeIP)
			if err != nil {
				denied = err
				return
			}
			updates = append(updates, c)
		}
	})
	if denied != nil {
		return nil, Status(denied)
	}
	if len(updates) == 0 {
		return &swarmpb.UpdateTaskStatusResponse{}, nil
	}
	r := &statusRequest{nodeID: id.NodeID, updates: updates, done: make(chan error, 1)}
	select {
	case s.updates <- r:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return nil, d.termEnded(ctx)
	}
	select {
	case err := <-r.done:
		if err != nil {
			return nil, Status(err)
		}
		return &swarmpb.UpdateTaskStatusResponse{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return nil, d.termEnded(ctx)
	}
}

// checkStatus bounds and checks one status a node reports for its task t
// (nil if unknown here; the update is then dropped when written) and
// returns what may be stored. A container ID out of bounds is refused;
// message and error are cut to spec.MaxTaskMessageLen; a port binding that
// is not on the node's own address (nodeIP, recorded from its connection),
// has ports out of range or is not one of the task's published ports is
// dropped with a warning, so a node can never point the routing meshes at
// an address of its choosing.
func (d *Dispatcher) checkStatus(nodeID string, t *swarmpb.Task, u *swarmpb.TaskStatusUpdate, nodeIP net.IP) (*swarmpb.TaskStatusUpdate, error) {
	st := u.GetStatus()
	if t == nil {
		return u, nil // dropped when written: the task is gone
	}
	if n := len(st.GetContainerId()); n > spec.MaxContainerIDLen {
		return nil, invalidf("task %s: container ID of %d bytes, at most %d allowed", u.GetTaskId(), n, spec.MaxContainerIDLen)
	}
	c := proto.Clone(st).(*swarmpb.TaskStatus)
	c.Message = spec.ClipText(c.Message, spec.MaxTaskMessageLen)
	c.Err = spec.ClipText(c.Err, spec.MaxTaskMessageLen)
	if len(c.Ports) > 0 {
		published := map[uint32]bool{}
		for _, p := range t.GetSpec().GetPorts() {
			published[p.GetTargetPort()] = true
		}
		kept := c.Ports[:0]
		dropped, first := 0, error(nil)
		for _, b := range c.Ports {
			err := spec.ValidatePortBinding(b, nodeIP)
			if err == nil && !published[b.GetTargetPort()] {
				err = fmt.Errorf("target port %d is not published by the task", b.GetTargetPort())
			}
			if err == nil && len(kept) >= 2*len(t.GetSpec().GetPorts()) {
				err = fmt.Errorf("more bindings than the task's published ports")
			}
			if err != nil {
				dropped++
				if first == nil {
					first = err
				}
				continue
			}
			kept = append(kept, b)
		}
		c.Ports = kept
		if dropped > 0 && d.Logger != nil {
			d.Logger.Warn("dropped port bindings a node reported for its task", "node", nodeID, "task", u.GetTaskId(),
				"dropped", dropped, "first", first)
		}
	}
	return &swarmpb.TaskStatusUpdate{TaskId: u.GetTaskId(), Status: c}, nil
}

// writeStatuses gathers status updates from every agent and writes them in
// batches, one Raft entry each.
func (s *sessions) writeStatuses() {
	var batch []*statusRequest
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		batch = batch[:0]
		select {
		case <-s.ctx.Done():
			return
		case r := <-s.updates:
			batch = append(batch, r)
		}
		n := len(batch[0].updates)
		timer.Reset(statusBatchWait)
	gather:
		for n < statusBatchMax {
			select {
			case r := <-s.updates:
				batch = append(batch, r)
				n += len(r.updates)
			case <-timer.C:
				break gather
			case <-s.ctx.Done():
				return
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		err := s.applyStatuses(batch)
		for _, r := range batch {
			r.done <- err
		}
		clear(batch)
	}
}

// applyStatuses writes one batch of updates, re-reading on conflicts.
func (s *sessions) applyStatuses(batch []*statusRequest) error {
	var err error
	for attempt := 1; attempt <= statusConflictRetries; attempt++ {
		actions := s.statusActions(batch)
		if len(actions) == 0 {
			return nil
		}
		// One entry each of at most state.BatchLen actions (the last
		// request may take a batch past statusBatchMax). A conflict in a
		// later entry redoes the whole batch from fresh state, in which
		// what the earlier entries wrote no longer advances and is dropped.
		for len(actions) > 0 {
			n := state.BatchLen(actions)
			if _, err = s.d.Raft.Apply(s.ctx, state.Batch(actions[:n]...)); err != nil {
				break
			}
			actions = actions[n:]
		}
		if !errors.Is(err, state.ErrConflict) {
			return err
		}
	}
	if s.d.Logger != nil {
		s.d.Logger.Warn("task status updates kept conflicting; the agents retry", "updates", len(batch), "err", err)
	}
	return err
}

// statusActions turns updates into task updates against the current state:
// updates for deleted tasks, for tasks no longer on the sender's node and
// that would move a task backwards are dropped, and so are repeats.
func (s *sessions) statusActions(batch []*statusRequest) []*swarmpb.StoreAction {
	now := clock.Now().UnixNano()
	// Each task's status is written alone (state.UpdateTaskStatus), not the
	// whole task: the task's spec is most of its size, and status reports
	// are most of a large service's writes.
	staged := make(map[string]*swarmpb.TaskStatusPatch)
	stored := make(map[string]*swarmpb.Task) // for managers that cannot read patches yet
	var order []string
	s.d.Store.View(func(tx state.ReadTx) {
		for _, r := range batch {
			for _, u := range r.updates {
				cur := tx.GetTask(u.GetTaskId())
				if cur == nil || cur.GetNodeId() != r.nodeID {
					continue
				}
				p, mine := staged[u.GetTaskId()]
				prev := cur.GetStatus()
				if mine {
					prev = p.Status
				}
				if !state.StatusAdvances(prev, u.GetStatus()) {
					continue
				}
				if !mine {
					p = &swarmpb.TaskStatusPatch{TaskId: cur.GetId(), Version: cur.GetMeta().GetVersion()}
					staged[cur.GetId()] = p
					stored[cur.GetId()] = cur
					order = append(order, cur.GetId())
				}
				p.Status = proto.Clone(u.GetStatus()).(*swarmpb.TaskStatus)
				// The node's clock is a claim: one ahead of the leader's
				// (a jump, a bad clock) would hold back the restart of a
				// failed task (due at its status time plus the delay) by as
				// much. The stored time is when this leader took the status.
				p.Status.Timestamp = now
			}
		}
	})
	slices.Sort(order)
	actions := make([]*swarmpb.StoreAction, 0, len(order))
	patches := s.d.statusPatchesReadable()
	for _, id := range order {
		p := staged[id]
		if !patches {
			t := proto.Clone(stored[id]).(*swarmpb.Task)
			t.Status = p.Status
			actions = append(actions, state.Update(t))
			continue
		}
		actions = append(actions, state.UpdateTaskStatus(p.TaskId, p.Version, p.Status))
	}
	return actions
}

// statusPatchesReadable reports whether every manager in the Raft
// configuration applies store batch version 2, the task status patches
// (raft.MembersRead). Until then, as in a rolling upgrade from a build
// without them, status reports are written as whole tasks, which every
// manager reads.
func (d *Dispatcher) statusPatchesReadable() bool {
	return raft.ConfigurationReads(d.Raft, d.Store, raft.BatchVersionStatusPatch)
}

// SendToNode queues an out-of-band message on every open session of
// nodeID, ahead of task changes, and reports whether there was any (false
// on a follower). msg must not be KIND_FULL unless it is a full task set.
func (d *Dispatcher) SendToNode(nodeID string, msg *swarmpb.SessionMessage) bool {
	s, _ := d.term()
	return s != nil && s.sendToNode(nodeID, msg)
}

func (s *sessions) sendToNode(nodeID string, msg *swarmpb.SessionMessage) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.byNode[nodeID] {
		sess.mu.Lock()
		sess.oob = append(sess.oob, msg)
		sess.mu.Unlock()
		select {
		case sess.notify <- struct{}{}:
		default:
		}
	}
	return len(s.byNode[nodeID]) > 0
}

func (sess *session) takeOOB() []*swarmpb.SessionMessage {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	out := sess.oob
	sess.oob = nil
	return out
}
