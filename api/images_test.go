package api

import (
	"context"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

func imgNode(id, addr string, port uint32, st swarmpb.NodeStatus) *swarmpb.Node {
	return &swarmpb.Node{Id: id, Addr: addr, Status: st, Description: &swarmpb.NodeDescription{Hostname: id, DataPort: port}}
}

func imgTask(id, svc, node, image string, st swarmpb.TaskState) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceId: svc, NodeId: node, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status: &swarmpb.TaskStatus{State: st},
		Spec:   &swarmpb.ServiceSpec{Name: svc, Container: &swarmpb.ContainerSpec{Image: "app", ImageId: image}}}
}

func TestImageSourceSelection(t *testing.T) {
	idA := "sha256:" + strings.Repeat("a", 64)
	idB := "sha256:" + strings.Repeat("b", 64)
	ready, down := swarmpb.NodeStatus_NODE_STATUS_READY, swarmpb.NodeStatus_NODE_STATUS_DOWN
	st := state.New()
	r := &storeRaft{store: st}
	acts := []*swarmpb.StoreAction{
		state.Create(imgNode("origin", "10.0.0.1:2377", 4790, ready)),
		state.Create(imgNode("target", "10.0.0.2:2377", 4790, ready)),
		state.Create(imgNode("down", "10.0.0.3:2377", 4790, down)),
		state.Create(imgNode("noport", "10.0.0.4:2377", 0, ready)),
		state.Create(&swarmpb.Service{Id: "s", Spec: &swarmpb.ServiceSpec{Name: "s"},
			ImageOrigins: []*swarmpb.ImageOrigin{{ImageId: idA, NodeId: "origin"}, {ImageId: idB, NodeId: "down"}}}),
		// The task to place, and one on the target itself that already runs.
		state.Create(imgTask("new", "s", "target", idA, swarmpb.TaskState_TASK_STATE_ASSIGNED)),
		state.Create(imgTask("running-on-target", "s", "target", idA, swarmpb.TaskState_TASK_STATE_RUNNING)),
		// Nodes down or without a data port are never named.
		state.Create(imgTask("on-down", "s", "down", idA, swarmpb.TaskState_TASK_STATE_RUNNING)),
		state.Create(imgTask("on-noport", "s", "noport", idA, swarmpb.TaskState_TASK_STATE_RUNNING)),
		// Running the other image: not a source of idA.
		state.Create(imgTask("old-image", "s", "n-old", idB, swarmpb.TaskState_TASK_STATE_RUNNING)),
		state.Create(imgNode("n-old", "10.0.0.9:2377", 4790, ready)),
	}
	// Many running nodes: the list stays bounded.
	for i := 0; i < 8; i++ {
		id := "r" + string(rune('0'+i))
		acts = append(acts, state.Create(imgNode(id, "10.0.1."+string(rune('1'+i))+":2377", 5000, ready)),
			state.Create(imgTask("t"+id, "s", id, idA, swarmpb.TaskState_TASK_STATE_RUNNING)),
			// A task still preparing is not a source.
			state.Create(imgTask("p"+id, "s", "noport", idA, swarmpb.TaskState_TASK_STATE_PREPARING)))
	}
	dtApply(t, r, acts...)

	var tasks []*swarmpb.Task
	st.View(func(tx state.ReadTx) { tasks = tx.TasksByNode("target") })
	var got []*swarmpb.ImageSources
	st.View(func(tx state.ReadTx) { got = imageSources(tx, "target", tasks) })
	if len(got) != 1 || got[0].ImageId != idA {
		t.Fatalf("sources = %v, want one entry for %s", got, idA)
	}
	nodes := got[0].Nodes
	if len(nodes) != maxImageSources {
		t.Fatalf("%d sources, want the bound %d: %v", len(nodes), maxImageSources, nodes)
	}
	if nodes[0].NodeId != "origin" || nodes[0].Addr != "10.0.0.1:4790" {
		t.Errorf("first source = %v, want the origin at its observed IP and data port", nodes[0])
	}
	for _, n := range nodes[1:] {
		if !strings.HasPrefix(n.NodeId, "r") || !strings.HasSuffix(n.Addr, ":5000") {
			t.Errorf("source %v is not a ready node running the image", n)
		}
	}

	// A task already running needs no sources; nor does one being stopped.
	running := imgTask("x", "s", "target", idA, swarmpb.TaskState_TASK_STATE_RUNNING)
	stopping := imgTask("y", "s", "target", idA, swarmpb.TaskState_TASK_STATE_ASSIGNED)
	stopping.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	st.View(func(tx state.ReadTx) { got = imageSources(tx, "target", []*swarmpb.Task{running, stopping}) })
	if len(got) != 0 {
		t.Errorf("sources for tasks not starting: %v", got)
	}
	// The origin of idB is down and the only node running it is ready.
	st.View(func(tx state.ReadTx) {
		got = imageSources(tx, "target", []*swarmpb.Task{imgTask("z", "s", "target", idB, swarmpb.TaskState_TASK_STATE_ASSIGNED)})
	})
	if len(got) != 1 || len(got[0].Nodes) != 1 || got[0].Nodes[0].NodeId != "n-old" {
		t.Errorf("sources of %s = %v, want only n-old", idB, got)
	}
}

