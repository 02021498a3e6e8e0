package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

var t0 = time.Unix(1_700_000_000, 0)

type nodeOpt func(*swarmpb.Node)

func mkNode(id string, opts ...nodeOpt) *swarmpb.Node {
	n := &swarmpb.Node{
		Id:     id,
		Spec:   &swarmpb.NodeSpec{Availability: swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
		Status: swarmpb.NodeStatus_NODE_STATUS_READY,
		Role:   swarmpb.NodeRole_NODE_ROLE_WORKER,
		Description: &swarmpb.NodeDescription{
			Hostname: "host-" + id, Os: "linux", Arch: "amd64",
			Resources: &swarmpb.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withLabels(kv ...string) nodeOpt {
	return func(n *swarmpb.Node) {
		n.Spec.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Spec.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withAvailability(a swarmpb.NodeAvailability) nodeOpt {
	return func(n *swarmpb.Node) { n.Spec.Availability = a }
}

func withStatus(st swarmpb.NodeStatus) nodeOpt {
	return func(n *swarmpb.Node) { n.Status = st }
}

func withResources(cpu, mem int64) nodeOpt {
	return func(n *swarmpb.Node) { n.Description.Resources = &swarmpb.Resources{NanoCpus: cpu, MemoryBytes: mem} }
}

func withRole(r swarmpb.NodeRole) nodeOpt { return func(n *swarmpb.Node) { n.Role = r } }

func withPlatform(os, arch string) nodeOpt {
	return func(n *swarmpb.Node) { n.Description.Os, n.Description.Arch = os, arch }
}

type taskOpt func(*swarmpb.Task)

func mkTask(id, svc string, opts ...taskOpt) *swarmpb.Task {
	t := &swarmpb.Task{
		Id:           id,
		ServiceId:    svc,
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING},
		Spec:         &swarmpb.ServiceSpec{Placement: &swarmpb.Placement{}},
		SpecVersion:  1,
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

func onNode(id string) taskOpt {
	return func(t *swarmpb.Task) {
		t.NodeId = id
		t.Status.State = swarmpb.TaskState_TASK_STATE_RUNNING
	}
}

func withConstraints(c ...string) taskOpt {
	return func(t *swarmpb.Task) { t.Spec.Placement.Constraints = c }
}

func withSpread(d ...string) taskOpt {
	return func(t *swarmpb.Task) { t.Spec.Placement.SpreadDescriptors = d }
}

func withMaxPerNode(m uint64) taskOpt {
	return func(t *swarmpb.Task) { t.Spec.Placement.MaxReplicasPerNode = m }
}

func withReservation(cpu, mem int64) taskOpt {
	return func(t *swarmpb.Task) {
		t.Spec.Resources = &swarmpb.ResourceRequirements{Reservations: &swarmpb.Resources{NanoCpus: cpu, MemoryBytes: mem}}
	}
}

func withHostPort(proto string, port uint32) taskOpt {
	return func(t *swarmpb.Task) {
		t.Spec.Ports = append(t.Spec.Ports, &swarmpb.PortConfig{Protocol: proto, TargetPort: 80, PublishedPort: port, PublishMode: "host"})
	}
}

// tasks makes n pending tasks svc.1 ... svc.n sharing opts.
func tasks(svc string, n int, opts ...taskOpt) []*swarmpb.Task {
	out := make([]*swarmpb.Task, n)
	for i := range out {
		out[i] = mkTask(fmt.Sprintf("%s.%d", svc, i+1), svc, opts...)
	}
	return out
}

func newWith(nodes ...*swarmpb.Node) *Scheduler {
	s := New()
	for _, n := range nodes {
		s.UpsertNode(n)
	}
	return s
}

// perNode counts placements per node ("" for unplaced).
func perNode(ds []Decision) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		m[d.NodeID]++
	}
	return m
}

func summary(ds []Decision) string {
	m := perNode(ds)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		name := k
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(&b, "%s:%d ", name, m[k])
	}
	return strings.TrimSpace(b.String())
}

func mustSchedule(t *testing.T, s *Scheduler, ts []*swarmpb.Task) []Decision {
	t.Helper()
	ds := s.Schedule(ts, t0)
	if len(ds) != len(ts) {
		t.Fatalf("got %d decisions for %d tasks", len(ds), len(ts))
	}
	for i, d := range ds {
		if d.TaskID != ts[i].GetId() {
			t.Fatalf("decision %d is for %q, want %q", i, d.TaskID, ts[i].GetId())
		}
		if (d.NodeID == "") == (d.Reason == "") {
			t.Fatalf("decision %+v: want exactly one of NodeID and Reason", d)
		}
	}
	return ds
}
