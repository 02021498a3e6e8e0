package scheduler

import (
	"errors"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestSpreadEvenly(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"), mkNode("c"))
	ds := mustSchedule(t, s, tasks("web", 7))
	if got, want := summary(ds), "a:3 b:2 c:2"; got != want {
		t.Fatalf("placement %s, want %s", got, want)
	}
	// Placed tasks are recorded: 2 more go to b and c.
	ds = mustSchedule(t, s, []*swarmpb.Task{mkTask("web.8", "web"), mkTask("web.9", "web")})
	if got, want := summary(ds), "b:1 c:1"; got != want {
		t.Fatalf("second batch %s, want %s", got, want)
	}
}

func TestPrefersFewerTasksOverall(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"), mkNode("c"))
	for i, n := range []string{"a", "a", "b"} {
		s.AddTask(mkTask("other."+string(rune('1'+i)), "other", onNode(n)))
	}
	ds := mustSchedule(t, s, tasks("web", 3))
	// c (0 tasks) first, then b (1), then a (2): one each since each then
	// has one task of web, overall counts break the ties.
	if ds[0].NodeID != "c" || ds[1].NodeID != "b" || ds[2].NodeID != "a" {
		t.Fatalf("order %v %v %v, want c b a", ds[0].NodeID, ds[1].NodeID, ds[2].NodeID)
	}
	// Same service count beats overall count.
	s = newWith(mkNode("a"), mkNode("b"))
	s.AddTask(mkTask("web.0", "web", onNode("a")))
	for i := 0; i < 5; i++ {
		s.AddTask(mkTask("db."+string(rune('0'+i)), "db", onNode("b")))
	}
	ds = mustSchedule(t, s, tasks("web", 1))
	if ds[0].NodeID != "b" {
		t.Fatalf("got %s, want b (fewer tasks of the service)", ds[0].NodeID)
	}
}

func TestConstraints(t *testing.T) {
	nodes := []*swarmpb.Node{
		mkNode("m1", withRole(swarmpb.NodeRole_NODE_ROLE_MANAGER), withLabels("zone", "east", "ssd", "true")),
		mkNode("w1", withLabels("zone", "west"), withPlatform("linux", "arm64")),
		mkNode("w2", withPlatform("windows", "x86_64")),
	}
	cases := []struct {
		constraint string
		want       string // nodes that get a task, in summary form
	}{
		{"node.id==w1", "w1:1"},
		{"node.id!=w1", "m1:1 w2:1"},
		{"node.hostname==host-w2", "w2:1"},
		{"node.hostname==HOST-W2", "w2:1"},
		{"node.hostname!=host-w2", "m1:1 w1:1"},
		{"node.role==manager", "m1:1"},
		{"node.role==MANAGER", "m1:1"},
		{"node.role!=manager", "w1:1 w2:1"},
		{"node.role==worker", "w1:1 w2:1"},
		{"node.platform.os==linux", "m1:1 w1:1"},
		{"node.platform.os==Windows", "w2:1"},
		{"node.platform.os!=linux", "w2:1"},
		{"node.platform.arch==arm64", "w1:1"},
		{"node.platform.arch==amd64", "m1:1 w2:1"}, // x86_64 is amd64
		{"node.platform.arch!=AMD64", "w1:1"},
		{"node.labels.zone==east", "m1:1"},
		{"node.labels.zone==East", ""},          // labels compare exactly
		{"node.labels.zone!=east", "w1:1 w2:1"}, // missing label is != anything
		{"node.labels.ssd==true", "m1:1"},
		{"node.labels.ssd!=true", "w1:1 w2:1"},
		{"NODE.LABELS.zone == west", "w1:1"},
		{"engine.labels.foo==bar", ""},
		{"engine.labels.foo!=bar", "m1:1 w1:1 w2:1"},
	}
	for _, tc := range cases {
		t.Run(tc.constraint, func(t *testing.T) {
			s := newWith(nodes...)
			// One task per node at most, to see every eligible node.
			ts := tasks("svc", 3, withConstraints(tc.constraint), withMaxPerNode(1))
			ds := mustSchedule(t, s, ts)
			if g := summary(filterPlaced(ds)); g != tc.want {
				t.Fatalf("placed on %q, want %q", g, tc.want)
			}
		})
	}
	// Several constraints are ANDed.
	s := newWith(nodes...)
	ds := mustSchedule(t, s, tasks("svc", 2, withConstraints("node.platform.os==linux", "node.role!=manager")))
	if got := summary(ds); got != "w1:2" {
		t.Fatalf("AND: %s", got)
	}
}

func filterPlaced(ds []Decision) []Decision {
	var out []Decision
	for _, d := range ds {
		if d.NodeID != "" {
			out = append(out, d)
		}
	}
	return out
}

func TestUnavailableNodesExcluded(t *testing.T) {
	cases := []struct {
		name   string
		opt    nodeOpt
		reason string
	}{
		{"drain", withAvailability(swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN), "no suitable node (1 node not available for new tasks)"},
		{"pause", withAvailability(swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE), "no suitable node (1 node not available for new tasks)"},
		{"down", withStatus(swarmpb.NodeStatus_NODE_STATUS_DOWN), "no suitable node (1 node not ready)"},
		{"unknown", withStatus(swarmpb.NodeStatus_NODE_STATUS_UNKNOWN), "no suitable node (1 node not ready)"},
		{"engine error", func(n *swarmpb.Node) { n.Description.EngineError = "cannot connect to docker" }, "no suitable node (1 node not ready)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newWith(mkNode("a"), mkNode("b", tc.opt))
			ds := mustSchedule(t, s, tasks("web", 3))
			if got := summary(ds); got != "a:3" {
				t.Fatalf("placement %s, want a:3", got)
			}
			s = newWith(mkNode("b", tc.opt))
			ds = mustSchedule(t, s, tasks("web", 1))
			if ds[0].Reason != tc.reason {
				t.Fatalf("reason %q, want %q", ds[0].Reason, tc.reason)
			}
			// Back to normal once the node is updated.
			s.UpsertNode(mkNode("b"))
			ds = mustSchedule(t, s, tasks("web", 1))
			if ds[0].NodeID != "b" {
				t.Fatalf("after recovery: %+v", ds[0])
			}
		})
	}
}

