package docker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/worker"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// lastStatus is a StatusReporter remembering each task's latest status.
type lastStatus struct {
	mu   sync.Mutex
	last map[string]*swarmpb.TaskStatus
}

func (l *lastStatus) UpdateTaskStatus(_ context.Context, id string, st *swarmpb.TaskStatus) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]*swarmpb.TaskStatus{}
	}
	l.last[id] = st
	return nil
}

// waitFor polls (the engine gives no push here) until the task's state is
// want.
func (l *lastStatus) waitFor(t *testing.T, id string, want swarmpb.TaskState) *swarmpb.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		st := l.last[id]
		l.mu.Unlock()
		if st.GetState() == want {
			return st
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("task %s: want %v, last status %v", id, want, st)
		}
	}
}

// TestWorkerOnDocker runs the worker against the real engine: a task runs,
// the agent "restarts" and adopts it without restarting the container, a
// crashing task fails with its exit code, and removal deletes containers.
func TestWorkerOnDocker(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)

	run := testTask("task"+randID(t), 1, img)
	crash := testTask("task"+randID(t), 2, img, "exit", "5")
	rep1 := &lastStatus{}
	w1 := worker.New(e, rep1, nil)
	t.Cleanup(w1.Close)
	if err := w1.Assign(ctx, []*swarmpb.Task{run, crash}); err != nil {
		t.Fatal(err)
	}
	st := rep1.waitFor(t, run.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING)
	containerID := st.GetContainerId()
	if fst := rep1.waitFor(t, crash.GetId(), swarmpb.TaskState_TASK_STATE_FAILED); fst.GetExitCode() != 5 {
		t.Fatalf("crash status %v", fst)
	}
	ins, err := cli.ContainerInspect(ctx, containerID)
	if err != nil {
		t.Fatal(err)
	}
	startedAt := ins.State.StartedAt
	w1.Close()

	rep2 := &lastStatus{}
	w2 := worker.New(e, rep2, nil)
	t.Cleanup(w2.Close)
	run.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}
	if err := w2.Assign(ctx, []*swarmpb.Task{run}); err != nil {
		t.Fatal(err)
	}
	if st := rep2.waitFor(t, run.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING); st.GetContainerId() != containerID {
		t.Fatalf("adopted a different container: %v", st)
	}
	ins, err = cli.ContainerInspect(ctx, containerID)
	if err != nil || ins.State.StartedAt != startedAt || !ins.State.Running {
		t.Fatalf("adopted container was restarted or stopped: %+v %v", ins.State, err)
	}
	// The crashed task was not assigned any more: its container is gone.
	waitContainers(t, e, 1)

	if err := w2.Update(ctx, nil, []string{run.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitContainers(t, e, 0)
}

func waitContainers(t *testing.T, e *Executor, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := e.Containers(ctx)
		if err == nil && len(list) == n {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("want %d containers, have %+v (%v)", n, list, err)
		}
	}
}
