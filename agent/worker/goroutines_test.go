package worker

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// TestRunningTaskHoldsOneGoroutine: once its RUNNING is delivered, a task
// without healthcheck costs one goroutine (its runner, waiting for the
// container), not a reporter and a waiter besides; and it still reports
// its exit, which needs the reporter again.
func TestRunningTaskHoldsOneGoroutine(t *testing.T) {
	const n = 20
	ex, rec := fake.New("node1"), newRecorder()
	base := runtime.NumGoroutine()
	w := newWorker(t, ex, rec)
	var tasks []*swarmpb.Task
	for i := range n {
		tasks = append(tasks, task(fmt.Sprintf("t%02d", i), uint64(i+1), "img:v1"))
	}
	if err := w.Assign(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		rec.waitState(t, tk.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING)
	}
	// The reporters end just after their last delivery: poll.
	eventually(t, fmt.Sprintf("at most %d goroutines for %d running tasks", n, n), func() bool {
		return runtime.NumGoroutine()-base <= n
	})
	if err := ex.Exit("t07", 0); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t07", swarmpb.TaskState_TASK_STATE_COMPLETE)
}

// TestHealthPollingStillWatchesExit: a container with a healthcheck is
// waited for in a second goroutine while its health is polled; its exit
// during the polling is reported.
func TestHealthPollingStillWatchesExit(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.SetHealth("t1", exec.HealthHealthy)
	w := newWorker(t, ex, rec, withHealthInterval(time.Millisecond))
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	eventually(t, "health polled after RUNNING", func() bool { return ex.HealthChecks("t1") >= 3 })
	if err := ex.Exit("t1", 4); err != nil {
		t.Fatal(err)
	}
	if st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED); st.GetExitCode() != 4 {
		t.Fatalf("status %v, want exit code 4", st)
	}
}

// blockingReporter holds every call until its context ends.
type blockingReporter struct{ calls atomic.Int32 }

func (b *blockingReporter) UpdateTaskStatus(ctx context.Context, _ string, _ *swarmpb.TaskStatus) error {
	b.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// TestCloseEndsDelivery: Close returns while a report is being delivered
// (the reporter's goroutine is ended, which TestMain's leak check sees),
// and after removal, whose cleanup waits for it too.
func TestCloseEndsDelivery(t *testing.T) {
	ex, rep := fake.New("node1"), &blockingReporter{}
	w := New(ex, rep, testLog(), WithBackoff(time.Millisecond, time.Millisecond))
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1"), task("t2", 2, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both tasks reporting", func() bool { return rep.calls.Load() >= 2 })
	if err := w.Update(ctx, nil, []string{"t2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t2's container removed", func() bool { _, ok := ex.Container("t2"); return !ok })
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close hangs while a report is being delivered")
	}
}
