package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// discoveryState: networks a and b; service web on a and b (VIPs .2 on
// each, alias www on a), redis on a (VIP .3), secret on b only. n1 runs
// redis/1 and web/1, n2 web/2 (starting, so not serving), both web tasks
// from web's previous spec, on a only (an update in progress); n3 runs
// web/3 (current spec, a and b) and secret/1. So n1 and n2 are on a, n3
// on a and b. n2 reports no data port.
func discoveryState(t *testing.T) (*state.Store, *storeRaft) {
	t.Helper()
	st := state.New()
	r := &storeRaft{store: st}
	netA := &swarmpb.Network{Id: "neta", Spec: &swarmpb.NetworkSpec{Name: "a"}, Subnet: "10.96.0.0/20"}
	netB := &swarmpb.Network{Id: "netb", Spec: &swarmpb.NetworkSpec{Name: "b", Internal: true}, Subnet: "10.96.16.0/20"}
	node := func(id, addr string, port uint32) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Node{Id: id, Spec: &swarmpb.NodeSpec{}, Addr: addr, Description: &swarmpb.NodeDescription{Hostname: id, DataPort: port}})
	}
	svc := func(id, name string, atts []*swarmpb.NetworkAttachmentConfig, vips ...*swarmpb.VirtualIP) *swarmpb.Service {
		return &swarmpb.Service{Id: id, Spec: &swarmpb.ServiceSpec{Name: name, Networks: atts}, VirtualIps: vips}
	}
	web := svc("sweb", "web", []*swarmpb.NetworkAttachmentConfig{{Target: "neta", Aliases: []string{"www"}}, {Target: "netb"}},
		&swarmpb.VirtualIP{NetworkId: "neta", Addr: "10.96.0.2"}, &swarmpb.VirtualIP{NetworkId: "netb", Addr: "10.96.16.2"})
	redis := svc("sredis", "redis", []*swarmpb.NetworkAttachmentConfig{{Target: "neta"}}, &swarmpb.VirtualIP{NetworkId: "neta", Addr: "10.96.0.3"})
	secret := svc("ssecret", "secret", []*swarmpb.NetworkAttachmentConfig{{Target: "netb"}}, &swarmpb.VirtualIP{NetworkId: "netb", Addr: "10.96.16.3"})
	plain := svc("splain", "plain", nil)
	oldWeb := proto.Clone(web.Spec).(*swarmpb.ServiceSpec)
	oldWeb.Networks = oldWeb.Networks[:1]
	task := func(id string, s *swarmpb.Service, node string, slot uint64, st swarmpb.TaskState) *swarmpb.StoreAction {
		sp := s.Spec
		if id == "t1" || id == "t2" {
			sp = oldWeb
		}
		return state.Create(&swarmpb.Task{Id: id, ServiceId: s.Id, NodeId: node, Slot: slot, Spec: sp,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: st}})
	}
	running := swarmpb.TaskState_TASK_STATE_RUNNING
	dtApply(t, r,
		node("n1", "127.0.0.11:2377", 4790), node("n2", "127.0.0.12:2377", 0), node("n3", "127.0.0.13:2377", 4791), node("n4", "127.0.0.14:2377", 4790),
		state.Create(netA), state.Create(netB),
		state.Create(web), state.Create(redis), state.Create(secret), state.Create(plain),
		task("t1", web, "n1", 1, running), task("t2", web, "n2", 2, swarmpb.TaskState_TASK_STATE_STARTING), task("t3", web, "n3", 3, running),
		task("t4", redis, "n1", 1, running), task("t5", secret, "n3", 1, running), task("t6", plain, "n4", 1, running),
	)
	return st, r
}

func viewFor(st *state.Store, node string) *swarmpb.EndpointsMessage {
	m := &swarmpb.EndpointsMessage{}
	st.View(func(tx state.ReadTx) { buildDiscovery(tx).forNode(node, m) })
	return m
}

