package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestServiceLs(t *testing.T) {
	d := &fakeDaemon{services: []*swarmpb.ServiceInfo{
		{Service: &swarmpb.Service{Id: "zzzzzzzzzzzzzzzzzz", Spec: &swarmpb.ServiceSpec{Name: "web", Replicas: 7,
			Container: &swarmpb.ContainerSpec{Image: "nginx:1.27"},
			Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8888, PublishMode: "ingress"}, {Protocol: "udp", TargetPort: 53, PublishedPort: 53}}}},
			Running: 5, Desired: 7},
		{Service: &swarmpb.Service{Id: "aaaaaaaaaaaaaaaaaa", Spec: &swarmpb.ServiceSpec{Name: "agent", Mode: swarmpb.ServiceMode_SERVICE_MODE_GLOBAL,
			Container: &swarmpb.ContainerSpec{Image: "agent"}}},
			Running: 3, Desired: 3},
	}}
	host := startFake(t, d)
	r := runCLI(host, "service", "ls")
	expectOK(t, r)
	want := `ID             NAME    MODE         REPLICAS   IMAGE        PORTS
aaaaaaaaaaaa   agent   global       3/3        agent        
zzzzzzzzzzzz   web     replicated   5/7        nginx:1.27   *:8888->80/tcp, *:53->53/udp
`
	if r.stdout != want {
		t.Fatalf("stdout:\n%q\nwant:\n%q", r.stdout, want)
	}
	r = runCLI(host, "service", "ls", "-q")
	expectOK(t, r)
	if r.stdout != "aaaaaaaaaaaa\nzzzzzzzzzzzz\n" {
		t.Fatalf("-q %q", r.stdout)
	}
	r = runCLI(host, "service", "ls", "--format", "{{.Name}}\t{{.Mode}} {{.Replicas}} {{.Ports}}")
	expectOK(t, r)
	if r.stdout != "agent\tglobal 3/3 \nweb\treplicated 5/7 *:8888->80/tcp, *:53->53/udp\n" {
		t.Fatalf("template %q", r.stdout)
	}
	r = runCLI(host, "service", "ls", "--format", "json")
	expectOK(t, r)
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.Split(r.stdout, "\n")[1]), &row); err != nil {
		t.Fatal(err)
	}
	if row["ID"] != "zzzzzzzzzzzz" || row["Name"] != "web" || row["Replicas"] != "5/7" || row["Image"] != "nginx:1.27" || row["Mode"] != "replicated" {
		t.Fatalf("json row %v", row)
	}
}

func psTasks() []*swarmpb.Task {
	at := func(d time.Duration) int64 { return testNow.Add(-d).UnixNano() }
	mk := func(id string, slot uint64, node string, desired, state swarmpb.TaskState, ts time.Duration, errText string) *swarmpb.Task {
		return &swarmpb.Task{
			Id: id, ServiceId: "svc1", ServiceName: "web", Slot: slot, NodeId: node, DesiredState: desired,
			Meta:   &swarmpb.Meta{CreatedAt: at(ts)},
			Status: &swarmpb.TaskStatus{State: state, Timestamp: at(ts), Err: errText},
			Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "nginx"},
				Ports: []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "host"}}},
		}
	}
	running, shutdown := swarmpb.TaskState_TASK_STATE_RUNNING, swarmpb.TaskState_TASK_STATE_SHUTDOWN
	return []*swarmpb.Task{
		mk("task2aaaaaaaaaaaaaaa", 2, "n2", running, running, 5*time.Second, ""),
		mk("task1oldaaaaaaaaaaaa", 1, "n1", shutdown, swarmpb.TaskState_TASK_STATE_FAILED, 2*time.Minute, "task: non-zero exit (137): container killed"),
		mk("task1newaaaaaaaaaaaa", 1, "n1", running, running, 90*time.Second, ""),
	}
}

