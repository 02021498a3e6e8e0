package api

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// The endpoint table only ever lists a task on its own node's address,
// whatever was stored before the dispatcher checked reports.
func TestEndpointsOnlyOnTheNodesAddress(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st}
	sp := &swarmpb.ServiceSpec{Name: "web", Ports: []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080}}}
	bind := func(ip string, port uint32) *swarmpb.PortBinding {
		return &swarmpb.PortBinding{Protocol: "tcp", TargetPort: 80, HostIp: ip, HostPort: port, PublishMode: "ingress"}
	}
	task := func(id string, b ...*swarmpb.PortBinding) *swarmpb.StoreAction {
		tk := dtTask(id, "n1", swarmpb.TaskState_TASK_STATE_RUNNING)
		tk.Spec = sp
		tk.Status.Ports = b
		return state.Create(tk)
	}
	dtApply(t, r,
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Addr: "10.0.0.5:2377"}),
		state.Create(&swarmpb.Service{Id: "s", Spec: sp}),
		task("t1", bind("0.0.0.0", 30001)),
		task("t2", bind("10.0.0.5", 30002)),
		task("t3", bind("10.9.9.9", 30003)),
		task("t4", bind("", 30004), bind("10.0.0.6", 30005)),
	)
	var eps []*swarmpb.ServiceEndpoint
	st.View(func(tx state.ReadTx) { eps = buildEndpoints(tx) })
	var got []string
	for _, e := range eps {
		for _, b := range e.GetBackends() {
			got = append(got, b.GetAddr())
		}
	}
	slices.Sort(got)
	want := []string{"10.0.0.5:30001", "10.0.0.5:30002", "10.0.0.5:30004"}
	if !slices.Equal(got, want) {
		t.Fatalf("backends %v, want %v", got, want)
	}
}

// TestEndpointsUpdateAfterRestore checks that the table keeps following the
// store after a Restore closes its watch: it used to mark a rebuild
// pending without starting the timer, and stopped updating for the term.
func TestEndpointsUpdateAfterRestore(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st}
	d := &Dispatcher{Store: st}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := d.startEndpoints(ctx)
	defer e.stop()

	sp := &swarmpb.ServiceSpec{Name: "web", Ports: []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080}}}
	node := &swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Addr: "10.0.0.5:2377"}
	other := state.New()
	dtApply(t, &storeRaft{store: other}, state.Create(node))
	if err := st.Restore(other.Index(), other.Snapshot()); err != nil {
		t.Fatal(err)
	}
	tk := dtTask("t1", "n1", swarmpb.TaskState_TASK_STATE_RUNNING)
	tk.Spec = sp
	tk.Status.Ports = []*swarmpb.PortBinding{{Protocol: "tcp", TargetPort: 80, HostIp: "0.0.0.0", HostPort: 30001, PublishMode: "ingress"}}
	dtApply(t, r, state.Create(&swarmpb.Service{Id: "s", Spec: sp}), state.Create(tk))
	testutil.Eventually(t, 10*time.Second, func() error {
		ports, _ := e.get()
		if len(ports) != 1 || len(ports[0].GetBackends()) != 1 {
			return fmt.Errorf("table %v, want the service's one backend", ports)
		}
		return nil
	})
}

// The endpoint and discovery tables are rebuilt for every change they
// show: besides serving state and ports, a task placed on a node or
// finished there (the node's networks), a node's data port, and networks.
func TestAffectsEndpointsDiscovery(t *testing.T) {
	task := func(node string, desired, st swarmpb.TaskState) *swarmpb.Task {
		return &swarmpb.Task{Id: "t", NodeId: node, DesiredState: desired, Status: &swarmpb.TaskStatus{State: st}}
	}
	run, shut := swarmpb.TaskState_TASK_STATE_RUNNING, swarmpb.TaskState_TASK_STATE_SHUTDOWN
	node := func(port uint32) *swarmpb.Node {
		return &swarmpb.Node{Id: "n", Addr: "127.0.0.1:1", Description: &swarmpb.NodeDescription{DataPort: port}}
	}
	for name, c := range map[string]struct {
		ev   state.Event
		want bool
	}{
		"task placed":                    {state.Event{Kind: state.EventUpdate, Object: task("n1", run, swarmpb.TaskState_TASK_STATE_ASSIGNED), Old: task("", run, swarmpb.TaskState_TASK_STATE_PENDING)}, true},
		"stopping task finished":         {state.Event{Kind: state.EventUpdate, Object: task("n1", shut, shut), Old: task("n1", shut, run)}, true},
		"progress of a task not serving": {state.Event{Kind: state.EventUpdate, Object: task("n1", run, swarmpb.TaskState_TASK_STATE_STARTING), Old: task("n1", run, swarmpb.TaskState_TASK_STATE_PREPARING)}, false},
		"data port":                      {state.Event{Kind: state.EventUpdate, Object: node(4790), Old: node(0)}, true},
		"node heartbeat":                 {state.Event{Kind: state.EventUpdate, Object: node(4790), Old: node(4790)}, false},
		"network created":                {state.Event{Kind: state.EventCreate, Object: &swarmpb.Network{Id: "x"}}, true},
	} {
		if got := affectsEndpoints(c.ev); got != c.want {
			t.Errorf("%s: affectsEndpoints = %v, want %v", name, got, c.want)
		}
	}
}