func TestResources(t *testing.T) {
	const gb = 1 << 30
	s := newWith(mkNode("a", withResources(2e9, 4*gb)), mkNode("b", withResources(1e9, 8*gb)))
	// Already running: 1 CPU on a.
	s.AddTask(mkTask("old.1", "old", onNode("a"), withReservation(1e9, gb)))
	ds := mustSchedule(t, s, tasks("web", 3, withReservation(5e8, 2*gb)))
	// a: 1 CPU / 3 GB left -> 1 task (memory); b: 1 CPU / 8 GB -> 2 tasks (CPU).
	if got := summary(ds); got != "a:1 b:2" {
		t.Fatalf("placement %s, want a:1 b:2", got)
	}
	// a: 0.5 CPU / 1 GB left, b: nothing left.
	ds = mustSchedule(t, s, tasks("more", 1, withReservation(5e8, 2*gb)))
	if want := "no suitable node (insufficient resources on 2 nodes)"; ds[0].Reason != want {
		t.Fatalf("reason %q, want %q", ds[0].Reason, want)
	}
	// Freeing the old task makes room again; RemoveTask is idempotent.
	s.RemoveTask(mkTask("old.1", "old"))
	s.RemoveTask(mkTask("old.1", "old"))
	ds = mustSchedule(t, s, tasks("more", 1, withReservation(5e8, 2*gb)))
	if ds[0].NodeID != "a" {
		t.Fatalf("after RemoveTask: %+v", ds[0])
	}
	if n := s.nodes["a"]; n.resCPU != 1e9 || n.resMem != 4*gb || n.total != 2 {
		t.Fatalf("books of a: cpu %d mem %d tasks %d", n.resCPU, n.resMem, n.total)
	}

	// The batch fills nodes and the rest get the reason.
	s = newWith(mkNode("a", withResources(1e9, gb)), mkNode("b", withResources(1e9, gb)))
	ds = mustSchedule(t, s, tasks("web", 5, withReservation(5e8, 0)))
	if got := summary(ds); got != "-:1 a:2 b:2" {
		t.Fatalf("placement %s", got)
	}
	if want := "no suitable node (insufficient resources on 2 nodes)"; ds[4].Reason != want {
		t.Fatalf("reason %q, want %q", ds[4].Reason, want)
	}

	// Zero/unknown resources accept only tasks without reservations.
	s = newWith(mkNode("z", func(n *swarmpb.Node) { n.Description.Resources = nil }))
	ds = mustSchedule(t, s, append(tasks("free", 2), tasks("paid", 1, withReservation(0, 1))...))
	if ds[0].NodeID != "z" || ds[1].NodeID != "z" || ds[2].NodeID != "" {
		t.Fatalf("zero-resource node: %+v", ds)
	}
}

