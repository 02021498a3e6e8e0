package netplane

import (
	"net/netip"
	"slices"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Test fixture: node "self" runs redis task r1 and web task w1; node
// "other" runs redis task r2 and web task w2. redis and web are on appnet;
// db is on othernet only.
const (
	appnet   = "net-app"
	othernet = "net-other"
)

func mp(s string) netip.Addr { return netip.MustParseAddr(s) }

func testView() *swarmpb.EndpointsMessage {
	return &swarmpb.EndpointsMessage{
		Networks: []*swarmpb.NetworkView{
			{Id: appnet, Name: "appnet", Subnet: "10.96.0.0/20"},
			{Id: othernet, Name: "othernet", Subnet: "10.96.16.0/20"},
		},
		Services: []*swarmpb.DiscoveryService{
			{ServiceId: "svc-redis", Name: "Redis",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.2", Aliases: []string{"cache"}}},
				Tasks: []*swarmpb.DiscoveryTask{
					{TaskId: "r1", NodeId: "self", Slot: 1},
					{TaskId: "r2", NodeId: "other", Slot: 2},
				}},
			{ServiceId: "svc-web", Name: "web",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.3"}},
				Tasks: []*swarmpb.DiscoveryTask{
					{TaskId: "w1", NodeId: "self", Slot: 1},
					{TaskId: "w2", NodeId: "other", Slot: 2},
				}},
			{ServiceId: "svc-db", Name: "db",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: othernet, Vip: "10.96.16.2"}},
				Tasks:    []*swarmpb.DiscoveryTask{{TaskId: "d1", NodeId: "other", Slot: 1}}},
			{ServiceId: "svc-idle", Name: "idle",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.4"}}},
		},
		Nodes: []*swarmpb.NodeDataAddr{{NodeId: "other", Addr: "127.0.0.2:4790"}},
	}
}

func testLocal() map[string]map[string]netip.Addr {
	return map[string]map[string]netip.Addr{
		appnet: {"r1": mp("172.30.0.2"), "w1": mp("172.30.0.3")},
	}
}

func TestTableResolve(t *testing.T) {
	tb := BuildTable(TableInput{View: testView(), NodeID: "self", Local: testLocal()}, nil)
	app := []string{appnet}
	for _, tc := range []struct {
		name  string
		nets  []string
		want  []netip.Addr
		owned bool
	}{
		{"redis", app, []netip.Addr{mp("10.96.0.2")}, true},
		{"REDIS.", app, []netip.Addr{mp("10.96.0.2")}, true},
		{"cache", app, []netip.Addr{mp("10.96.0.2")}, true},
		{"web", app, []netip.Addr{mp("10.96.0.3")}, true},
		{"idle", app, []netip.Addr{mp("10.96.0.4")}, true},
		{"tasks.idle", app, nil, true},
		{"db", app, nil, false}, // isolation: db is on othernet only
		{"db", []string{othernet}, []netip.Addr{mp("10.96.16.2")}, true},
		{"redis", []string{othernet}, nil, false},
		{"example.com", app, nil, false},
		{"tasks.example", app, nil, false},
	} {
		got, owned := tb.Resolve(tc.name, tc.nets)
		if owned != tc.owned || !slices.Equal(got, tc.want) {
			t.Errorf("Resolve(%q, %v) = %v, %v; want %v, %v", tc.name, tc.nets, got, owned, tc.want, tc.owned)
		}
	}
	// tasks.redis: the local task's container address and a node-local
	// address from the upper half for the remote one.
	got, owned := tb.Resolve("tasks.redis", app)
	if !owned || len(got) != 2 || got[0] != mp("172.30.0.2") {
		t.Fatalf("tasks.redis = %v, %v", got, owned)
	}
	if al, _ := tb.Resolve("tasks.cache", app); !slices.Equal(al, got) {
		t.Fatalf("tasks.cache = %v, tasks.redis = %v", al, got)
	}
	upper := netip.MustParsePrefix("10.96.8.0/21")
	if !upper.Contains(got[1]) {
		t.Fatalf("remote task address %v not in the upper half %v", got[1], upper)
	}
	tg := tb.Lookup(got[1], app)
	if tg == nil || tg.Service || len(tg.Backends) != 1 || tg.Backends[0].TaskID != "r2" || tg.Backends[0].DataAddr != "127.0.0.2:4790" {
		t.Fatalf("target of %v = %+v", got[1], tg)
	}
}

