package api

// Log streaming, SwarmKit style: the leader holds no logs. ServiceLogs
// turns a target into per-node LogSubscriptions pushed down the agents'
// Sessions; each agent reads its containers' logs and answers with one
// PublishLogs stream per subscription, which the leader routes to the
// waiting ServiceLogs call. Subscriptions live for one leadership term,
// like the sessions that carry them.
//
// Errors that do not end the call travel as LogLines with Stream
// LogStreamError and the message in Data: a node without a session (down)
// is reported that way once at the start, as are an agent's errors and, in
// follow mode, nodes that never answer. Without follow, nodes that have not
// answered within LogAnswerTimeout end the call with DeadlineExceeded
// naming them, after every line that did arrive.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LogStreamError is the Stream of a LogLine that reports a problem getting
// logs rather than a line a task printed.
const LogStreamError = "error"

// LogAnswerTimeout is how long ServiceLogs waits for a node with a session
// to open its PublishLogs stream. A variable so tests can shorten it.
var LogAnswerTimeout = 10 * time.Second

// logRegistry holds a term's open subscriptions by ID.
type logRegistry struct {
	mu   sync.Mutex
	subs map[string]*logSub
}

// logSub is one ServiceLogs call waiting for the agents' lines.
type logSub struct {
	id     string
	tasks  map[string]map[string]bool // node ID -> the task IDs asked of it
	events chan logEvent              // to the ServiceLogs call
	done   chan struct{}              // closed when the call ends

	mu      sync.Mutex
	sent    map[string]bool // nodes whose session was given the subscription
	claimed map[string]bool // nodes whose publish stream is open or was
}

// logEvent is what one PublishLogs message means to the subscriber.
type logEvent struct {
	node   string
	lines  []*swarmpb.LogLine
	err    string // the agent's error, or why its stream broke
	closed bool   // the node will send nothing more
}