func TestMaxReplicasPerNode(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"))
	s.AddTask(mkTask("web.0", "web", onNode("a"), withMaxPerNode(2)))
	ds := mustSchedule(t, s, tasks("web", 4, withMaxPerNode(2)))
	if got := summary(ds); got != "-:1 a:1 b:2" {
		t.Fatalf("placement %s", got)
	}
	if want := "no suitable node (max replicas per node limit exceed)"; ds[3].Reason != want {
		t.Fatalf("reason %q, want %q", ds[3].Reason, want)
	}
	// Another service is not limited by web's tasks.
	ds = mustSchedule(t, s, tasks("db", 2, withMaxPerNode(1)))
	if got := summary(ds); got != "a:1 b:1" {
		t.Fatalf("db placement %s", got)
	}
}

func TestHostPortConflict(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"), mkNode("c"))
	s.AddTask(mkTask("old.1", "old", onNode("a"), withHostPort("tcp", 8080)))
	// UDP 8080 and ingress-mode ports do not conflict.
	udp := mustSchedule(t, s, tasks("dns", 1, withHostPort("udp", 8080), withConstraints("node.id==a")))
	if udp[0].NodeID != "a" {
		t.Fatalf("udp 8080 should fit next to tcp 8080, got %+v", udp[0])
	}
	ds := mustSchedule(t, s, tasks("web", 3, withHostPort("", 8080)))
	if got := summary(ds); got != "-:1 b:1 c:1" {
		t.Fatalf("placement %s", got)
	}
	if want := "no suitable node (host-mode port already in use on 3 nodes)"; ds[2].Reason != want {
		t.Fatalf("reason %q, want %q", ds[2].Reason, want)
	}
	s.RemoveTask(mkTask("old.1", "old"))
	ds = mustSchedule(t, s, tasks("web2", 1, withHostPort("TCP", 8080)))
	if ds[0].NodeID != "a" {
		t.Fatalf("after freeing the port: %+v", ds[0])
	}
	// Ingress ports never conflict.
	ing := tasks("ing", 6)
	for _, tk := range ing {
		tk.Spec.Ports = []*swarmpb.PortConfig{{PublishedPort: 8080, PublishMode: "ingress"}}
	}
	if got := summary(mustSchedule(t, s, ing)); got != "a:2 b:2 c:2" {
		t.Fatalf("ingress placement %s", got)
	}
}

func TestSpreadOverLabel(t *testing.T) {
	s := newWith(
		mkNode("a1", withLabels("zone", "a")),
		mkNode("a2", withLabels("zone", "a")),
		mkNode("a3", withLabels("zone", "a")),
		mkNode("b1", withLabels("zone", "b")),
		mkNode("x1"), // no zone label: its own group
	)
	ds := mustSchedule(t, s, tasks("web", 9, withSpread("node.labels.zone")))
	if got := summary(ds); got != "a1:1 a2:1 a3:1 b1:3 x1:3" {
		t.Fatalf("placement %s", got)
	}
	// Existing tasks count: zone b already has 3, a has 3, x1 3; the next
	// goes to zone a (tie on count, a1 is the best node), on a1.
	next := []*swarmpb.Task{mkTask("web.10", "web", withSpread("node.labels.zone"))}
	if ds = mustSchedule(t, s, next); ds[0].NodeID != "a1" {
		t.Fatalf("next: %+v", ds[0])
	}

	// Two levels: zone then rack.
	s = newWith(
		mkNode("n1", withLabels("zone", "a", "rack", "1")),
		mkNode("n2", withLabels("zone", "a", "rack", "1")),
		mkNode("n3", withLabels("zone", "a", "rack", "2")),
		mkNode("n4", withLabels("zone", "b", "rack", "1")),
	)
	ds = mustSchedule(t, s, tasks("web", 8, withSpread("node.labels.zone", "node.labels.rack")))
	// zone a gets 4 (rack 1: 2 over n1,n2; rack 2: 2 on n3), zone b 4.
	if got := summary(ds); got != "n1:1 n2:1 n3:2 n4:4" {
		t.Fatalf("two-level placement %s", got)
	}

	// Spread respects filters: a zone whose nodes are full is skipped.
	s = newWith(
		mkNode("a1", withLabels("zone", "a"), withResources(1e9, 1<<30)),
		mkNode("b1", withLabels("zone", "b")),
	)
	ds = mustSchedule(t, s, tasks("web", 4, withSpread("node.labels.zone"), withReservation(1e9, 0)))
	if got := summary(ds); got != "a1:1 b1:3" {
		t.Fatalf("full zone: %s", got)
	}
}

