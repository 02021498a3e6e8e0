package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// eventsFake serves WatchEvents from scripted streams: the n-th call gets
// streams[n], then ends with ends[n] (nil: the end of the stream).
type eventsFake struct {
	*fakeDaemon
	mu      sync.Mutex
	streams [][]*swarmpb.WatchEventsMessage
	ends    []error
	reqs    []*swarmpb.WatchEventsRequest
}

func (f *eventsFake) WatchEvents(r *swarmpb.WatchEventsRequest, stream grpc.ServerStreamingServer[swarmpb.WatchEventsMessage]) error {
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	if n >= len(f.streams) {
		return status.Error(codes.OutOfRange, "events from that far back are no longer kept by this manager")
	}
	for _, m := range f.streams[n] {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return f.ends[n]
}

func clusterEvent(index uint64, seq uint32, typ, action, id, name string, attrs map[string]string) *swarmpb.ClusterEvent {
	return &swarmpb.ClusterEvent{Index: index, Seq: seq, Time: testNow.Add(time.Duration(index) * time.Second).UnixNano(),
		Type: typ, Action: action, Id: id, Name: name, Attributes: attrs}
}

func TestEventsPrintsAndResumesAfterTheLastPosition(t *testing.T) {
	f := &eventsFake{fakeDaemon: &fakeDaemon{}}
	f.streams = [][]*swarmpb.WatchEventsMessage{
		{
			{Start: true, Index: 10, Seq: 4},
			{Events: []*swarmpb.ClusterEvent{
				clusterEvent(11, 0, "service", "create", "svc1", "web", map[string]string{"image": "nginx"}),
				clusterEvent(12, 0, "task", "update", "t1", "web.1", map[string]string{"state.old": "pending", "state.new": "running\x1b[31m"}),
			}},
		},
		{
			{Start: true, Index: 12, Seq: 0},
			{Events: []*swarmpb.ClusterEvent{clusterEvent(13, 0, "node", "update", "n1", "host1", map[string]string{"state.old": "ready", "state.new": "down"})}},
		},
	}
	// The first stream breaks as a stopping manager does; the second ends.
	f.ends = []error{status.Error(codes.Unavailable, "this manager stopped serving events"), nil}
	host := serveFake(t, f, f)
	r := runCLI(host, "events", "--filter", "type=service", "--filter", "type=task", "--filter", "type=node")
	expectOK(t, r)
	want := `2025-06-01T12:00:11Z service create svc1 (name=web, image=nginx) index=11
2025-06-01T12:00:12Z task update t1 (name=web.1, state.new=running\x1b[31m, state.old=pending) index=12
2025-06-01T12:00:13Z node update n1 (name=host1, state.new=down, state.old=ready) index=13
`
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "resuming after index 12") {
		t.Fatalf("stderr %q", r.stderr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 2 {
		t.Fatalf("%d calls", len(f.reqs))
	}
	first, second := f.reqs[0], f.reqs[1]
	if first.AfterIndex != nil || strings.Join(first.Filters, ",") != "type=service,type=task,type=node" {
		t.Fatalf("first request %v", first)
	}
	if second.GetAfterIndex() != 12 || second.GetAfterSeq() != 0 || strings.Join(second.Filters, ",") != strings.Join(first.Filters, ",") {
		t.Fatalf("resume request %v", second)
	}
}

func TestEventsFormatsSinceUntilAndErrors(t *testing.T) {
	f := &eventsFake{fakeDaemon: &fakeDaemon{}}
	f.streams = [][]*swarmpb.WatchEventsMessage{
		{{Events: []*swarmpb.ClusterEvent{clusterEvent(5, 1, "secret", "remove", "s1", "db-pass", nil)}}},
		{{Events: []*swarmpb.ClusterEvent{clusterEvent(6, 0, "service", "update", "svc1", "web", map[string]string{"replicas.old": "1", "replicas.new": "3"})}}},
	}
	f.ends = []error{nil, nil}
	host := serveFake(t, f, f)
	r := runCLI(host, "events", "--since", "10m", "--until", "2025-06-01T12:05:00Z", "--format", "{{.Index}}.{{.Seq}} {{.Type}} {{.Action}} {{.Name}}")
	expectOK(t, r)
	if r.stdout != "5.1 secret remove db-pass\n" {
		t.Fatalf("template %q", r.stdout)
	}
	r = runCLI(host, "events", "--since", "1748779200", "--format", "json")
	expectOK(t, r)
	var row map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &row); err != nil {
		t.Fatalf("%q: %v", r.stdout, err)
	}
	if row["Type"] != "service" || row["Attributes"].(map[string]any)["replicas.new"] != "3" || row["Index"].(float64) != 6 {
		t.Fatalf("json %v", row)
	}
	f.mu.Lock()
	since := f.reqs[0].GetSince()
	until := f.reqs[0].GetUntil()
	f.mu.Unlock()
	if since != testNow.Add(-10*time.Minute).UnixNano() || until != testNow.Add(5*time.Minute).UnixNano() {
		t.Fatalf("since %d until %d", since, until)
	}
	// The manager's refusal is the error, on one line.
	expectError(t, runCLI(host, "events", "--since", "1h"), "events from that far back are no longer kept by this manager")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--filter", "colour=red"}, `unknown filter "colour": the filters are type, event, id, name, service, node`},
		{[]string{"--filter", "type=volume"}, "invalid filter type=volume: the type is one of cluster, node, service, task, network, secret, config"},
		{[]string{"--since", "yesterday"}, `invalid --since "yesterday": use an RFC 3339 time (2006-01-02T15:04:05Z), Unix seconds, or a duration such as 10m`},
		{[]string{"--since", "1m", "--until", "2m"}, "invalid --until 2m: it is before --since"},
		{[]string{"--format", "{{.Nope"}, "invalid --format template: template: format:1: unclosed action"},
	} {
		expectError(t, runCLI(host, append([]string{"events"}, tc.args...)...), tc.want)
	}
}

