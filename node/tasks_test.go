package node_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const tkWait = 15 * time.Second

// tkTask is a task the scheduler would have assigned to nodeID. Each
// test task has a service of its own (one replica, never restarted), so
// the orchestrator leaves it alone instead of reaping it as an orphan.
func tkTask(id, nodeID string) *swarmpb.Task {
	spec := tkSpec(id)
	return &swarmpb.Task{
		Id: id, ServiceId: "svc-" + id, ServiceName: spec.Name, Slot: 1, NodeId: nodeID,
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED},
		Spec:         spec,
	}
}

func tkSpec(id string) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{
		Name: "web-" + id, Replicas: 1,
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_NONE},
		Container: &swarmpb.ContainerSpec{Image: "x"},
	}
}

// tkCreate writes a task assigned to nodeID, with its service.
func tkCreate(t *testing.T, c *testcluster.Cluster, id, nodeID string) {
	t.Helper()
	tkApply(t, c,
		state.Create(&swarmpb.Service{Id: "svc-" + id, Spec: tkSpec(id)}),
		state.Create(tkTask(id, nodeID)))
}

// tkShutdown sets the task's desired state to SHUTDOWN, scaling its
// service to zero so that the orchestrator does not replace it.
func tkShutdown(t *testing.T, c *testcluster.Cluster, id string) {
	t.Helper()
	tkWrite(t, c, id, func(task *swarmpb.Task, svc *swarmpb.Service) []*swarmpb.StoreAction {
		task.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
		svc.Spec.Replicas = 0
		return []*swarmpb.StoreAction{state.Update(svc), state.Update(task)}
	})
}

// tkDelete deletes the task and its service.
func tkDelete(t *testing.T, c *testcluster.Cluster, id string) {
	t.Helper()
	tkWrite(t, c, id, func(task *swarmpb.Task, svc *swarmpb.Service) []*swarmpb.StoreAction {
		return []*swarmpb.StoreAction{state.Delete(task), state.Delete(svc)}
	})
}

// tkWrite applies what fn makes of the current task and service, retrying
// on conflicts with status writes.
func tkWrite(t *testing.T, c *testcluster.Cluster, id string, fn func(*swarmpb.Task, *swarmpb.Service) []*swarmpb.StoreAction) {
	t.Helper()
	testutil.Eventually(t, tkWait, func() error {
		mgr := c.Leader(tkWait).Node.Manager()
		var task *swarmpb.Task
		var svc *swarmpb.Service
		mgr.Store().View(func(tx state.ReadTx) {
			task, svc = tx.GetTask(id), tx.GetService("svc-"+id)
		})
		if task == nil || svc == nil {
			return fmt.Errorf("task %s or its service not found", id)
		}
		acts := fn(proto.Clone(task).(*swarmpb.Task), proto.Clone(svc).(*swarmpb.Service))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := mgr.Raft().Apply(ctx, state.Batch(acts...))
		return err
	})
}

// tkApply writes through the current leader's Raft, retrying across
// leader changes.
func tkApply(t *testing.T, c *testcluster.Cluster, actions ...*swarmpb.StoreAction) {
	t.Helper()
	testutil.Eventually(t, tkWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Leader(tkWait).Node.Manager().Raft().Apply(ctx, state.Batch(actions...))
		if errors.Is(err, state.ErrExists) {
			return nil // an earlier attempt went through after all
		}
		return err
	})
}

func tkGet(c *testcluster.Cluster, id string) *swarmpb.Task {
	var task *swarmpb.Task
	c.Leader(tkWait).Node.Manager().Store().View(func(tx state.ReadTx) { task = tx.GetTask(id) })
	return task
}

// tkUpdate changes a stored task, retrying on conflicts with status writes.
func tkUpdate(t *testing.T, c *testcluster.Cluster, id string, fn func(*swarmpb.Task)) {
	t.Helper()
	testutil.Eventually(t, tkWait, func() error {
		cur := tkGet(c, id)
		if cur == nil {
			return fmt.Errorf("task %s not found", id)
		}
		upd := proto.Clone(cur).(*swarmpb.Task)
		fn(upd)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Leader(tkWait).Node.Manager().Raft().Apply(ctx, state.Batch(state.Update(upd)))
		return err
	})
}

func tkWaitState(t *testing.T, c *testcluster.Cluster, id string, want swarmpb.TaskState) *swarmpb.Task {
	t.Helper()
	var task *swarmpb.Task
	testutil.Eventually(t, tkWait, func() error {
		task = tkGet(c, id)
		if got := task.GetStatus().GetState(); got != want {
			return fmt.Errorf("task %s is %v, want %v", id, got, want)
		}
		return nil
	})
	return task
}