func TestRecentlyFailedGoesLast(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"), mkNode("c"))
	s.AddTask(mkTask("web.1", "web", onNode("b")))
	s.AddTask(mkTask("web.2", "web", onNode("c")))
	// web's task on a failed: the replacement avoids a although a is empty.
	s.NodeFailed("a", "web", t0.Add(-time.Minute))
	repl := mkTask("web.3", "web")
	if ds := s.Schedule([]*swarmpb.Task{repl}, t0); ds[0].NodeID != "b" {
		t.Fatalf("replacement went to %q, want b", ds[0].NodeID)
	}
	// Other services are not affected.
	ds := s.Schedule(tasks("db", 1), t0)
	if ds[0].NodeID != "a" {
		t.Fatalf("db went to %q, want a", ds[0].NodeID)
	}
	// The failed node is still used when it is the only choice.
	s2 := newWith(mkNode("a"))
	s2.NodeFailed("a", "web", t0)
	if ds = s2.Schedule(tasks("web", 1), t0); ds[0].NodeID != "a" {
		t.Fatalf("only node: %+v", ds[0])
	}
	// After the window, a is preferred again (fewest web tasks).
	s.RemoveTask(repl)
	later := t0.Add(FailureWindow)
	if ds = s.Schedule([]*swarmpb.Task{mkTask("web.4", "web")}, later); ds[0].NodeID != "a" {
		t.Fatalf("after the window: %q, want a", ds[0].NodeID)
	}
}

func TestPendingReasons(t *testing.T) {
	cases := []struct {
		name  string
		nodes []*swarmpb.Node
		task  *swarmpb.Task
		want  string
	}{
		{"no nodes", nil, mkTask("t", "s"), "no suitable node (no nodes in the cluster)"},
		{"constraints", []*swarmpb.Node{mkNode("a"), mkNode("b"), mkNode("c")},
			mkTask("t", "s", withConstraints("node.labels.gpu==true")),
			"no suitable node (scheduling constraints not satisfied on 3 nodes)"},
		{"constraints one node", []*swarmpb.Node{mkNode("a")},
			mkTask("t", "s", withConstraints("node.role==manager")),
			"no suitable node (scheduling constraints not satisfied on 1 node)"},
		{"resources", []*swarmpb.Node{mkNode("a"), mkNode("b")},
			mkTask("t", "s", withReservation(64e9, 0)),
			"no suitable node (insufficient resources on 2 nodes)"},
		{"mixed", []*swarmpb.Node{
			mkNode("a", withStatus(swarmpb.NodeStatus_NODE_STATUS_DOWN)),
			mkNode("b", withAvailability(swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN)),
			mkNode("c", withAvailability(swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE)),
			mkNode("d", withLabels("gpu", "true"), withResources(1, 1)),
			mkNode("e"),
		}, mkTask("t", "s", withConstraints("node.labels.gpu==true"), withReservation(1e9, 0)),
			"no suitable node (1 node not ready; 2 nodes not available for new tasks; scheduling constraints not satisfied on 1 node; insufficient resources on 1 node)"},
		{"invalid constraint", []*swarmpb.Node{mkNode("a")}, mkTask("t", "s", withConstraints("zone=a")),
			`invalid constraint "zone=a": expected KEY==VALUE or KEY!=VALUE`},
		{"assigned to unknown node", []*swarmpb.Node{mkNode("a")}, mkTask("t", "s", withAssigned("zz")),
			"no suitable node (node zz is not in the cluster)"},
		{"assigned to drained node", []*swarmpb.Node{mkNode("a", withAvailability(swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN))},
			mkTask("t", "s", withAssigned("a")), "no suitable node (1 node not available for new tasks)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newWith(tc.nodes...)
			ds := mustSchedule(t, s, []*swarmpb.Task{tc.task})
			if ds[0].NodeID != "" || ds[0].Reason != tc.want {
				t.Fatalf("got %+v\nwant reason %q", ds[0], tc.want)
			}
		})
	}
}

