package worker

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// withHealthInterval shortens the health polling interval for tests.
func withHealthInterval(d time.Duration) Option {
	return func(w *Worker) { w.healthInterval = d }
}

func withPorts(t *swarmpb.Task, ports ...*swarmpb.PortConfig) *swarmpb.Task {
	c := proto.Clone(t).(*swarmpb.Task)
	c.Spec.Ports = ports
	return c
}

func ingress(target, published uint32) *swarmpb.PortConfig {
	return &swarmpb.PortConfig{Protocol: "tcp", TargetPort: target, PublishedPort: published, PublishMode: "ingress"}
}

func checkPorts(t *testing.T, got []*swarmpb.PortBinding, want ...*swarmpb.PortBinding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("ports %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("ports %v, want %v", got, want)
		}
	}
}

func TestRunningReportsPorts(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec)
	t1 := withPorts(task("t1", 1, "img:v1"), ingress(80, 8080),
		&swarmpb.PortConfig{Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: "host"})
	t2 := task("t2", 2, "img:v1") // no ports
	if err := w.Assign(ctx, []*swarmpb.Task{t1, t2}); err != nil {
		t.Fatal(err)
	}
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	checkPorts(t, st.GetPorts(),
		&swarmpb.PortBinding{Protocol: "tcp", TargetPort: 80, HostIp: "0.0.0.0", HostPort: fake.FirstHostPort, PublishMode: "ingress"}, // unspecified: the manager reads it as the node's own address
		&swarmpb.PortBinding{Protocol: "udp", TargetPort: 53, HostIp: "0.0.0.0", HostPort: 5353, PublishMode: "host"})
	if st := rec.waitState(t, "t2", swarmpb.TaskState_TASK_STATE_RUNNING); len(st.GetPorts()) != 0 {
		t.Fatalf("task without ports reported %v", st.GetPorts())
	}
	// Earlier states carry no ports.
	rec.mu.Lock()
	for _, s := range rec.hist["t1"][:len(rec.hist["t1"])-1] {
		if len(s.GetPorts()) != 0 {
			t.Errorf("%v status carries ports", s.GetState())
		}
	}
	rec.mu.Unlock()
}

func TestAdoptedRunningReportsPorts(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w1 := New(ex, rec, testLog())
	t1 := withPorts(task("t1", 1, "img:v1"), ingress(80, 8080))
	if err := w1.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	first := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	w1.Close()

	rec2 := newRecorder()
	w2 := newWorker(t, ex, rec2)
	if err := w2.Assign(ctx, []*swarmpb.Task{withStatus(t1, swarmpb.TaskState_TASK_STATE_RUNNING)}); err != nil {
		t.Fatal(err)
	}
	st := rec2.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	checkPorts(t, st.GetPorts(), first.GetPorts()...)
	if len(st.GetPorts()) != 1 || ex.Starts("t1") != 1 {
		t.Fatalf("adopted status %v, starts %d", st, ex.Starts("t1"))
	}
}

func TestHealthGatesRunning(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.SetHealth("t1", exec.HealthStarting)
	w := newWorker(t, ex, rec, withHealthInterval(2*time.Millisecond))
	if err := w.Assign(ctx, []*swarmpb.Task{withPorts(task("t1", 1, "img:v1"), ingress(80, 8080))}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_STARTING)
	eventually(t, "several health checks", func() bool { return ex.HealthChecks("t1") >= 5 })
	if st := rec.last("t1"); st.GetState() != swarmpb.TaskState_TASK_STATE_STARTING ||
		st.GetMessage() != "waiting for the container to become healthy" || st.GetContainerId() == "" {
		t.Fatalf("while starting: %v", st)
	}

	ex.SetHealth("t1", exec.HealthHealthy)
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	if len(st.GetPorts()) != 1 || st.GetPorts()[0].GetHostPort() != fake.FirstHostPort {
		t.Fatalf("running status %v", st)
	}

	// Unhealthy after RUNNING: stopped and FAILED.
	ex.SetHealth("t1", exec.HealthUnhealthy)
	st = rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED)
	if st.GetErr() != "task: container unhealthy" {
		t.Fatalf("failed status %v", st)
	}
	if info, ok := ex.Container("t1"); !ok || info.Running {
		t.Fatalf("unhealthy container %+v (exists %v) still running", info, ok)
	}
}

func TestUnhealthyBeforeRunningFails(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.SetHealth("t1", exec.HealthStarting)
	w := newWorker(t, ex, rec, withHealthInterval(2*time.Millisecond))
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "waiting for health", func() bool {
		return rec.last("t1").GetMessage() == "waiting for the container to become healthy"
	})
	ex.SetHealth("t1", exec.HealthUnhealthy)
	st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED)
	if st.GetErr() != "task: container unhealthy" || ex.Running() != 0 {
		t.Fatalf("status %v, %d running", st, ex.Running())
	}
	for _, s := range rec.states("t1") {
		if s == swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("an unhealthy task was reported RUNNING: %v", rec.states("t1"))
		}
	}
}

