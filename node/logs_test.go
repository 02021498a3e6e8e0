package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// logLine renders a received line with its context, as the CLI would.
func logLine(l *swarmpb.LogLine, c *swarmpb.LogContext) string {
	return fmt.Sprintf("%s.%d.%s@%s/%s %s: %s", c.GetServiceName(), c.GetSlot(), l.GetTaskId(), c.GetNodeName(), c.GetNodeId(), l.GetStream(), l.GetData())
}

// readAll reads a ServiceLogs stream to its end.
func readAll(stream swarmpb.Control_ServiceLogsClient) ([]string, error) {
	var out []string
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			slices.Sort(out)
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, l := range msg.GetLines() {
			out = append(out, logLine(l, msg.GetTasks()[l.GetTaskId()]))
		}
	}
}

// TestServiceLogs streams the logs of a service whose two tasks run on two
// nodes, through the follower's socket (so through the proxy's relay).
func TestServiceLogs(t *testing.T) {
	c := testcluster.New(t, 2, 0, testcluster.Options{})
	leader := c.Leader(tkWait)
	follower := c.Get("m1")
	if follower == leader {
		follower = c.Get("m2")
	}
	ctx := ctxT(t, 60*time.Second)
	if _, err := leader.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: "web", Replicas: 2, Container: &swarmpb.ContainerSpec{Image: "x"},
	}}); err != nil {
		t.Fatal(err)
	}
	byNode := map[string]*testcluster.Member{}
	for _, m := range c.Members {
		byNode[m.NodeID()] = m
	}
	var tasks []*swarmpb.Task
	testutil.Eventually(t, tkWait, func() error {
		resp, err := leader.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{"web"}})
		if err != nil {
			return err
		}
		tasks = resp.GetTasks()
		nodes := map[string]bool{}
		for _, tk := range tasks {
			if tk.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
				return fmt.Errorf("task %s is %s", tk.GetId(), tk.GetStatus().GetState())
			}
			nodes[tk.GetNodeId()] = true
		}
		if len(tasks) != 2 || len(nodes) != 2 {
			return fmt.Errorf("%d tasks on %d nodes", len(tasks), len(nodes))
		}
		return nil
	})
	var want []string
	for _, tk := range tasks {
		m := byNode[tk.GetNodeId()]
		m.Fake().AppendLog(tk.GetId(), "stdout", "hello from "+m.Name)
		m.Fake().AppendLog(tk.GetId(), "stderr", "bye from "+m.Name)
		ctx := &swarmpb.LogContext{ServiceName: "web", Slot: tk.GetSlot(), NodeId: tk.GetNodeId(), NodeName: m.Name}
		want = append(want,
			logLine(&swarmpb.LogLine{TaskId: tk.GetId(), Stream: "stdout", Data: []byte("hello from " + m.Name + "\n")}, ctx),
			logLine(&swarmpb.LogLine{TaskId: tk.GetId(), Stream: "stderr", Data: []byte("bye from " + m.Name + "\n")}, ctx))
	}
	slices.Sort(want)

	t.Run("all", func(t *testing.T) {
		stream, err := follower.Control().ServiceLogs(ctx, &swarmpb.ServiceLogsRequest{Target: "web", Tail: -1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(stream)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("got %q, %v\nwant %q", got, err, want)
		}
	})

	t.Run("task with tail", func(t *testing.T) {
		tk := tasks[0]
		stream, err := follower.Control().ServiceLogs(ctx, &swarmpb.ServiceLogsRequest{Target: tk.GetId(), Tail: 1})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(stream)
		if err != nil || len(got) != 1 {
			t.Fatalf("got %q, %v", got, err)
		}
		if m := byNode[tk.GetNodeId()].Name; got[0] != logLine(&swarmpb.LogLine{TaskId: tk.GetId(), Stream: "stderr", Data: []byte("bye from " + m + "\n")},
			&swarmpb.LogContext{ServiceName: "web", Slot: tk.GetSlot(), NodeId: tk.GetNodeId(), NodeName: m}) {
			t.Fatalf("tail 1 got %q, want the task's last line", got)
		}
	})

	t.Run("follow", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := follower.Control().ServiceLogs(fctx, &swarmpb.ServiceLogsRequest{Target: "web", Follow: true, Tail: 0})
		if err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 10)
		done := make(chan error, 1)
		go func() {
			for {
				msg, err := stream.Recv()
				if err != nil {
					done <- err
					return
				}
				for _, l := range msg.GetLines() {
					lines <- logLine(l, msg.GetTasks()[l.GetTaskId()])
				}
			}
		}()
		// Both agents follow once their readers run.
		testutil.Eventually(t, tkWait, func() error {
			for _, tk := range tasks {
				if n := byNode[tk.GetNodeId()].Fake().LogReaders(); n != 1 {
					return fmt.Errorf("%d log readers on %s", n, byNode[tk.GetNodeId()].Name)
				}
			}
			return nil
		})
		tk := tasks[1]
		m := byNode[tk.GetNodeId()]
		m.Fake().AppendLog(tk.GetId(), "stdout", "later")
		wantLine := logLine(&swarmpb.LogLine{TaskId: tk.GetId(), Stream: "stdout", Data: []byte("later\n")},
			&swarmpb.LogContext{ServiceName: "web", Slot: tk.GetSlot(), NodeId: tk.GetNodeId(), NodeName: m.Name})
		select {
		case got := <-lines:
			if got != wantLine {
				t.Fatalf("followed %q, want %q", got, wantLine)
			}
		case err := <-done:
			t.Fatalf("follow ended: %v", err)
		case <-time.After(tkWait):
			t.Fatal("no followed line")
		}
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Fatalf("follow ended with %v, want Canceled", err)
		}
		// The subscription is closed on the agents: their readers stop.
		testutil.Eventually(t, tkWait, func() error {
			for _, m := range c.Members {
				if n := m.Fake().LogReaders(); n != 0 {
					return fmt.Errorf("%d log readers still on %s", n, m.Name)
				}
			}
			return nil
		})
	})

	t.Run("not found", func(t *testing.T) {
		stream, err := follower.Control().ServiceLogs(ctx, &swarmpb.ServiceLogsRequest{Target: "nope", Tail: -1})
		if err == nil {
			_, err = stream.Recv()
		}
		if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "service nope not found" {
			t.Fatalf("got %v, want NotFound: service nope not found", err)
		}
	})
}
