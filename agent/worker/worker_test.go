package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

// recorder is a StatusReporter keeping every delivered status per task.
type recorder struct {
	mu      sync.Mutex
	hist    map[string][]*swarmpb.TaskStatus
	fail    int // fail this many calls from now
	calls   int
	changed chan struct{} // closed and replaced on every change
}

func newRecorder() *recorder {
	return &recorder{hist: make(map[string][]*swarmpb.TaskStatus), changed: make(chan struct{})}
}

func (r *recorder) UpdateTaskStatus(ctx context.Context, id string, st *swarmpb.TaskStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail > 0 {
		r.fail--
		return errors.New("dispatcher unavailable")
	}
	r.hist[id] = append(r.hist[id], st)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

func (r *recorder) failNext(n int) {
	r.mu.Lock()
	r.fail = n
	r.mu.Unlock()
}

func (r *recorder) states(id string) []swarmpb.TaskState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []swarmpb.TaskState
	for _, st := range r.hist[id] {
		out = append(out, st.GetState())
	}
	return out
}

func (r *recorder) last(id string) *swarmpb.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hist[id]
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1]
}

// waitState blocks until the task's last reported state is want.
func (r *recorder) waitState(t *testing.T, id string, want swarmpb.TaskState) *swarmpb.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		ch := r.changed
		h := r.hist[id]
		r.mu.Unlock()
		if len(h) > 0 && h[len(h)-1].GetState() == want {
			return h[len(h)-1]
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("task %s: waiting for %v, got states %v", id, want, r.states(id))
		}
	}
}

// checkMonotonic asserts that no task's reported state ever went back or
// repeated (a state may be repeated with a new message).
func (r *recorder) checkMonotonic(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, h := range r.hist {
		for i := 1; i < len(h); i++ {
			if h[i].GetState() < h[i-1].GetState() ||
				(h[i].GetState() == h[i-1].GetState() && h[i].GetMessage() == h[i-1].GetMessage()) {
				t.Errorf("task %s: state went from %v to %v", id, h[i-1].GetState(), h[i].GetState())
			}
		}
	}
}

// eventually polls cond (for conditions on the fake engine, which has no
// notification) until it holds or the timeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func testLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func newWorker(t *testing.T, ex exec.Executor, rec *recorder, opts ...Option) *Worker {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 20*time.Millisecond)}, opts...)
	w := New(ex, rec, testLog(), opts...)
	t.Cleanup(func() {
		w.Close()
		rec.checkMonotonic(t)
	})
	return w
}

func task(id string, slot uint64, image string) *swarmpb.Task {
	return &swarmpb.Task{
		Id: id, ServiceId: "svc1", ServiceName: "web", Slot: slot, NodeId: "node1",
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED},
		Spec: &swarmpb.ServiceSpec{
			Name:      "web",
			Container: &swarmpb.ContainerSpec{Image: image},
		},
	}
}

func withDesired(t *swarmpb.Task, s swarmpb.TaskState) *swarmpb.Task {
	c := proto.Clone(t).(*swarmpb.Task)
	c.DesiredState = s
	return c
}

func withStatus(t *swarmpb.Task, s swarmpb.TaskState) *swarmpb.Task {
	c := proto.Clone(t).(*swarmpb.Task)
	c.Status = &swarmpb.TaskStatus{State: s}
	return c
}

var ctx = context.Background()

func TestLifecycleComplete(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	info, ok := ex.Container("t1")
	if !ok || !info.Running || st.GetContainerId() != info.ID || info.Name != "web.1.t1" {
		t.Fatalf("container %+v (ok=%v), status %v", info, ok, st)
	}
	// The reporter sends the newest status of those queued, so steps may
	// be skipped, but the states only move forward and end at RUNNING.
	got := rec.states("t1")
	if len(got) == 0 || got[len(got)-1] != swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("states %v, want ending at RUNNING", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("states %v move backwards or repeat", got)
		}
	}
	if err := ex.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	st = rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_COMPLETE)
	if st.GetErr() != "" || st.GetExitCode() != 0 || st.GetTimestamp() == 0 {
		t.Fatalf("complete status %v", st)
	}
}