func TestTableTargetsAndLive(t *testing.T) {
	tb := BuildTable(TableInput{View: testView(), NodeID: "self", Local: testLocal()}, nil)
	tg := tb.Lookup(mp("10.96.0.2"), []string{appnet})
	if tg == nil || !tg.Service || tg.ServiceID != "svc-redis" || len(tg.Backends) != 2 {
		t.Fatalf("redis VIP target = %+v", tg)
	}
	if !tg.Backends[0].IsLocal() || tg.Backends[0].Local != mp("172.30.0.2") || tg.Backends[1].IsLocal() {
		t.Fatalf("redis backends = %+v", tg.Backends)
	}
	if tb.Lookup(mp("10.96.16.2"), []string{appnet}) != nil {
		t.Fatal("db's VIP reachable from appnet")
	}
	live := tb.Live(appnet)
	// redis and web VIPs, the two remote tasks; not idle's VIP.
	if len(live) != 4 || slices.Contains(live, mp("10.96.0.4")) || !slices.Contains(live, mp("10.96.0.2")) {
		t.Fatalf("Live(appnet) = %v", live)
	}
	if !tb.PeerOn(appnet, "other") || tb.PeerOn(othernet, "self") || !tb.PeerOn(othernet, "other") {
		t.Fatal("PeerOn wrong")
	}
	if ip, ok := tb.LocalTask(appnet, "w1"); !ok || ip != mp("172.30.0.3") {
		t.Fatalf("LocalTask = %v %v", ip, ok)
	}
	if _, ok := tb.LocalTask(othernet, "w1"); ok {
		t.Fatal("w1 is not on othernet")
	}
	if tb.LocalTasks(appnet) != 2 {
		t.Fatal("LocalTasks")
	}
}

func TestTableNetworksOf(t *testing.T) {
	local := testLocal()
	local[othernet] = map[string]netip.Addr{"w1": mp("172.31.0.5")}
	tb := BuildTable(TableInput{View: testView(), NodeID: "self", Local: local}, nil)
	if got := tb.NetworksOf(mp("172.31.0.5"), othernet); !slices.Equal(got, []string{othernet, appnet}) {
		t.Fatalf("NetworksOf(w1 on othernet) = %v", got)
	}
	if got := tb.NetworksOf(mp("172.30.0.2"), appnet); !slices.Equal(got, []string{appnet}) {
		t.Fatalf("NetworksOf(r1) = %v", got)
	}
	if got := tb.NetworksOf(mp("172.30.0.99"), appnet); !slices.Equal(got, []string{appnet}) {
		t.Fatalf("NetworksOf(unknown) = %v", got)
	}
	// w1 sees db through othernet.
	if got, ok := tb.Resolve("db", tb.NetworksOf(mp("172.30.0.3"), appnet)); !ok || got[0] != mp("10.96.16.2") {
		t.Fatalf("w1 resolving db = %v %v", got, ok)
	}
}

func TestTableSkipsBadEntries(t *testing.T) {
	v := testView()
	v.Services[0].Networks[0].Vip = "10.96.9.1" // upper half: not a VIP
	v.Services[1].Networks[0].Vip = "192.168.0.1"
	v.Nodes[0].Addr = "not an address"
	v.Networks = append(v.Networks, &swarmpb.NetworkView{Id: "bad", Subnet: "fe80::/64"})
	tb := BuildTable(TableInput{View: v, NodeID: "self", Local: testLocal()}, nil)
	if _, ok := tb.Resolve("redis", []string{appnet}); ok {
		t.Fatal("redis resolved with an upper-half VIP")
	}
	if _, ok := tb.Resolve("web", []string{appnet}); ok {
		t.Fatal("web resolved with a VIP outside its subnet")
	}
	if got, _ := tb.Resolve("tasks.redis", []string{appnet}); len(got) != 1 {
		t.Fatalf("tasks.redis without the remote node's data address = %v", got)
	}
	if slices.Contains(tb.Networks(), "bad") {
		t.Fatal("IPv6 network kept")
	}
}