func (r *logRegistry) open(byNode map[string][]string) *logSub {
	sub := &logSub{
		id:      identity.NewID(),
		tasks:   make(map[string]map[string]bool, len(byNode)),
		events:  make(chan logEvent, 16),
		done:    make(chan struct{}),
		sent:    make(map[string]bool),
		claimed: make(map[string]bool),
	}
	for node, ids := range byNode {
		sub.tasks[node] = make(map[string]bool, len(ids))
		for _, id := range ids {
			sub.tasks[node][id] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs == nil {
		r.subs = make(map[string]*logSub)
	}
	r.subs[sub.id] = sub
	return sub
}

func (r *logRegistry) remove(sub *logSub) {
	r.mu.Lock()
	delete(r.subs, sub.id)
	r.mu.Unlock()
	close(sub.done)
}

// claim binds a publish stream from node to subscription id. A node may
// only publish to a subscription sent to it, and only once: an agent with
// two sessions (one of them stale) gets the subscription twice.
func (r *logRegistry) claim(id, node string) (*logSub, error) {
	r.mu.Lock()
	sub := r.subs[id]
	r.mu.Unlock()
	if sub == nil {
		return nil, notFoundf("log subscription %s not found: its subscriber went away", id)
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.sent[node] {
		return nil, deniedf("log subscription %s was not sent to node %s", id, node)
	}
	if sub.claimed[node] {
		return nil, refusedf("node %s already publishes to log subscription %s", node, id)
	}
	sub.claimed[node] = true
	return sub, nil
}

// sendTo pushes the subscription to node's sessions, recording it first
// so that the node's answer, which may come at once, is accepted.
func (sub *logSub) sendTo(s *sessions, node string, ls *swarmpb.LogSubscription) bool {
	sub.mu.Lock()
	sub.sent[node] = true
	sub.mu.Unlock()
	if s.sendToNode(node, subscriptionMessage(ls)) {
		return true
	}
	sub.mu.Lock()
	sub.sent[node] = false
	sub.mu.Unlock()
	return false
}

// deliver hands ev to the subscriber, waiting while it is busy sending (so
// a slow client slows the agents down instead of growing a queue).
func (sub *logSub) deliver(ctx, term context.Context, ev logEvent) error {
	select {
	case sub.events <- ev:
		return nil
	case <-sub.done:
		return status.Errorf(codes.NotFound, "log subscription %s ended: its subscriber went away", sub.id)
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-term.Done():
		return status.Error(codes.Unavailable, "the manager's leadership term ended")
	}
}

// SendToNode queues an out-of-band message on every open session of
// nodeID, ahead of task changes, and reports whether there was any (false
// on a follower). msg must not be KIND_FULL unless it is a full task set.
func (d *Dispatcher) SendToNode(nodeID string, msg *swarmpb.SessionMessage) bool {
	s := d.taskSessions()
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

// subscriptionMessage wraps a subscription for a session. KIND_UPDATE with
// no tasks leaves the agent's task set alone (KIND_FULL, the zero value,
// would empty it).
func subscriptionMessage(ls *swarmpb.LogSubscription) *swarmpb.SessionMessage {
	return &swarmpb.SessionMessage{
		Kind:             swarmpb.SessionMessage_KIND_UPDATE,
		LogSubscriptions: []*swarmpb.LogSubscription{ls},
	}
}

func errorLine(taskID, format string, args ...any) *swarmpb.LogLine {
	return &swarmpb.LogLine{TaskId: taskID, Timestamp: time.Now().UnixNano(), Stream: LogStreamError, Data: []byte(fmt.Sprintf(format, args...))}
}

// logTargets resolves a ServiceLogs target: a task ID, else a service
// (ID, prefix or name) and its tasks that reached a node. It returns the
// task IDs by node and where each task runs.
func logTargets(tx state.ReadTx, target string) (map[string][]string, map[string]*swarmpb.LogContext, error) {
	var tasks []*swarmpb.Task
	if t := tx.GetTask(target); t != nil {
		if !dispatched(t) {
			return nil, nil, refusedf("task %s has not been assigned to a node yet: it has no logs", target)
		}
		tasks = append(tasks, t)
	} else {
		svc, err := findService(tx, target)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range tx.TasksByService(svc.Id) {
			if dispatched(t) {
				tasks = append(tasks, t)
			}
		}
	}
	byNode := make(map[string][]string)
	contexts := make(map[string]*swarmpb.LogContext, len(tasks))
	for _, t := range tasks {
		name := t.GetServiceName()
		if name == "" {
			name = t.GetSpec().GetName()
		}
		nodeName := t.GetNodeId()
		if n := tx.GetNode(t.GetNodeId()); n != nil {
			nodeName = hostname(n)
		}
		byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t.GetId())
		contexts[t.GetId()] = &swarmpb.LogContext{ServiceName: name, Slot: t.GetSlot(), NodeId: t.GetNodeId(), NodeName: nodeName}
	}
	return byNode, contexts, nil
}

// ServiceLogs streams the logs of a service's tasks, or of one task, from
// the nodes that run them. It ends when no node has anything more to send
// (without follow: when every node has sent its lines), or when the client
// goes away; with follow that is usually the client.
func (s *ControlServer) ServiceLogs(req *swarmpb.ServiceLogsRequest, stream swarmpb.Control_ServiceLogsServer) error {
	ctx := stream.Context()
	if s.Dispatcher == nil {
		return Status(refusedf("this manager does not stream logs"))
	}
	if req.GetTail() < -1 {
		return Status(invalidf("invalid tail %d: use a number of lines, or -1 for all", req.GetTail()))
	}
	if err := s.read(ctx); err != nil {
		return err
	}
	var byNode map[string][]string
	var contexts map[string]*swarmpb.LogContext
	var err error
	s.Store.View(func(tx state.ReadTx) { byNode, contexts, err = logTargets(tx, req.GetTarget()) })
	if err != nil {
		return Status(err)
	}
	sessions := s.Dispatcher.taskSessions()
	if sessions == nil {
		// Between winning the election and starting the dispatcher: the
		// proxy retries on this error.
		return Status(raft.ErrNotLeader)
	}
	sub := sessions.logs.open(byNode)
	waiting := make(map[string]bool, len(byNode)) // sent a subscription, not closed yet
	defer func() {
		sessions.logs.remove(sub)
		// Stop the agents still reading (followers, mostly). Their publish
		// streams also fail now that the subscription is gone, but an
		// agent with nothing to send would not notice.
		for node := range waiting {
			sessions.sendToNode(node, subscriptionMessage(&swarmpb.LogSubscription{Id: sub.id, Close: true}))
		}
	}()

	send := func(lines []*swarmpb.LogLine) error {
		msg := &swarmpb.ServiceLogsMessage{Lines: lines, Tasks: make(map[string]*swarmpb.LogContext)}
		for _, l := range lines {
			if c := contexts[l.GetTaskId()]; c != nil {
				msg.Tasks[l.GetTaskId()] = c
			}
		}
		return stream.Send(msg)
	}
	var down []*swarmpb.LogLine
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		ls := &swarmpb.LogSubscription{Id: sub.id, TaskIds: byNode[node], Follow: req.GetFollow(), Tail: req.GetTail(), Timestamps: req.GetTimestamps()}
		if sub.sendTo(sessions, node, ls) {
			waiting[node] = true
			continue
		}
		ids := byNode[node]
		down = append(down, errorLine(ids[0], "node %s is not connected to the leader: the logs of its %d task(s) are unavailable", contexts[ids[0]].GetNodeName(), len(ids)))
	}
	if len(down) > 0 {
		if err := send(down); err != nil {
			return err
		}
	}

	answered := make(map[string]bool, len(waiting))
	timer := time.NewTimer(LogAnswerTimeout)
	defer timer.Stop()
	for len(waiting) > 0 {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-sessions.ctx.Done():
			return s.Dispatcher.termEnded(ctx)
		case <-timer.C:
			var silent []string
			var lines []*swarmpb.LogLine
			for node := range waiting {
				if !answered[node] {
					name := contexts[byNode[node][0]].GetNodeName()
					silent = append(silent, name)
					lines = append(lines, errorLine(byNode[node][0], "node %s did not answer within %s: the logs of its tasks may be missing", name, LogAnswerTimeout))
				}
			}
			if len(silent) == 0 {
				continue
			}
			slices.Sort(silent)
			if !req.GetFollow() {
				return status.Errorf(codes.DeadlineExceeded, "incomplete logs: node(s) %s did not answer within %s", strings.Join(silent, ", "), LogAnswerTimeout)
			}
			if err := send(lines); err != nil {
				return err
			}
		case ev := <-sub.events:
			answered[ev.node] = true
			lines := ev.lines
			if ev.err != "" {
				id := byNode[ev.node][0]
				lines = append(lines, errorLine(id, "node %s: %s", contexts[id].GetNodeName(), ev.err))
			}
			if len(lines) > 0 {
				if err := send(lines); err != nil {
					return err
				}
			}
			if ev.closed {
				delete(waiting, ev.node)
			}
		}
	}
	return nil
}

// PublishLogs takes one agent's lines for one subscription and hands them
// to the subscriber.
func (d *Dispatcher) PublishLogs(stream swarmpb.Dispatcher_PublishLogsServer) error {
	ctx := stream.Context()
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return err
	}
	s := d.taskSessions()
	if s == nil {
		return d.notLeader(ctx)
	}
	var sub *logSub
	for {
		msg, err := stream.Recv()
		if err != nil {
			if sub != nil {
				// The agent went away without closing: the subscriber must
				// not wait for it.
				why := "its log stream ended without closing"
				if err != io.EOF {
					why = "its log stream broke: " + status.Convert(err).Message()
				}
				_ = sub.deliver(context.Background(), s.ctx, logEvent{node: id.NodeID, err: why, closed: true})
			}
			if err == io.EOF {
				return stream.SendAndClose(&swarmpb.PublishLogsResponse{})
			}
			return err
		}
		if sub == nil {
			if sub, err = s.logs.claim(msg.GetSubscriptionId(), id.NodeID); err != nil {
				return Status(err)
			}
		} else if msg.GetSubscriptionId() != sub.id {
			return Status(invalidf("one PublishLogs stream carries one subscription (%s, not %s)", sub.id, msg.GetSubscriptionId()))
		}
		for _, l := range msg.GetLines() {
			if !sub.tasks[id.NodeID][l.GetTaskId()] {
				return Status(deniedf("log subscription %s did not ask node %s for task %s", sub.id, id.NodeID, l.GetTaskId()))
			}
		}
		ev := logEvent{node: id.NodeID, lines: msg.GetLines(), err: msg.GetError(), closed: msg.GetClose()}
		if err := sub.deliver(ctx, s.ctx, ev); err != nil {
			return err
		}
		if msg.GetClose() {
			return stream.SendAndClose(&swarmpb.PublishLogsResponse{})
		}
	}
}
