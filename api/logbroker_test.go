package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leaderRaft is storeRaft on a leader whose reads need no barrier.
type leaderRaft struct{ *storeRaft }

func (leaderRaft) ReadBarrier(context.Context) error { return nil }

// logStream collects what ServiceLogs sends.
type logStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs chan *swarmpb.ServiceLogsMessage
}

func (s *logStream) Context() context.Context { return s.ctx }
func (s *logStream) Send(m *swarmpb.ServiceLogsMessage) error {
	s.msgs <- m
	return nil
}

// logSetup is a leader with service web: task a1 on node A (connected)
// and b1 on node B (no session).
func logSetup(t *testing.T) (*ControlServer, *logBroker, *session) {
	st := state.New()
	r := &storeRaft{store: st}
	a1, b1 := dtTask("a1", "A", swarmpb.TaskState_TASK_STATE_RUNNING), dtTask("b1", "B", swarmpb.TaskState_TASK_STATE_RUNNING)
	a1.ServiceName, a1.Slot, b1.ServiceName, b1.Slot = "web", 1, "web", 2
	dtApply(t, r,
		state.Create(&swarmpb.Node{Id: "A", Description: &swarmpb.NodeDescription{Hostname: "hostA"}}),
		state.Create(&swarmpb.Node{Id: "B", Description: &swarmpb.NodeDescription{Hostname: "hostB"}}),
		state.Create(&swarmpb.Service{Id: "s", Spec: &swarmpb.ServiceSpec{Name: "web"}}),
		state.Create(a1), state.Create(b1))
	d := &Dispatcher{Store: st, Raft: r}
	ctx, cancel := context.WithCancel(context.Background())
	s := d.startSessions(ctx)
	b := newLogBroker(s.ctx, d.termEnded, s)
	d.mu.Lock()
	d.active, d.sessions, d.logs = true, s, b
	d.mu.Unlock()
	sessA, _ := s.register("A")
	t.Cleanup(func() { s.unregister(sessA); cancel(); s.stop() })
	return &ControlServer{Store: st, Raft: leaderRaft{r}, Logs: d}, b, sessA
}

// nextSubscription waits for the session's next log subscription.
func nextSubscription(t *testing.T, sess *session) *swarmpb.LogSubscription {
	t.Helper()
	select {
	case <-sess.notify:
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription sent to the session")
	}
	oob := sess.takeOOB()
	if len(oob) != 1 || len(oob[0].GetLogSubscriptions()) != 1 || oob[0].GetKind() != swarmpb.SessionMessage_KIND_UPDATE {
		t.Fatalf("out-of-band messages %v", oob)
	}
	return oob[0].GetLogSubscriptions()[0]
}

func nextMessage(t *testing.T, out *logStream) *swarmpb.ServiceLogsMessage {
	t.Helper()
	select {
	case m := <-out.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no ServiceLogs message")
		return nil
	}
}

func TestServiceLogsRouting(t *testing.T) {
	cs, s, sessA := logSetup(t)
	out := &logStream{ctx: context.Background(), msgs: make(chan *swarmpb.ServiceLogsMessage, 10)}
	done := make(chan error, 1)
	go func() { done <- cs.ServiceLogs(&swarmpb.ServiceLogsRequest{Target: "web", Tail: 3}, out) }()

	sub := nextSubscription(t, sessA)
	if sub.GetId() == "" || len(sub.GetTaskIds()) != 1 || sub.GetTaskIds()[0] != "a1" || sub.GetTail() != 3 || sub.GetFollow() {
		t.Fatalf("subscription %v", sub)
	}
	// B has no session: reported once, as an error line.
	m := nextMessage(t, out)
	if len(m.GetLines()) != 1 || m.GetLines()[0].GetStream() != LogStreamError ||
		!strings.Contains(string(m.GetLines()[0].GetData()), "node hostB is not connected") {
		t.Fatalf("first message %v", m)
	}

	// Only the node the subscription was sent to may publish, once.
	if _, err := s.claim(sub.GetId(), "B"); !errors.Is(err, errPermission) {
		t.Fatalf("claim by B: %v", err)
	}
	ls, err := s.claim(sub.GetId(), "A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.claim(sub.GetId(), "A"); !errors.Is(err, errRefused) {
		t.Fatalf("second claim by A: %v", err)
	}
	line := &swarmpb.LogLine{TaskId: "a1", Stream: "stdout", Data: []byte("hi\n")}
	if err := ls.deliver(context.Background(), s.term, logEvent{node: "A", lines: []*swarmpb.LogLine{line}, closed: true}); err != nil {
		t.Fatal(err)
	}
	m = nextMessage(t, out)
	c := m.GetTasks()["a1"]
	if len(m.GetLines()) != 1 || string(m.GetLines()[0].GetData()) != "hi\n" ||
		c.GetServiceName() != "web" || c.GetSlot() != 1 || c.GetNodeId() != "A" || c.GetNodeName() != "hostA" {
		t.Fatalf("lines message %v", m)
	}
	// Without follow, the call ends when every connected node closed.
	if err := <-done; err != nil {
		t.Fatalf("ServiceLogs: %v", err)
	}
	if _, err := s.claim(sub.GetId(), "A"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("claim after the end: %v", err)
	}
}

func TestServiceLogsSilentNode(t *testing.T) {
	defer func(d time.Duration) { LogAnswerTimeout = d }(LogAnswerTimeout)
	LogAnswerTimeout = 100 * time.Millisecond
	cs, _, sessA := logSetup(t)
	out := &logStream{ctx: context.Background(), msgs: make(chan *swarmpb.ServiceLogsMessage, 10)}
	err := cs.ServiceLogs(&swarmpb.ServiceLogsRequest{Target: "a1", Tail: -1}, out)
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "node(s) hostA did not answer") {
		t.Fatalf("got %v, want DeadlineExceeded naming hostA", err)
	}
	// The silent node was sent the subscription, then told it is closed.
	oob := sessA.takeOOB()
	if len(oob) != 2 || oob[0].GetLogSubscriptions()[0].GetClose() || !oob[1].GetLogSubscriptions()[0].GetClose() {
		t.Fatalf("out-of-band messages %v", oob)
	}

	err = cs.ServiceLogs(&swarmpb.ServiceLogsRequest{Target: "nope"}, out)
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "service nope not found" {
		t.Fatalf("bad target: %v", err)
	}
}