func TestExitNonZeroFailed(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := ex.Exit("t1", 3); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED)
	if st.GetExitCode() != 3 || st.GetErr() != "task: non-zero exit (3)" {
		t.Fatalf("failed status %v", st)
	}
	// The container stays (for inspection) until the task is removed.
	if ex.Count() != 1 || ex.Running() != 0 {
		t.Fatalf("count %d running %d", ex.Count(), ex.Running())
	}
}

func TestCrashOnStartFailed(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.ExitOnStart("img:crash", 1)
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:crash")}); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED)
	if st.GetExitCode() != 1 {
		t.Fatalf("status %v", st)
	}
}

func TestPrepareFailRejected(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.FailPrepare("missing:v9", errors.New("pull access denied for missing, repository does not exist"))
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "missing:v9")}); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_REJECTED)
	if !strings.Contains(st.GetErr(), "pull access denied") {
		t.Fatalf("err %q lacks the engine's message", st.GetErr())
	}
	if ex.Created() != 0 {
		t.Fatalf("created %d containers", ex.Created())
	}
}

func TestDesiredShutdown(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	t1 := task("t1", 1, "img:v1")
	if err := w.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	upd := withStatus(withDesired(t1, swarmpb.TaskState_TASK_STATE_SHUTDOWN), swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Update(ctx, []*swarmpb.Task{upd}, nil); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	if info, ok := ex.Container("t1"); !ok || info.Running {
		t.Fatalf("container after shutdown: %+v ok=%v", info, ok)
	}
	// Removing it later removes the container.
	if err := w.Update(ctx, nil, []string{"t1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "container removed", func() bool { return ex.Count() == 0 })
}

func TestShutdownBeforeStart(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	t1 := withDesired(task("t1", 1, "img:v1"), swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	if err := w.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	if ex.Created() != 0 {
		t.Fatal("a task never meant to run got a container")
	}
}

func TestRemoved(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1"), task("t2", 2, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	rec.waitState(t, "t2", swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Update(ctx, nil, []string{"t1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t1 removed", func() bool { _, ok := ex.Container("t1"); return !ok })
	if _, ok := ex.Container("t2"); !ok || ex.Running() != 1 {
		t.Fatal("t2 was disturbed")
	}
	// A full Assign without t2 removes it too.
	if err := w.Assign(ctx, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t2 removed", func() bool { return ex.Count() == 0 })
}

func TestAssignIdempotent(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	tasks := []*swarmpb.Task{task("t1", 1, "img:v1")}
	for i := 0; i < 3; i++ {
		if err := w.Assign(ctx, tasks); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Assign(ctx, []*swarmpb.Task{withStatus(tasks[0], swarmpb.TaskState_TASK_STATE_RUNNING)}); err != nil {
		t.Fatal(err)
	}
	if ex.Created() != 1 || ex.Starts("t1") != 1 {
		t.Fatalf("created %d, starts %d", ex.Created(), ex.Starts("t1"))
	}
}

func TestAdoptionAfterRestart(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w1 := New(ex, rec, testLog())
	tasks := []*swarmpb.Task{
		task("run", 1, "img:v1"),  // keeps running: adopted
		task("exit", 2, "img:v1"), // exits while no agent watches
		task("gone", 3, "img:v1"), // deleted while no agent watches
	}
	if err := w1.Assign(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		rec.waitState(t, tk.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING)
	}
	w1.Close()
	if ex.Running() != 3 {
		t.Fatalf("Close must leave containers running, %d running", ex.Running())
	}
	if err := ex.Exit("exit", 7); err != nil {
		t.Fatal(err)
	}

	// The restarted agent gets the tasks as the store has them: RUNNING.
	rec2 := newRecorder()
	w2 := newWorker(t, ex, rec2)
	assigned := []*swarmpb.Task{
		withStatus(tasks[0], swarmpb.TaskState_TASK_STATE_RUNNING),
		withStatus(tasks[1], swarmpb.TaskState_TASK_STATE_RUNNING),
		task("new", 4, "img:v1"),
	}
	if err := w2.Assign(ctx, assigned); err != nil {
		t.Fatal(err)
	}
	st := rec2.waitState(t, "run", swarmpb.TaskState_TASK_STATE_RUNNING)
	info, _ := ex.Container("run")
	if st.GetContainerId() != info.ID {
		t.Fatalf("adopted status %v, container %v", st, info)
	}
	st = rec2.waitState(t, "exit", swarmpb.TaskState_TASK_STATE_FAILED)
	if st.GetExitCode() != 7 {
		t.Fatalf("exited-while-away status %v", st)
	}
	rec2.waitState(t, "new", swarmpb.TaskState_TASK_STATE_RUNNING)
	eventually(t, "orphan removed", func() bool { _, ok := ex.Container("gone"); return !ok })

	if ex.Starts("run") != 1 {
		t.Fatalf("adopted container restarted: %d starts", ex.Starts("run"))
	}
	if ex.Created() != 4 || ex.Count() != 3 {
		t.Fatalf("created %d (want 4), exist %d (want 3)", ex.Created(), ex.Count())
	}
	// The adopted container is supervised: its exit is reported.
	if err := ex.Exit("run", 0); err != nil {
		t.Fatal(err)
	}
	rec2.waitState(t, "run", swarmpb.TaskState_TASK_STATE_COMPLETE)
}

func TestVanishedContainerFails(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	t1 := withStatus(task("t1", 1, "img:v1"), swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED)
	if !strings.Contains(st.GetErr(), "vanished") || ex.Created() != 0 {
		t.Fatalf("status %v, created %d", st, ex.Created())
	}
}

func TestReportRetriedLatestWins(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	rec.failNext(3)
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := ex.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_COMPLETE)
	// Checked on cleanup too; here: nothing before RUNNING was delivered
	// after it, whatever was skipped while the reporter failed.
	rec.checkMonotonic(t)
}

func TestDroppedReportResentOnResync(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := New(ex, rec, testLog(), WithBackoff(time.Millisecond, time.Millisecond), WithMaxReportAttempts(1))
	t.Cleanup(w.Close)
	t1 := task("t1", 1, "img:v1")
	if err := w.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	rec.failNext(1) // the COMPLETE report is lost and given up
	if err := ex.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lost report", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.fail == 0
	})
	// The dispatcher still believes RUNNING and says so: we resend.
	if err := w.Update(ctx, []*swarmpb.Task{withStatus(t1, swarmpb.TaskState_TASK_STATE_RUNNING)}, nil); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_COMPLETE)
}

func TestEngineDownRejectsThenRecovers(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.SetEngineError(errors.New("Cannot connect to the Docker daemon"))
	w := newWorker(t, ex, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err == nil {
		t.Fatal("Assign should surface the listing error")
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_REJECTED)
	if !strings.Contains(st.GetErr(), "Cannot connect") {
		t.Fatalf("err %q", st.GetErr())
	}
	if _, err := ex.Describe(ctx); err == nil {
		t.Fatal("Describe should fail while the engine is down")
	}
	ex.SetEngineError(nil)
	if err := w.Update(ctx, []*swarmpb.Task{task("t2", 2, "img:v1")}, nil); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t2", swarmpb.TaskState_TASK_STATE_RUNNING)
}

func TestCloseLeavesContainers(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := New(ex, rec, testLog())
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	w.Close()
	if ex.Running() != 1 {
		t.Fatal("Close stopped the container")
	}
	if err := w.Assign(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Assign after Close: %v", err)
	}
}

func TestManyTasksConcurrent(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	var tasks []*swarmpb.Task
	for i := 1; i <= 50; i++ {
		tasks = append(tasks, task(fmt.Sprintf("t%02d", i), uint64(i), "img:v1"))
	}
	if err := w.Assign(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, tk := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.Update(ctx, []*swarmpb.Task{withDesired(tk, swarmpb.TaskState_TASK_STATE_SHUTDOWN)}, nil)
		}()
	}
	wg.Wait()
	for _, tk := range tasks {
		rec.waitState(t, tk.GetId(), swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	}
	if ex.Running() != 0 {
		t.Fatalf("%d still running", ex.Running())
	}
}