func TestNoHealthcheckNoPolling(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec, withHealthInterval(time.Millisecond))
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	// Wait for an event that needs the runner's loop: the exit.
	if err := ex.Exit("t1", 0); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_COMPLETE)
	if n := ex.HealthChecks("t1"); n != 1 {
		t.Fatalf("%d health checks for a container without healthcheck, want 1", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, st := range rec.hist["t1"] {
		if st.GetMessage() == "waiting for the container to become healthy" {
			t.Error("a task without healthcheck waited for health")
		}
	}
}

// A container that exits while its health is still starting reports its
// exit.
func TestExitWhileHealthStarting(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	ex.SetHealth("t1", exec.HealthStarting)
	w := newWorker(t, ex, rec, withHealthInterval(time.Hour))
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "waiting for health", func() bool {
		return rec.last("t1").GetMessage() == "waiting for the container to become healthy"
	})
	if err := ex.Exit("t1", 2); err != nil {
		t.Fatal(err)
	}
	if st := rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_FAILED); st.GetExitCode() != 2 {
		t.Fatalf("status %v", st)
	}
}

func TestDrainDelayBeforeStop(t *testing.T) {
	const drain = 150 * time.Millisecond
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec, WithDrainDelay(drain))
	t1 := withPorts(task("t1", 1, "img:v1"), ingress(80, 8080))
	t2 := withPorts(task("t2", 2, "img:v1"), ingress(80, 8080))
	if err := w.Assign(ctx, []*swarmpb.Task{t1, t2}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	rec.waitState(t, "t2", swarmpb.TaskState_TASK_STATE_RUNNING)

	// Desired state past RUNNING.
	start := time.Now()
	upd := withStatus(withDesired(t1, swarmpb.TaskState_TASK_STATE_SHUTDOWN), swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Update(ctx, []*swarmpb.Task{upd}, nil); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	if d := time.Since(start); d < drain {
		t.Fatalf("stopped %v after the request, before the %v drain delay", d, drain)
	}
	if info, _ := ex.Container("t1"); info.Running {
		t.Fatal("still running after SHUTDOWN")
	}

	// Removal.
	start = time.Now()
	if err := w.Update(ctx, nil, []string{"t2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t2 removed", func() bool { _, ok := ex.Container("t2"); return !ok })
	if d := time.Since(start); d < drain {
		t.Fatalf("removed %v after the request, before the %v drain delay", d, drain)
	}
	// t1, already stopped, is removed without a second drain: nothing
	// to check on timing, only that it goes.
	if err := w.Update(ctx, nil, []string{"t1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t1 removed", func() bool { return ex.Count() == 0 })
}

func TestNoDrainWithoutIngressPorts(t *testing.T) {
	// A drain delay far longer than the test's timeout: any wait fails it.
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec, WithDrainDelay(time.Hour))
	t1 := task("t1", 1, "img:v1")
	t2 := withPorts(task("t2", 2, "img:v1"), &swarmpb.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "host"})
	t3 := withPorts(task("t3", 3, "img:v1"), ingress(80, 8080))
	if err := w.Assign(ctx, []*swarmpb.Task{t1, t2, t3}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t1", "t2"} {
		rec.waitState(t, id, swarmpb.TaskState_TASK_STATE_RUNNING)
	}
	upd := withStatus(withDesired(t1, swarmpb.TaskState_TASK_STATE_SHUTDOWN), swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Update(ctx, []*swarmpb.Task{upd}, []string{"t2"}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	eventually(t, "t2 removed", func() bool { _, ok := ex.Container("t2"); return !ok })

	// A task with ingress ports stopped before it ran is not drained.
	rec.waitState(t, "t3", swarmpb.TaskState_TASK_STATE_RUNNING)
	t4 := withDesired(withPorts(task("t4", 4, "img:v1"), ingress(80, 8080)), swarmpb.TaskState_TASK_STATE_SHUTDOWN)
	if err := w.Update(ctx, []*swarmpb.Task{t4}, nil); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t4", swarmpb.TaskState_TASK_STATE_SHUTDOWN)
}

func TestDrainCancelledByClose(t *testing.T) {
	ex, rec := fake.New("node1"), newRecorder()
	w := newWorker(t, ex, rec, WithDrainDelay(time.Hour))
	t1 := withPorts(task("t1", 1, "img:v1"), ingress(80, 8080))
	if err := w.Assign(ctx, []*swarmpb.Task{t1}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	upd := withStatus(withDesired(t1, swarmpb.TaskState_TASK_STATE_SHUTDOWN), swarmpb.TaskState_TASK_STATE_RUNNING)
	if err := w.Update(ctx, []*swarmpb.Task{upd}, nil); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close blocked on the drain delay")
	}
	// Close leaves containers running, drained or not.
	if info, _ := ex.Container("t1"); !info.Running {
		t.Fatal("container stopped although the drain was cut short by Close")
	}
}