func withAssigned(node string) taskOpt { return func(t *swarmpb.Task) { t.NodeId = node } }

func TestAssignedTasksValidated(t *testing.T) {
	s := newWith(mkNode("a", withResources(1e9, 1<<30)), mkNode("b"))
	g := []*swarmpb.Task{
		mkTask("g.a", "g", withAssigned("a"), withReservation(1e9, 0)),
		mkTask("g.b", "g", withAssigned("b"), withReservation(1e9, 0)),
		mkTask("r.1", "r", withReservation(1e9, 0)),
	}
	ds := mustSchedule(t, s, g)
	// The global task takes a's CPU first, so the replicated task goes to b.
	if ds[0].NodeID != "a" || ds[1].NodeID != "b" || ds[2].NodeID != "b" {
		t.Fatalf("decisions %+v", ds)
	}
	// Validating an already counted task again does not double count.
	ds = mustSchedule(t, s, g[:1])
	if ds[0].NodeID != "a" || s.nodes["a"].total != 1 {
		t.Fatalf("revalidation: %+v, a has %d tasks", ds[0], s.nodes["a"].total)
	}
}

func TestDeterminism(t *testing.T) {
	build := func(reverse bool) *Scheduler {
		var nodes []*swarmpb.Node
		for i := 0; i < 20; i++ {
			zone := []string{"a", "b", "c"}[i%3]
			nodes = append(nodes, mkNode(string(rune('a'+i)), withLabels("zone", zone), withResources(int64(1+i%4)*1e9, 1<<32)))
		}
		s := New()
		for i := range nodes {
			if reverse {
				s.UpsertNode(nodes[len(nodes)-1-i])
			} else {
				s.UpsertNode(nodes[i])
			}
		}
		return s
	}
	batch := func() []*swarmpb.Task {
		ts := tasks("web", 30, withSpread("node.labels.zone"), withReservation(5e8, 0))
		ts = append(ts, tasks("db", 10, withMaxPerNode(1), withReservation(1e9, 0))...)
		return append(ts, tasks("cache", 40)...)
	}
	var first []Decision
	for run := 0; run < 5; run++ {
		ds := build(run%2 == 1).Schedule(batch(), t0)
		if first == nil {
			first = ds
			continue
		}
		for i := range ds {
			if ds[i] != first[i] {
				t.Fatalf("run %d decision %d: %+v, first run %+v", run, i, ds[i], first[i])
			}
		}
	}
}

func TestBookkeeping(t *testing.T) {
	s := newWith(mkNode("a"))
	tk := mkTask("t1", "web", onNode("a"), withReservation(1e9, 100), withHostPort("tcp", 80))
	s.AddTask(tk)
	s.AddTask(tk) // re-adding replaces
	n := s.nodes["a"]
	if n.total != 1 || n.resCPU != 1e9 || n.ports[hostPort{"tcp", 80}] != 1 {
		t.Fatalf("after double add: %+v", n)
	}
	// A task that stops counting is removed by AddTask too.
	done := mkTask("t1", "web", onNode("a"))
	done.Status.State = swarmpb.TaskState_TASK_STATE_FAILED
	s.AddTask(done)
	if n.total != 0 || n.resCPU != 0 || len(n.ports) != 0 || len(n.perService) != 0 {
		t.Fatalf("after stop: %+v", n)
	}
	// Tasks on a node removed from the cluster keep counting until removed,
	// and the node finds them again when it comes back.
	s.AddTask(mkTask("t2", "web", onNode("a")))
	s.AddTask(mkTask("t3", "web", onNode("ghost")))
	s.RemoveNode("a")
	if ds := s.Schedule(tasks("x", 1), t0); ds[0].Reason != ReasonNoNodes {
		t.Fatalf("after RemoveNode: %+v", ds[0])
	}
	s.UpsertNode(mkNode("a"))
	if s.nodes["a"].total != 1 {
		t.Fatalf("node came back with %d tasks", s.nodes["a"].total)
	}
	s.RemoveTask(mkTask("t3", "web"))
	if _, ok := s.nodes["ghost"]; ok {
		t.Fatal("ghost node entry not dropped")
	}
	desired := mkTask("t4", "web", onNode("a"))
	desired.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	s.AddTask(desired)
	if s.nodes["a"].total != 1 {
		t.Fatal("task with desired state SHUTDOWN counted")
	}
}

