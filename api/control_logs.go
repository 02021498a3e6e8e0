package api

// The control side of log streaming: ServiceLogs resolves its target to
// tasks by node and streams what the log broker (logbroker.go) hands it.
// It reaches the agents only through the LogBroker interface.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LogBroker is what ServiceLogs needs from the leader's dispatcher: a log
// subscription for the running term, which it pushes to the nodes'
// sessions and through which the nodes' lines come back. The dispatcher
// implements it; the control server knows nothing of sessions.
type LogBroker interface {
	// OpenLogs registers a subscription asking each node (key) for the
	// logs of its tasks (value). It fails with raft.ErrNotLeader between
	// terms, which the proxy retries. The caller pushes it to the nodes
	// (push), reads their lines (events), and must end it (close). It is
	// only implemented in this package: *Dispatcher, with a per-term
	// logBroker (logbroker.go).
	OpenLogs(byNode map[string][]string) (*logSub, error)
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
	if s.Logs == nil {
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
	sub, err := s.Logs.OpenLogs(byNode)
	if err != nil {
		// Between winning the election and starting the dispatcher: the
		// proxy retries on raft.ErrNotLeader.
		return Status(err)
	}
	waiting := make(map[string]bool, len(byNode)) // sent a subscription, not closed yet
	defer func() { sub.close(slices.Collect(maps.Keys(waiting))) }()

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
		if sub.push(node, ls) {
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
		case <-sub.termDone():
			return sub.broker.termEnded(ctx)
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