func TestImageOriginsFollowSpecs(t *testing.T) {
	idA := "sha256:" + strings.Repeat("a", 64)
	idB := "sha256:" + strings.Repeat("b", 64)
	idC := "sha256:" + strings.Repeat("c", 64)
	st := state.New()
	r := &storeRaft{store: st}
	dtApply(t, r, state.Create(imgNode("n1", "10.0.0.1:2377", 4790, swarmpb.NodeStatus_NODE_STATUS_READY)),
		state.Create(imgNode("n2", "10.0.0.2:2377", 4790, swarmpb.NodeStatus_NODE_STATUS_READY)))
	spec := func(id string) *swarmpb.ServiceSpec {
		return &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "app", ImageId: id}}
	}
	old := []*swarmpb.ImageOrigin{{ImageId: idA, NodeId: "n1"}, {ImageId: idC, NodeId: "n1"}}
	var got []*swarmpb.ImageOrigin
	st.View(func(tx state.ReadTx) { got = imageOrigins(tx, old, spec(idB), spec(idA), "n2") })
	if len(got) != 2 || got[0].ImageId != idB || got[0].NodeId != "n2" || got[1].ImageId != idA {
		t.Errorf("origins = %v: want idB from n2, idA kept for rollback, idC dropped", got)
	}
	st.View(func(tx state.ReadTx) { got = imageOrigins(tx, nil, spec(idB), nil, "ghost") })
	if len(got) != 0 {
		t.Errorf("an unknown node became an origin: %v", got)
	}

	cur := spec(idA)
	next := spec(idA)
	next.Container.Image = "other"
	clearStaleImageID(cur, next)
	if next.Container.ImageId != "" {
		t.Error("an image ID carried over to another image reference was kept")
	}
	next = spec(idB)
	next.Container.Image = "other"
	clearStaleImageID(cur, next)
	if next.Container.ImageId != idB {
		t.Error("a freshly resolved image ID was dropped")
	}

	// Same reference, another build on the proxy's node: kept unless forced.
	next = spec(idB)
	if node := settleImagePin(cur, next, false, "n2"); node != "" || next.Container.ImageId != idA {
		t.Errorf("scale through a node with another build: pinned %s from %q", next.Container.ImageId, node)
	}
	next = spec(idB)
	if node := settleImagePin(cur, next, true, "n2"); node != "n2" || next.Container.ImageId != idB {
		t.Errorf("forced update: pinned %s from %q", next.Container.ImageId, node)
	}
	next = spec(idA)
	if node := settleImagePin(cur, next, false, "n2"); node != "n2" || next.Container.ImageId != idA {
		t.Errorf("same build: pinned %s from %q (the node has it: an origin)", next.Container.ImageId, node)
	}
}

// fakeImages is a node engine that has one image.
type fakeImages struct{ ref, id string }

func (f fakeImages) LocalImage(_ context.Context, ref string) (string, string, bool) {
	if ref != f.ref {
		return "", "", false
	}
	return "node-1", f.id, true
}

// TestProxyPinsLocalImage: a service created or updated through a node's
// socket is pinned to the image ID its engine has, with the node as origin;
// one the engine lacks goes unchanged.
func TestProxyPinsLocalImage(t *testing.T) {
	id := "sha256:" + strings.Repeat("d", 64)
	p := &ControlProxy{Images: fakeImages{ref: "app:local", id: id}}
	req := &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{Name: "s", Container: &swarmpb.ContainerSpec{Image: "app:local"}}}
	got := p.createWithLocalImage(context.Background(), req)
	if got.Spec.Container.ImageId != id || got.ImageNodeId != "node-1" {
		t.Errorf("create = %v", got)
	}
	if req.Spec.Container.ImageId != "" {
		t.Error("the caller's request was modified")
	}
	other := &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{Name: "s", Container: &swarmpb.ContainerSpec{Image: "nginx"}}}
	if got := p.createWithLocalImage(context.Background(), other); got != other {
		t.Errorf("an image the engine lacks changed the request: %v", got)
	}
	up := p.updateWithLocalImage(context.Background(), &swarmpb.UpdateServiceRequest{Service: "s", Spec: req.Spec})
	if up.Spec.Container.ImageId != id || up.ImageNodeId != "node-1" {
		t.Errorf("update = %v", up)
	}
	rb := &swarmpb.UpdateServiceRequest{Service: "s", Rollback: true}
	if got := p.updateWithLocalImage(context.Background(), rb); got != rb {
		t.Error("a rollback was changed")
	}
}