func TestServicePs(t *testing.T) {
	d := &fakeDaemon{tasks: func(int) []*swarmpb.Task { return psTasks() }, nodeNames: map[string]string{"n1": "manager1", "n2": "worker1"}}
	host := startFake(t, d)
	r := runCLI(host, "service", "ps", "web")
	expectOK(t, r)
	want := `ID             NAME        IMAGE   NODE       DESIRED STATE   CURRENT STATE                ERROR                              PORTS
task1newaaaa   web.1       nginx   manager1   Running         Running about a minute ago                                      *:8080->80/tcp
task1oldaaaa    \_ web.1   nginx   manager1   Shutdown        Failed 2 minutes ago         "task: non-zero exit (137): ..."   *:8080->80/tcp
task2aaaaaaa   web.2       nginx   worker1    Running         Running 5 seconds ago                                           *:8080->80/tcp
`
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if reqs := d.callsTo("ListTasks"); len(reqs) != 1 || reqs[0].(*swarmpb.ListTasksRequest).GetServices()[0] != "web" {
		t.Fatalf("requests %v", reqs)
	}

	r = runCLI(host, "service", "ps", "--no-trunc", "--filter", "desired-state=shutdown", "web")
	expectOK(t, r)
	if !strings.Contains(r.stdout, "task1oldaaaaaaaaaaaa   web.1") || !strings.Contains(r.stdout, `"task: non-zero exit (137): container killed"`) ||
		strings.Contains(r.stdout, "task2") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}

	r = runCLI(host, "service", "ps", "-q", "--filter", "desired-state=running", "web")
	expectOK(t, r)
	if r.stdout != "task1newaaaa\ntask2aaaaaaa\n" {
		t.Fatalf("-q %q", r.stdout)
	}

	r = runCLI(host, "service", "ps", "--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}", "web")
	expectOK(t, r)
	if !strings.HasPrefix(r.stdout, "web.1 manager1 Running Running about a minute ago \nweb.1 manager1 Shutdown Failed 2 minutes ago \"task") {
		t.Fatalf("template %q", r.stdout)
	}

	r = runCLI(host, "service", "ps", "--format", "json", "web")
	expectOK(t, r)
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.Split(r.stdout, "\n")[0]), &row); err != nil {
		t.Fatal(err)
	}
	if row["ID"] != "task1newaaaa" || row["Ports"] != "*:8080->80/tcp" || len(row) != 8 {
		t.Fatalf("json row %v", row)
	}

	expectError(t, runCLI(host, "service", "ps", "--filter", "colour=red", "web"), `unknown --filter "colour" for service ps: the filters are desired-state, id, name, node`)
}

func TestServicePsGlobalNames(t *testing.T) {
	ts := psTasks()[:1]
	ts[0].Slot = 0
	d := &fakeDaemon{tasks: func(int) []*swarmpb.Task { return ts }, nodeNames: map[string]string{"n2": "worker1"}}
	host := startFake(t, d)
	r := runCLI(host, "service", "ps", "--format", "{{.Name}}", "web")
	expectOK(t, r)
	if r.stdout != "web.n2\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestServiceInspectAndRm(t *testing.T) {
	d := &fakeDaemon{created: &swarmpb.Service{Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 3},
		Spec: &swarmpb.ServiceSpec{Name: "web", Replicas: 2, Container: &swarmpb.ContainerSpec{Image: "nginx"}}}}
	host := startFake(t, d)
	r := runCLI(host, "service", "inspect", "web")
	expectOK(t, r)
	var svcs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &svcs); err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0]["id"] != "svcid0123456789" {
		t.Fatalf("inspect %v", svcs)
	}
	r = runCLI(host, "service", "inspect", "--pretty", "web")
	expectOK(t, r)
	if !strings.Contains(r.stdout, "Name:") || !strings.Contains(r.stdout, "Replicas:") || !strings.Contains(r.stdout, "nginx") {
		t.Fatalf("pretty:\n%s", r.stdout)
	}
	r = runCLI(host, "service", "rm", "web", "api")
	expectOK(t, r)
	if r.stdout != "web\napi\n" || len(d.callsTo("RemoveService")) != 2 {
		t.Fatalf("rm %q", r.stdout)
	}
}

func TestServicePsShowsUpdateStatus(t *testing.T) {
	d := &fakeDaemon{tasks: func(int) []*swarmpb.Task { return psTasks() }, nodeNames: map[string]string{"n1": "manager1", "n2": "worker1"},
		created: &swarmpb.Service{Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 3},
			Spec:         &swarmpb.ServiceSpec{Name: "web", Replicas: 2, Container: &swarmpb.ContainerSpec{Image: "nginx"}},
			UpdateStatus: &swarmpb.UpdateStatus{State: "paused", Message: "update paused due to failure or early termination of task x"}}}
	host := startFake(t, d)
	r := runCLI(host, "service", "ps", "web")
	expectOK(t, r)
	if !strings.HasSuffix(r.stdout, "\nweb update status: paused (update paused due to failure or early termination of task x)\n") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
}