func mustText(t *testing.T, s string) *swarmpb.EndpointsMessage {
	t.Helper()
	m := &swarmpb.EndpointsMessage{}
	if err := prototext.Unmarshal([]byte(s), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Each node sees only the networks it has tasks on, the services on those
// networks (with only those attachments) and their serving tasks, and the
// data addresses of the nodes running them.
func TestDiscoveryViewPerNode(t *testing.T) {
	st, _ := discoveryState(t)
	webOnA := `services: {service_id: "sweb" name: "web" networks: {network_id: "neta" vip: "10.96.0.2" aliases: "www"} tasks: {task_id: "t1" node_id: "n1" slot: 1} tasks: {task_id: "t3" node_id: "n3" slot: 3}}`
	redis := `services: {service_id: "sredis" name: "redis" networks: {network_id: "neta" vip: "10.96.0.3"} tasks: {task_id: "t4" node_id: "n1" slot: 1}}`
	nodes := `nodes: {node_id: "n1" addr: "127.0.0.11:4790"} nodes: {node_id: "n3" addr: "127.0.0.13:4791"}`
	netA := `networks: {id: "neta" name: "a" subnet: "10.96.0.0/20" node_ids: ["n1", "n2", "n3"]}`
	for _, c := range []struct{ node, want string }{
		// n1 and n2 are on a only: no secret, web without its b address.
		{"n1", netA + redis + webOnA + nodes},
		{"n2", netA + redis + webOnA + nodes},
		// n3 is on a and b: web with both attachments, secret too.
		{"n3", netA + `networks: {id: "netb" name: "b" subnet: "10.96.16.0/20" internal: true node_ids: "n3"}` +
			redis +
			`services: {service_id: "ssecret" name: "secret" networks: {network_id: "netb" vip: "10.96.16.3"} tasks: {task_id: "t5" node_id: "n3" slot: 1}}` +
			`services: {service_id: "sweb" name: "web" networks: {network_id: "neta" vip: "10.96.0.2" aliases: "www"} networks: {network_id: "netb" vip: "10.96.16.2"} tasks: {task_id: "t1" node_id: "n1" slot: 1} tasks: {task_id: "t3" node_id: "n3" slot: 3}}` +
			nodes},
		// n4 runs only a service without networks; n5 nothing.
		{"n4", ""},
		{"n5", ""},
	} {
		got, want := viewFor(st, c.node), mustText(t, c.want)
		if !proto.Equal(got, want) {
			t.Errorf("view of %s:\n got %v\nwant %v", c.node, prototext.Format(got), prototext.Format(want))
		}
	}
}

// The stream pushes a node its new view when something it sees changes
// (a task of a service on its network stops serving), and nothing for
// changes it does not see.
func TestDiscoveryStreamFollowsChanges(t *testing.T) {
	st, r := discoveryState(t)
	d := &Dispatcher{Store: st, Raft: r}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := d.startEndpoints(ctx)
	defer e.stop()
	d.mu.Lock()
	d.active, d.endpoints = true, e
	d.mu.Unlock()

	msgs := make(chan *swarmpb.EndpointsMessage, 16)
	done := make(chan error, 1)
	sctx, scancel := context.WithCancel(ctx)
	go func() {
		done <- d.streamEndpoints(sctx, "n2", func(m *swarmpb.EndpointsMessage) error { msgs <- m; return nil })
	}()
	defer func() {
		scancel()
		if err := <-done; err != nil {
			t.Errorf("stream: %v", err)
		}
	}()
	next := func() *swarmpb.EndpointsMessage {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no view within 10s")
			return nil
		}
	}
	first := next()
	if len(first.Services) != 2 {
		t.Fatalf("first view %v", first)
	}
	// A change n2 cannot see (the task of secret, on b only, stops): nothing sent.
	stop := func(id string) {
		var tk *swarmpb.Task
		st.View(func(tx state.ReadTx) { tk = proto.Clone(tx.GetTask(id)).(*swarmpb.Task) })
		tk.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
		dtApply(t, r, state.Update(tk))
	}
	stop("t5")
	// redis's task is about to stop: it leaves n2's view at once.
	stop("t4")
	m := next()
	for _, s := range m.Services {
		if s.Name == "redis" && len(s.Tasks) != 0 {
			t.Fatalf("redis still has tasks %v", s.Tasks)
		}
	}
	select {
	case extra := <-msgs:
		t.Fatalf("unexpected view %v", extra)
	default:
	}
	// Its task on a gone, n2 loses the network and everything on it.
	var tk *swarmpb.Task
	st.View(func(tx state.ReadTx) { tk = proto.Clone(tx.GetTask("t2")).(*swarmpb.Task) })
	tk.Status.State = swarmpb.TaskState_TASK_STATE_FAILED
	dtApply(t, r, state.Update(tk))
	testutil.Eventually(t, 10*time.Second, func() error {
		select {
		case m := <-msgs:
			if len(m.Networks) == 0 && len(m.Services) == 0 && len(m.Nodes) == 0 {
				return nil
			}
			return fmt.Errorf("view %v", m)
		default:
			return fmt.Errorf("no new view yet")
		}
	})
}
