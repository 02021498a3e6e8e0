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
	"io"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LogStreamError is the Stream of a LogLine that reports a problem getting
// logs rather than a line a task printed.
const LogStreamError = "error"

// LogAnswerTimeout is how long ServiceLogs waits for a node with a session
// to open its PublishLogs stream. A variable so tests can shorten it.
var LogAnswerTimeout = 10 * time.Second

// logBroker routes log lines for one leadership term: it holds the term's
// open subscriptions by ID, pushes them to the nodes through their sessions
// (a nodeSender, so it knows nothing else of them), and binds each node's
// PublishLogs stream to the subscription it answers. The control server
// reaches it through LogBroker; the agents through PublishLogs.
type logBroker struct {
	term      context.Context // ends with the term
	termEnded func(ctx context.Context) error
	nodes     nodeSender

	mu   sync.Mutex
	subs map[string]*logSub
}

// nodeSender queues an out-of-band message on a node's open sessions and
// reports whether it has any (sessions.sendToNode).
type nodeSender interface {
	sendToNode(nodeID string, msg *swarmpb.SessionMessage) bool
}

func newLogBroker(term context.Context, termEnded func(context.Context) error, nodes nodeSender) *logBroker {
	return &logBroker{term: term, termEnded: termEnded, nodes: nodes, subs: make(map[string]*logSub)}
}

// logSub is one ServiceLogs call waiting for the agents' lines.
type logSub struct {
	broker *logBroker
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

func (r *logBroker) open(byNode map[string][]string) *logSub {
	sub := &logSub{
		broker:  r,
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
	r.subs[sub.id] = sub
	return sub
}

// close ends the subscription: its publish streams fail from now on, and
// the nodes still reading (waiting; followers, mostly) are told to stop,
// since an agent with nothing to send would not notice the failure.
func (sub *logSub) close(waiting []string) {
	r := sub.broker
	r.mu.Lock()
	delete(r.subs, sub.id)
	r.mu.Unlock()
	close(sub.done)
	for _, node := range waiting {
		r.nodes.sendToNode(node, subscriptionMessage(&swarmpb.LogSubscription{Id: sub.id, Close: true}))
	}
}

// claim binds a publish stream from node to subscription id. A node may
// only publish to a subscription sent to it, and only once: an agent with
// two sessions (one of them stale) gets the subscription twice.
func (r *logBroker) claim(id, node string) (*logSub, error) {
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

// termDone is closed when the leadership term that holds the subscription
// ends; the subscriber then gets broker.termEnded.
func (sub *logSub) termDone() <-chan struct{} { return sub.broker.term.Done() }

// push sends the subscription to node's sessions, recording it first so
// that the node's answer, which may come at once, is accepted. It reports
// false when the node has no session.
func (sub *logSub) push(node string, ls *swarmpb.LogSubscription) bool {
	sub.mu.Lock()
	sub.sent[node] = true
	sub.mu.Unlock()
	if sub.broker.nodes.sendToNode(node, subscriptionMessage(ls)) {
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

// OpenLogs implements LogBroker with the running term's broker.
func (d *Dispatcher) OpenLogs(byNode map[string][]string) (*logSub, error) {
	_, b := d.term()
	if b == nil {
		return nil, raft.ErrNotLeader
	}
	return b.open(byNode), nil
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

// PublishLogs takes one agent's lines for one subscription and hands them
// to the subscriber.
func (d *Dispatcher) PublishLogs(stream swarmpb.Dispatcher_PublishLogsServer) error {
	ctx := stream.Context()
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return err
	}
	_, b := d.term()
	if b == nil {
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
				_ = sub.deliver(context.Background(), b.term, logEvent{node: id.NodeID, err: why, closed: true})
			}
			if err == io.EOF {
				return stream.SendAndClose(&swarmpb.PublishLogsResponse{})
			}
			return err
		}
		if sub == nil {
			if sub, err = b.claim(msg.GetSubscriptionId(), id.NodeID); err != nil {
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
		if err := sub.deliver(ctx, b.term, ev); err != nil {
			return err
		}
		if msg.GetClose() {
			return stream.SendAndClose(&swarmpb.PublishLogsResponse{})
		}
	}
}