func TestTaskAddrsStableAndFreed(t *testing.T) {
	alloc := NewTaskAddrs()
	v := testView()
	tb := BuildTable(TableInput{View: v, NodeID: "self", Local: testLocal()}, alloc)
	r2 := mustTaskAddr(t, tb, "tasks.redis", "r2")
	w2 := mustTaskAddr(t, tb, "tasks.web", "w2")
	if r2 == w2 {
		t.Fatal("two tasks share an address")
	}
	// Same view again: same addresses.
	tb = BuildTable(TableInput{View: testView(), NodeID: "self", Local: testLocal()}, alloc)
	if mustTaskAddr(t, tb, "tasks.redis", "r2") != r2 || mustTaskAddr(t, tb, "tasks.web", "w2") != w2 {
		t.Fatal("addresses changed between views")
	}
	// r2 leaves, r3 arrives: r3 gets a new address, not r2's (next fit).
	v = testView()
	v.Services[0].Tasks[1] = &swarmpb.DiscoveryTask{TaskId: "r3", NodeId: "other"}
	tb = BuildTable(TableInput{View: v, NodeID: "self", Local: testLocal()}, alloc)
	r3 := mustTaskAddr(t, tb, "tasks.redis", "r3")
	if r3 == r2 || r3 == w2 {
		t.Fatalf("r3 got a recently used address %v", r3)
	}
	if tb.Lookup(r2, []string{appnet}) != nil {
		t.Fatal("r2's address still has a target")
	}
	if _, ok := alloc.nets[appnet].byTask["r2"]; ok {
		t.Fatal("r2's address not freed")
	}
}

func TestTaskAddrsWrapAndFull(t *testing.T) {
	alloc := NewTaskAddrs()
	p := netip.MustParsePrefix("10.0.0.0/29") // upper half .4-.6 (.7 broadcast)
	var got []netip.Addr
	for _, id := range []string{"a", "b", "c"} {
		a, ok := alloc.get("n", p, id)
		if !ok {
			t.Fatalf("get %s failed", id)
		}
		got = append(got, a)
	}
	if !slices.Equal(got, []netip.Addr{mp("10.0.0.4"), mp("10.0.0.5"), mp("10.0.0.6")}) {
		t.Fatalf("allocated %v", got)
	}
	if _, ok := alloc.get("n", p, "d"); ok {
		t.Fatal("allocated from a full range")
	}
	alloc.retain(map[string]map[string]bool{"n": {"a": true, "c": true}}, map[string]*netTable{"n": {}})
	if a, ok := alloc.get("n", p, "d"); !ok || a != mp("10.0.0.5") {
		t.Fatalf("after freeing b, d got %v %v", a, ok)
	}
}

func mustTaskAddr(t *testing.T, tb *Table, name, taskID string) netip.Addr {
	t.Helper()
	addrs, _ := tb.Resolve(name, []string{appnet})
	for _, a := range addrs {
		if tg := tb.Lookup(a, []string{appnet}); tg != nil && !tg.Service && tg.Backends[0].TaskID == taskID {
			return a
		}
	}
	t.Fatalf("%s has no address for task %s (answers %v)", name, taskID, addrs)
	return netip.Addr{}
}

func TestTableCoNetworks(t *testing.T) {
	local := testLocal()
	if got := BuildTable(TableInput{View: testView(), NodeID: "self", Local: local}, nil).CoNetworks(appnet); len(got) != 0 {
		t.Fatalf("no task on two networks, CoNetworks = %v", got)
	}
	local[othernet] = map[string]netip.Addr{"w1": mp("172.31.0.5")}
	tb := BuildTable(TableInput{View: testView(), NodeID: "self", Local: local}, nil)
	if got := tb.CoNetworks(appnet); !slices.Equal(got, []string{othernet}) {
		t.Fatalf("CoNetworks(appnet) = %v", got)
	}
	if got := tb.CoNetworks(othernet); !slices.Equal(got, []string{appnet}) {
		t.Fatalf("CoNetworks(othernet) = %v", got)
	}
}

// A node with a task assigned on a network (view.node_ids) may reach it
// through tunnels before that task runs: a client starting up connects to
// its dependencies before it counts as running.
func TestPeersIncludeAssignedNodes(t *testing.T) {
	v := testView()
	netID := v.GetNetworks()[0].GetId()
	if BuildTable(TableInput{View: v, NodeID: "self"}, nil).PeerOn(netID, "starting") {
		t.Fatal("a node with no task on the network is a peer")
	}
	v.Networks[0].NodeIds = []string{"starting"}
	if !BuildTable(TableInput{View: v, NodeID: "self"}, nil).PeerOn(netID, "starting") {
		t.Fatal("a node with a task assigned on the network is not a peer")
	}
}