func TestParseConstraint(t *testing.T) {
	good := []struct {
		in   string
		want string
		op   Operator
	}{
		{"node.id==abc", "node.id==abc", OpEqual},
		{" node.hostname != h1 ", "node.hostname!=h1", OpNotEqual},
		{"node.role==Manager", "node.role==Manager", OpEqual},
		{"Node.Platform.OS==linux", "node.platform.os==linux", OpEqual},
		{"node.platform.arch!=arm64", "node.platform.arch!=arm64", OpNotEqual},
		{"node.labels.Zone==eu-1", "node.labels.Zone==eu-1", OpEqual},
		{"engine.labels.x==y", "engine.labels.x==y", OpEqual},
	}
	for _, tc := range good {
		c, err := ParseConstraint(tc.in)
		if err != nil || c.String() != tc.want || c.Operator != tc.op {
			t.Errorf("ParseConstraint(%q) = %v, %v; want %s", tc.in, c, err, tc.want)
		}
	}
	bad := []struct{ in, want string }{
		{"x", `invalid constraint "x": expected KEY==VALUE or KEY!=VALUE`},
		{"zone=a", `invalid constraint "zone=a": expected KEY==VALUE or KEY!=VALUE`},
		{"==a", `invalid constraint "==a": expected KEY==VALUE or KEY!=VALUE`},
		{"node.id==", `invalid constraint "node.id==": expected KEY==VALUE or KEY!=VALUE`},
		{"node.id===a", `invalid constraint "node.id===a": expected KEY==VALUE or KEY!=VALUE`},
		{"a b==c", `invalid constraint "a b==c": expected KEY==VALUE or KEY!=VALUE`},
		{"node.zone==a", `invalid constraint "node.zone==a": unknown key "node.zone" (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`},
		{"node.labels.==a", `invalid constraint "node.labels.==a": empty label name`},
		{"node.role==boss", `invalid constraint "node.role==boss": node.role must be manager or worker`},
	}
	for _, tc := range bad {
		_, err := ParseConstraint(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseConstraint(%q) error %v\nwant %s", tc.in, err, tc.want)
			continue
		}
		if !errors.Is(err, ErrInvalidConstraint) {
			t.Errorf("%q: error does not match ErrInvalidConstraint", tc.in)
		}
	}
	if err := ValidateConstraints([]string{"node.role==worker", "node.labels.a!=b"}); err != nil {
		t.Errorf("ValidateConstraints: %v", err)
	}
	if err := ValidateConstraints([]string{"node.role==worker", "bogus"}); err == nil ||
		err.Error() != `invalid constraint "bogus": expected KEY==VALUE or KEY!=VALUE` {
		t.Errorf("ValidateConstraints: %v", err)
	}
	if err := ValidateSpreadDescriptors([]string{"node.labels.zone"}); err != nil {
		t.Errorf("ValidateSpreadDescriptors: %v", err)
	}
	if err := ValidateSpreadDescriptors([]string{"zone"}); err == nil || !errors.Is(err, ErrInvalidConstraint) {
		t.Errorf("ValidateSpreadDescriptors(zone): %v", err)
	}
}

func TestConstraintMatch(t *testing.T) {
	n := mkNode("n1", withLabels("zone", "a"), withPlatform("Linux", "aarch64"), withRole(swarmpb.NodeRole_NODE_ROLE_MANAGER))
	for expr, want := range map[string]bool{
		"node.labels.zone==a":       true,
		"node.labels.zone!=a":       false,
		"node.labels.rack!=a":       true,
		"node.labels.rack==a":       false,
		"node.platform.arch==arm64": true,
		"node.platform.os==LINUX":   true,
		"node.role==manager":        true,
		"node.id!=n1":               false,
	} {
		c, err := ParseConstraint(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Match(n); got != want {
			t.Errorf("%s: %v, want %v", expr, got, want)
		}
	}
}

func TestDuplicateTaskInBatch(t *testing.T) {
	s := newWith(mkNode("a"), mkNode("b"))
	tk := mkTask("t1", "web", withReservation(1e9, 0))
	ds := mustSchedule(t, s, []*swarmpb.Task{tk, tk})
	if ds[0].NodeID != "a" || ds[1].NodeID != "b" {
		t.Fatalf("decisions %+v", ds)
	}
	if a, b := s.nodes["a"], s.nodes["b"]; a.total+b.total != 1 || a.resCPU+b.resCPU != 1e9 {
		t.Fatalf("task counted %d times", a.total+b.total)
	}
}