func TestVersionAndInfo(t *testing.T) {
	d := &fakeDaemon{
		info: &swarmpb.InfoResponse{NodeId: "n1", ClusterId: "c1", Role: swarmpb.NodeRole_NODE_ROLE_MANAGER, State: "active", Addr: "10.0.0.1:2377",
			Version: "v1.2.3", GitCommit: "abc", GoVersion: "go1.99", ApiVersion: "v1", RaftIndex: 42, RaftTerm: 3, RaftLeader: "10.0.0.1:2377"},
		nodes:    testNodes(),
		tasks:    func(int) []*swarmpb.Task { return psTasks() },
		services: []*swarmpb.ServiceInfo{{Service: &swarmpb.Service{Id: "s1", Spec: &swarmpb.ServiceSpec{Name: "web"}}}},
	}
	for _, n := range d.nodes {
		n.Node.Description.DaemonVersion = "v1.2.3 (abc)"
	}
	f := &clusterFake{fakeDaemon: d}
	host := serveFake(t, d, f)

	r := runCLI(host, "version")
	expectOK(t, r)
	for _, want := range []string{"Client:\n Version:", "Daemon (this node):\n Version:       v1.2.3", " API version:   v1",
		"HOSTNAME   ID   ROLE     STATUS    VERSION", "manager1   n1   worker   Ready     v1.2.3 (abc)"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("version output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(host, "version", "--format", "{{.Daemon.Version}} {{.Client.APIVersion}} {{len .Nodes}}")
	expectOK(t, r)
	if r.stdout != "v1.2.3 v1 3\n" {
		t.Fatalf("version template %q", r.stdout)
	}

	r = runCLI(host, "info")
	expectOK(t, r)
	// Compare words, not the columns' padding.
	var lines []string
	for _, l := range strings.Split(r.stdout, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{"Node:\nID: n1\nState: active\nAddress: 10.0.0.1:2377\nRole: manager\nCluster ID: c1\nVersion: v1.2.3",
		"Raft:\nIndex: 42\nTerm: 3\nLeader: 10.0.0.1:2377\nAutolock: true\nNodes: 3 (1 ready)\nServices: 1\nTasks: 3 (2 running)",
		"Managers: 2\nHOSTNAME ID ADDRESS MANAGER STATUS\nmanager1 n1 10.0.0.9:2377 Leader\nmanager2 n2 10.0.0.9:2377 Unreachable"} {
		if !strings.Contains(got, want) {
			t.Fatalf("info output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(host, "info", "--format", "json")
	expectOK(t, r)
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep["RaftIndex"].(float64) != 42 || rep["Autolock"] != true || len(rep["Managers"].([]any)) != 2 {
		t.Fatalf("info json %v", rep)
	}

	// A daemon that does not answer: the client's version, then the error.
	d.errs = map[string]string{"Info": "daemon is busy"}
	r = runCLI(host, "version")
	if r.code != 1 || !strings.Contains(r.stdout, "Client:") || r.stderr != "Error: daemon is busy\n" {
		t.Fatalf("version without a daemon: %+v", r)
	}
}

// clusterFake adds GetCluster to the shared fake.
type clusterFake struct{ *fakeDaemon }

func (f *clusterFake) GetCluster(_ context.Context, r *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	return &swarmpb.GetClusterResponse{Cluster: &swarmpb.ClusterInfo{Id: "c1", Name: "default", Settings: &swarmpb.ClusterSettings{Autolock: true}}}, nil
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "# bash completion V2 for swarmctl", "zsh": "#compdef swarmctl", "fish": "# fish completion for swarmctl"} {
		r := runCLI("unix:///nonexistent.sock", "completion", shell)
		expectOK(t, r)
		if !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "swarmctl") {
			t.Fatalf("%s: %.200q", shell, r.stdout)
		}
	}
	// The scripts call back into swarmctl's hidden __complete command.
	r := runCLI("unix:///nonexistent.sock", "__complete", "node", "")
	expectOK(t, r)
	if !strings.Contains(r.stdout, "ps\tList the tasks on nodes") {
		t.Fatalf("__complete node: %q", r.stdout)
	}
	expectError(t, runCLI("unix:///nonexistent.sock", "completion", "tcsh"), `unsupported shell "tcsh": use bash, zsh or fish`)
	expectError(t, runCLI("unix:///nonexistent.sock", "completion"), `"swarmctl completion" requires exactly 1 argument(s) (bash|zsh|fish), got 0`)
}

func TestListFilters(t *testing.T) {
	d := &fakeDaemon{info: &swarmpb.InfoResponse{NodeId: "n1"}, nodes: testNodes(),
		services: []*swarmpb.ServiceInfo{
			{Service: &swarmpb.Service{Id: "aaa111", Spec: &swarmpb.ServiceSpec{Name: "web", Labels: map[string]string{"tier": "front"}}}},
			{Service: &swarmpb.Service{Id: "bbb222", Spec: &swarmpb.ServiceSpec{Name: "agent", Mode: swarmpb.ServiceMode_SERVICE_MODE_GLOBAL}}},
		},
		tasks: func(int) []*swarmpb.Task { return psTasks() }, nodeNames: map[string]string{"n1": "manager1", "n2": "worker1"}}
	d.nodes[1].Node.Role = swarmpb.NodeRole_NODE_ROLE_MANAGER // n1
	d.nodes[2].Node.Spec.Labels = map[string]string{"zone": "b"}
	host := startFake(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "ls", "-q", "--filter", "role=manager"}, "n1\n"},
		{[]string{"node", "ls", "-q", "--filter", "name=manager"}, "n1\nn2\n"},
		{[]string{"node", "ls", "-q", "--filter", "label=zone=a", "--filter", "name=manager2"}, ""},
		{[]string{"node", "ls", "-q", "--filter", "node.label=zone=b"}, "n2\n"},
		{[]string{"node", "ls", "-q", "--filter", "id=n3", "--filter", "id=n1"}, "n1\nn3\n"},
		{[]string{"node", "ls", "-q", "--filter", "membership=pending"}, ""},
		{[]string{"service", "ls", "-q", "--filter", "mode=global"}, "bbb222\n"},
		{[]string{"service", "ls", "-q", "--filter", "label=tier"}, "aaa111\n"},
		{[]string{"service", "ls", "-q", "--filter", "name=we", "--filter", "id=aaa"}, "aaa111\n"},
		{[]string{"service", "ps", "-q", "--filter", "node=worker1", "web"}, "task2aaaaaaa\n"},
		{[]string{"service", "ps", "-q", "--filter", "name=web.1", "--filter", "desired-state=running", "web"}, "task1newaaaa\n"},
		{[]string{"service", "ps", "-q", "--filter", "id=task1old", "web"}, "task1oldaaaa\n"},
	} {
		r := runCLI(host, tc.args...)
		expectOK(t, r)
		if r.stdout != tc.want {
			t.Errorf("%v: %q, want %q", tc.args, r.stdout, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "ls", "--filter", "availability=drain"}, `unknown --filter "availability" for node ls: the filters are id, label, membership, name, node.label, role`},
		{[]string{"node", "ls", "--filter", "role=boss"}, "invalid --filter role=boss: the role is manager or worker"},
		{[]string{"service", "ls", "--filter", "image=nginx"}, `unknown --filter "image" for service ls: the filters are id, label, mode, name`},
		{[]string{"service", "ls", "--filter", "mode"}, `invalid --filter "mode" for service ls: use key=value with key one of id, label, mode, name`},
		{[]string{"service", "ps", "--filter", "desired-state=gone", "web"}, "invalid --filter desired-state=gone: the desired state is running, shutdown or accepted"},
	} {
		expectError(t, runCLI(host, tc.args...), tc.want)
	}
}

func TestNodePs(t *testing.T) {
	d := &fakeDaemon{info: &swarmpb.InfoResponse{NodeId: "n1"}, tasks: func(int) []*swarmpb.Task { return psTasks() },
		nodeNames: map[string]string{"n1": "manager1", "n2": "worker1"}}
	host := startFake(t, d)
	r := runCLI(host, "node", "ps", "--format", "{{.Name}} {{.Node}} {{.DesiredState}}")
	expectOK(t, r)
	if r.stdout != "web.1 manager1 Running\nweb.1 manager1 Shutdown\nweb.2 worker1 Running\n" {
		t.Fatalf("node ps: %q", r.stdout)
	}
	reqs := d.callsTo("ListTasks")
	if len(reqs) != 1 || reqs[0].(*swarmpb.ListTasksRequest).GetNode() != "n1" {
		t.Fatalf("default node: %v", reqs)
	}
	r = runCLI(host, "node", "ps", "-q", "worker1", "self")
	expectOK(t, r)
	reqs = d.callsTo("ListTasks")
	if len(reqs) != 3 || reqs[1].(*swarmpb.ListTasksRequest).GetNode() != "worker1" || reqs[2].(*swarmpb.ListTasksRequest).GetNode() != "n1" {
		t.Fatalf("named nodes: %v", reqs)
	}
	expectError(t, runCLI(host, "node", "ps", "--filter", "colour=red"), `unknown --filter "colour" for node ps: the filters are desired-state, id, name, node`)
}

func TestInspectFormat(t *testing.T) {
	_, host := nodeFake(t)
	r := runCLI(host, "node", "inspect", "--format", "{{.id}} {{.description.hostname}}", "n1", "n3")
	expectOK(t, r)
	if r.stdout != "n1 manager1\nn3 worker1\n" {
		t.Fatalf("template %q", r.stdout)
	}
	r = runCLI(host, "node", "inspect", "--format", "json", "n1")
	expectOK(t, r)
	var obj map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &obj); err != nil || obj["id"] != "n1" || obj["managerStatus"] != "Leader" {
		t.Fatalf("json %q: %v", r.stdout, err)
	}
	expectError(t, runCLI(host, "node", "inspect", "--pretty", "--format", "json", "n1"), "--pretty and --format cannot be combined")
}
