package cli

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func task(id string, slot uint64, version uint64, state swarmpb.TaskState, created int64, errText string) *swarmpb.Task {
	return &swarmpb.Task{
		Id: id, ServiceId: "svcid0123456789", ServiceName: "web", Slot: slot, SpecVersion: version,
		NodeId: "n1", DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Meta:   &swarmpb.Meta{CreatedAt: created},
		Status: &swarmpb.TaskStatus{State: state, Err: errText},
		Spec:   &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "nginx"}},
	}
}

func TestServiceCreateWaitsForConvergence(t *testing.T) {
	run := swarmpb.TaskState_TASK_STATE_RUNNING
	d := &fakeDaemon{tasks: func(n int) []*swarmpb.Task {
		switch n {
		case 0:
			return nil
		case 1:
			return []*swarmpb.Task{
				task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_PENDING, 1, ""),
				task("t2", 2, 1, swarmpb.TaskState_TASK_STATE_PREPARING, 1, ""),
			}
		case 2:
			return []*swarmpb.Task{task("t1", 1, 1, run, 1, ""), task("t2", 2, 1, swarmpb.TaskState_TASK_STATE_PREPARING, 1, "")}
		default:
			return []*swarmpb.Task{
				task("t0", 2, 0, run, 0, ""), // an older spec version does not count
				task("t1", 1, 1, run, 1, ""),
				task("t2", 2, 1, run, 1, ""),
			}
		}
	}}
	host := startFake(t, d)
	r := runCLI(host, "service", "create", "--name", "web", "--replicas", "2", "nginx")
	expectOK(t, r)
	full := "[" + strings.Repeat("=", 50) + ">]"
	want := "svcid0123456789\n" +
		"overall progress: 0 out of 2 tasks\n" +
		"1/2:\n" +
		"2/2:\n" +
		"1/2: pending   [==============>                                    ]\n" +
		"2/2: preparing [===================================>               ]\n" +
		"overall progress: 1 out of 2 tasks\n" +
		"1/2: running   " + full + "\n" +
		"overall progress: 2 out of 2 tasks\n" +
		"2/2: running   " + full + "\n" +
		"verify: Service converged\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestServiceCreateWaitFailsWithTaskError(t *testing.T) {
	d := &fakeDaemon{tasks: func(n int) []*swarmpb.Task {
		ts := []*swarmpb.Task{task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_STARTING, 10, "")}
		for i := 0; i < n && i < 3; i++ {
			ts = append(ts, task("f"+string(rune('a'+i)), 1, 1, swarmpb.TaskState_TASK_STATE_FAILED, int64(i), "task: non-zero exit (1)"))
		}
		return ts
	}}
	host := startFake(t, d)
	r := runCLI(host, "service", "create", "--name", "web", "busybox", "false")
	expectError(t, r, "service web did not converge: task: non-zero exit (1)")
	if !strings.Contains(r.stdout, "1/1: starting  [") {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestServiceWaitFailsOnRejectedTask(t *testing.T) {
	d := &fakeDaemon{tasks: func(n int) []*swarmpb.Task {
		return []*swarmpb.Task{task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_REJECTED, 1, `No such image: nope:latest`)}
	}}
	host := startFake(t, d)
	expectError(t, runCLI(host, "service", "create", "--name", "web", "nope"), "service web did not converge: No such image: nope:latest")
}

func TestServiceWaitTimeout(t *testing.T) {
	d := &fakeDaemon{tasks: func(n int) []*swarmpb.Task {
		return []*swarmpb.Task{task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_PENDING, 1, "")}
	}}
	host := startFake(t, d)
	expectError(t, runCLI(host, "service", "create", "--name", "web", "--timeout", "20ms", "nginx"),
		"service web did not converge: timed out after 20ms with 0 out of 1 tasks running")
}

func TestServiceScaleWaitsOnTerminal(t *testing.T) {
	d := &fakeDaemon{
		created: &swarmpb.Service{Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 9}, SpecVersion: 1,
			Spec: &swarmpb.ServiceSpec{Name: "web", Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "nginx"}}},
		tasks: func(n int) []*swarmpb.Task {
			if n == 0 {
				return []*swarmpb.Task{task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_ASSIGNED, 1, "")}
			}
			return []*swarmpb.Task{task("t1", 1, 1, swarmpb.TaskState_TASK_STATE_RUNNING, 1, "")}
		},
	}
	host := startFake(t, d)
	yes := true
	r := runCLIOpts(options{terminal: &yes}, host, "service", "scale", "web=1")
	expectOK(t, r)
	if !strings.HasPrefix(r.stdout, "web scaled to 1\n\x1b[2Koverall progress: 0 out of 1 tasks\n") ||
		!strings.Contains(r.stdout, "\x1b[2A\x1b[2Koverall progress: 1 out of 1 tasks\n") ||
		!strings.HasSuffix(r.stdout, "verify: Service converged\n") {
		t.Fatalf("stdout %q", r.stdout)
	}
	reqs := d.callsTo("UpdateService")
	if len(reqs) != 1 {
		t.Fatalf("%d calls", len(reqs))
	}
	req := reqs[0].(*swarmpb.UpdateServiceRequest)
	if req.GetVersion() != 9 || req.GetSpec().GetReplicas() != 1 || req.GetSpec().GetContainer().GetImage() != "nginx" {
		t.Fatalf("request %v", req)
	}
	expectError(t, runCLI(host, "service", "scale", "web"), `invalid scale specifier "web": expected SERVICE=REPLICAS with REPLICAS >= 0`)
	expectError(t, runCLI(host, "service", "scale", "web=-1"), `invalid scale specifier "web=-1": expected SERVICE=REPLICAS with REPLICAS >= 0`)
}

func TestProgressBar(t *testing.T) {
	if got := progressBar(swarmpb.TaskState_TASK_STATE_RUNNING); got != strings.Repeat("=", 50)+">" {
		t.Fatalf("running bar %q", got)
	}
	if got := progressBar(swarmpb.TaskState_TASK_STATE_FAILED); len(got) != 51 || strings.TrimSpace(got) != "" {
		t.Fatalf("failed bar %q", got)
	}
}