func tkWaitContainer(t *testing.T, m *testcluster.Member, id string, running bool) {
	t.Helper()
	testutil.Eventually(t, tkWait, func() error {
		f := m.Fake()
		if f == nil {
			return errors.New("no fake executor yet")
		}
		info, ok := f.Container(id)
		if !ok {
			return fmt.Errorf("no container for %s on %s", id, m.Name)
		}
		if info.Running != running {
			return fmt.Errorf("container of %s running=%v, want %v", id, info.Running, running)
		}
		return nil
	})
}

// tkConn dials addr with member m's node certificate.
func tkConn(t *testing.T, m *testcluster.Member, addr string) *grpc.ClientConn {
	t.Helper()
	creds, err := ca.LoadCreds(filepath.Join(m.Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	pool := dial.NewPool(creds)
	t.Cleanup(pool.Close)
	conn, err := pool.Conn(addr)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestTaskLifecycle(t *testing.T) {
	c := testcluster.New(t, 3, 2, testcluster.Options{})
	w1 := c.Get("w1")
	w1ID := w1.NodeID()

	// Assigned -> running, reported back with the container ID.
	tkCreate(t, c, "t1", w1ID)
	tkWaitContainer(t, w1, "t1", true)
	got := tkWaitState(t, c, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	if info, _ := w1.Fake().Container("t1"); got.Status.ContainerId != info.ID {
		t.Fatalf("container id %q, want %q", got.Status.ContainerId, info.ID)
	}

	// Desired SHUTDOWN stops the container.
	tkShutdown(t, c, "t1")
	tkWaitState(t, c, "t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	tkWaitContainer(t, w1, "t1", false)

	// Deleting the task removes its container.
	tkDelete(t, c, "t1")
	testutil.Eventually(t, tkWait, func() error {
		if _, ok := w1.Fake().Container("t1"); ok {
			return errors.New("container of t1 still exists")
		}
		return nil
	})

	// A container exiting with 3 fails the task with that code.
	tkCreate(t, c, "t2", w1ID)
	tkWaitContainer(t, w1, "t2", true)
	tkWaitState(t, c, "t2", swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w1.Fake().Exit("t2", 3); err != nil {
		t.Fatal(err)
	}
	got = tkWaitState(t, c, "t2", swarmpb.TaskState_TASK_STATE_FAILED)
	if got.Status.ExitCode != 3 {
		t.Fatalf("exit code %d, want 3", got.Status.ExitCode)
	}

	// Moving a task to another node removes it from the first.
	tkCreate(t, c, "t3", w1ID)
	tkWaitContainer(t, w1, "t3", true)
	tkWaitState(t, c, "t3", swarmpb.TaskState_TASK_STATE_RUNNING)
	w2 := c.Get("w2")
	tkUpdate(t, c, "t3", func(task *swarmpb.Task) {
		task.NodeId = w2.NodeID()
		task.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED}
	})
	testutil.Eventually(t, tkWait, func() error {
		if _, ok := w1.Fake().Container("t3"); ok {
			return errors.New("container of t3 still on w1")
		}
		return nil
	})
	tkWaitContainer(t, w2, "t3", true)

	// The heartbeat carries the engine's description and the configured hostname.
	testutil.Eventually(t, tkWait, func() error {
		var n *swarmpb.Node
		c.Leader(tkWait).Node.Manager().Store().View(func(tx state.ReadTx) { n = tx.GetNode(w1ID) })
		d := n.GetDescription()
		if d.GetHostname() != "w1" || d.GetEngineVersion() != "fake" || d.GetResources().GetNanoCpus() != 4e9 || d.GetEngineError() != "" {
			return fmt.Errorf("description %v", d)
		}
		return nil
	})
}

func TestTaskSessionFailoverAndRestart(t *testing.T) {
	c := testcluster.New(t, 3, 2, testcluster.Options{})
	w1, w2 := c.Get("w1"), c.Get("w2")

	tkCreate(t, c, "a", w2.NodeID())
	tkWaitContainer(t, w2, "a", true)
	tkWaitState(t, c, "a", swarmpb.TaskState_TASK_STATE_RUNNING)

	// The leader goes away: the agent follows the new leader without
	// restarting what runs, and later changes still flow both ways.
	old := c.Leader(tkWait)
	old.Stop()
	testutil.Eventually(t, tkWait, func() error {
		if l := c.Leader(tkWait); l == old {
			return errors.New("old leader still leads")
		}
		return nil
	})
	tkCreate(t, c, "b", w2.NodeID())
	tkWaitContainer(t, w2, "b", true)
	tkWaitState(t, c, "b", swarmpb.TaskState_TASK_STATE_RUNNING)
	if n := w2.Fake().Starts("a"); n != 1 {
		t.Fatalf("task a started %d times, want 1", n)
	}
	if got := tkGet(c, "a").GetStatus().GetState(); got != swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("task a is %v after failover", got)
	}
	tkShutdown(t, c, "a")
	tkWaitState(t, c, "a", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	tkWaitContainer(t, w2, "a", false)
	if err := w2.Fake().Exit("b", 3); err != nil {
		t.Fatal(err)
	}
	tkWaitState(t, c, "b", swarmpb.TaskState_TASK_STATE_FAILED)

	// A restarted worker adopts its running containers.
	tkCreate(t, c, "r", w1.NodeID())
	tkWaitContainer(t, w1, "r", true)
	tkWaitState(t, c, "r", swarmpb.TaskState_TASK_STATE_RUNNING)
	created := w1.Fake().Created()
	w1.Stop()
	w1.Start(t)
	// A new task running proves the new agent has its session (and so
	// has been through the full assignment).
	tkCreate(t, c, "r2", w1.NodeID())
	tkWaitContainer(t, w1, "r2", true)
	tkWaitState(t, c, "r2", swarmpb.TaskState_TASK_STATE_RUNNING)
	if n := w1.Fake().Created(); n != created+1 {
		t.Fatalf("%d containers created after restart, want %d (adoption, plus r2)", n, created+1)
	}
	if n := w1.Fake().Starts("r"); n != 1 {
		t.Fatalf("task r started %d times, want 1", n)
	}
	tkWaitContainer(t, w1, "r", true)
	tkShutdown(t, c, "r")
	tkWaitState(t, c, "r", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
}

func TestTaskDispatcherRefusals(t *testing.T) {
	c := testcluster.New(t, 3, 2, testcluster.Options{})
	w1, w2 := c.Get("w1"), c.Get("w2")
	tkCreate(t, c, "mine", w1.NodeID())
	tkWaitState(t, c, "mine", swarmpb.TaskState_TASK_STATE_RUNNING)
	leader := c.Leader(tkWait)
	ctx, cancel := context.WithTimeout(context.Background(), tkWait)
	defer cancel()

	// Another node may not report on w1's task.
	_, err := swarmpb.NewDispatcherClient(tkConn(t, w2, leader.Addr)).UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{
		Updates: []*swarmpb.TaskStatusUpdate{{TaskId: "mine", Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED}}},
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("update of another node's task: %v, want PermissionDenied", err)
	}
	if got := tkGet(c, "mine").GetStatus().GetState(); got != swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("task is %v", got)
	}

	// A backwards update from the owner is dropped without error.
	_, err = swarmpb.NewDispatcherClient(tkConn(t, w1, leader.Addr)).UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{
		Updates: []*swarmpb.TaskStatusUpdate{
			{TaskId: "mine", Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_STARTING}},
			{TaskId: "deleted-long-ago", Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}},
		},
	})
	if err != nil {
		t.Fatalf("backwards update: %v", err)
	}
	if got := tkGet(c, "mine").GetStatus().GetState(); got != swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("task moved back to %v", got)
	}

	// A follower names the leader, for sessions and status updates alike.
	var follower *testcluster.Member
	for _, name := range []string{"m1", "m2", "m3"} {
		if m := c.Get(name); m != leader {
			follower = m
			break
		}
	}
	var trailer metadata.MD
	stream, err := swarmpb.NewDispatcherClient(tkConn(t, w1, follower.Addr)).Session(ctx, &swarmpb.SessionRequest{}, grpc.Trailer(&trailer))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition || trailer.Get(api.LeaderAddrKey)[0] != leader.Addr {
		t.Fatalf("session on a follower: %v, trailer %v", err, trailer)
	}
	trailer = nil
	_, err = swarmpb.NewDispatcherClient(tkConn(t, w1, follower.Addr)).UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.FailedPrecondition || trailer.Get(api.LeaderAddrKey)[0] != leader.Addr {
		t.Fatalf("status update on a follower: %v, trailer %v", err, trailer)
	}

	// The leader streams the full set first.
	stream, err = swarmpb.NewDispatcherClient(tkConn(t, w1, leader.Addr)).Session(ctx, &swarmpb.SessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.Kind != swarmpb.SessionMessage_KIND_FULL || len(msg.Tasks) != 1 || msg.Tasks[0].Id != "mine" || len(msg.Managers) != 3 || msg.Managers[0] != leader.Addr {
		t.Fatalf("first message %v", msg)
	}
}

// A node without a container engine still heartbeats and says why it
// cannot run tasks.
func TestNoEngineReported(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{
		Configure: func(name string, cfg *node.Config) {
			if name == "w1" {
				cfg.Executor = func(string) (exec.Executor, error) { return nil, errors.New("no docker here") }
			}
		},
	})
	id := c.Get("w1").NodeID()
	testutil.Eventually(t, tkWait, func() error {
		var n *swarmpb.Node
		c.Leader(tkWait).Node.Manager().Store().View(func(tx state.ReadTx) { n = tx.GetNode(id) })
		if n.GetStatus() != swarmpb.NodeStatus_NODE_STATUS_READY || n.GetDescription().GetEngineError() != "no docker here" || n.GetDescription().GetHostname() != "w1" {
			return fmt.Errorf("node %v", n)
		}
		return nil
	})
}
