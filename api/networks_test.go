package api

import (
	"context"
	"fmt"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func mkNetwork(t *testing.T, s *ControlServer, name, subnet string) *swarmpb.Network {
	t.Helper()
	resp, err := s.CreateNetwork(context.Background(), &swarmpb.CreateNetworkRequest{Spec: &swarmpb.NetworkSpec{Name: name, Subnet: subnet}})
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	return resp.Network
}

func netSpec(name string, nets ...*swarmpb.NetworkAttachmentConfig) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{Name: name, Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "demo:v1"}, Networks: nets}
}

func att(target string, aliases ...string) *swarmpb.NetworkAttachmentConfig {
	return &swarmpb.NetworkAttachmentConfig{Target: target, Aliases: aliases}
}

func mkService(t *testing.T, s *ControlServer, sp *swarmpb.ServiceSpec) *swarmpb.Service {
	t.Helper()
	resp, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp})
	if err != nil {
		t.Fatalf("create service %s: %v", sp.Name, err)
	}
	return resp.Service
}

func vipsOf(svc *swarmpb.Service) map[string]string {
	out := map[string]string{}
	for _, v := range svc.GetVirtualIps() {
		out[v.NetworkId] = v.Addr
	}
	return out
}

func TestNetworkCreateListRemove(t *testing.T) {
	s, _ := newControl(t)
	ctx := context.Background()
	a := mkNetwork(t, s, "appnet", "")
	b := mkNetwork(t, s, "other", "")
	c := mkNetwork(t, s, "mine", "10.97.0.0/24")
	if a.Subnet != "10.96.0.0/20" || b.Subnet != "10.96.16.0/20" || c.Subnet != "10.97.0.0/24" {
		t.Fatalf("subnets %s %s %s", a.Subnet, b.Subnet, c.Subnet)
	}
	// An allocation skips a subnet given by hand.
	mkNetwork(t, s, "manual", "10.96.32.0/24")
	if d := mkNetwork(t, s, "next", ""); d.Subnet != "10.96.48.0/20" {
		t.Fatalf("next allocation %s, want 10.96.48.0/20", d.Subnet)
	}

	_, err := s.CreateNetwork(ctx, &swarmpb.CreateNetworkRequest{Spec: &swarmpb.NetworkSpec{Name: "appnet"}})
	wantCode(t, err, codes.AlreadyExists, "network appnet already exists")
	_, err = s.CreateNetwork(ctx, &swarmpb.CreateNetworkRequest{Spec: &swarmpb.NetworkSpec{Name: "x", Subnet: "10.96.0.0/16"}})
	wantCode(t, err, codes.FailedPrecondition, "subnet 10.96.0.0/16 overlaps 10.96.0.0/20 of network appnet")
	_, err = s.CreateNetwork(ctx, &swarmpb.CreateNetworkRequest{Spec: &swarmpb.NetworkSpec{Name: "x", Driver: "macvlan"}})
	wantCode(t, err, codes.InvalidArgument, `network driver "macvlan" is not supported`)

	mkService(t, s, netSpec("web", att("appnet")))
	mkService(t, s, netSpec("redis", att(a.Id[:6])))
	list, err := s.ListNetworks(ctx, &swarmpb.ListNetworksRequest{PageSize: 2})
	if err != nil || len(list.Networks) != 2 || list.NextPageToken == "" {
		t.Fatalf("first page %v %v", list, err)
	}
	total := map[string]uint32{}
	for tok := ""; ; {
		page, err := s.ListNetworks(ctx, &swarmpb.ListNetworksRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, ni := range page.Networks {
			total[ni.Network.Spec.Name] = ni.Services
		}
		if tok = page.NextPageToken; tok == "" {
			break
		}
	}
	if len(total) != 5 || total["appnet"] != 2 || total["other"] != 0 {
		t.Fatalf("listed %v", total)
	}

	_, err = s.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: "appnet"})
	wantCode(t, err, codes.FailedPrecondition, "network appnet is in use by services redis, web")
	_, err = s.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: "nope"})
	wantCode(t, err, codes.NotFound, "network nope not found")
	if _, err := s.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: "other"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "redis"} {
		if _, err := s.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: a.Id}); err != nil {
		t.Fatal(err)
	}
	// The freed subnet is the first free one again.
	if e := mkNetwork(t, s, "again", ""); e.Subnet != "10.96.0.0/20" {
		t.Fatalf("reallocated %s", e.Subnet)
	}
}

func TestServiceNetworksResolveAndRefuse(t *testing.T) {
	s, _ := newControl(t)
	ctx := context.Background()
	appnet := mkNetwork(t, s, "appnet", "10.20.0.0/24")
	mkNetwork(t, s, "other", "")
	redis := mkService(t, s, netSpec("redis", att("appnet", "cache")))
	if redis.Spec.Networks[0].Target != appnet.Id || vipsOf(redis)[appnet.Id] != "10.20.0.2" {
		t.Fatalf("redis %v %v", redis.Spec.Networks, redis.VirtualIps)
	}
	refused := []struct {
		sp   *swarmpb.ServiceSpec
		code codes.Code
		want string
	}{
		{netSpec("web", att("nope")), codes.NotFound, "network nope not found"},
		{netSpec("web", att("appnet"), att(appnet.Id)), codes.InvalidArgument, "network appnet is attached more than once (as appnet and " + appnet.Id + ")"},
		{netSpec("web", att("appnet", "redis")), codes.FailedPrecondition, `alias "redis" of service web clashes with name "redis" of service redis on network appnet`},
		{netSpec("cache", att("appnet")), codes.FailedPrecondition, `name "cache" of service cache clashes with alias "cache" of service redis on network appnet`},
		{netSpec("web", att("appnet", "CACHE")), codes.FailedPrecondition, `alias "CACHE" of service web clashes with alias "cache" of service redis on network appnet`},
	}
	for _, c := range refused {
		_, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: c.sp})
		wantCode(t, err, c.code, c.want)
	}
	// The same alias on another network is fine.
	mkService(t, s, netSpec("cache", att("other")))
	var n int
	s.Store.View(func(tx state.ReadTx) { n = len(tx.ListServices()) })
	if n != 2 {
		t.Fatalf("%d services stored", n)
	}
	// Updates are checked the same way, and change nothing when refused.
	_, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "cache", Spec: netSpec("cache", att("other"), att("appnet"))})
	wantCode(t, err, codes.FailedPrecondition, `name "cache" of service cache clashes with alias "cache" of service redis on network appnet`)
	// redis may keep its own alias on update.
	if _, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "redis", Spec: netSpec("redis", att(appnet.Id, "cache", "db"))}); err != nil {
		t.Fatal(err)
	}
}

func TestServiceVIPsAllocatedKeptAndDropped(t *testing.T) {
	s, _ := newControl(t)
	ctx := context.Background()
	a := mkNetwork(t, s, "a", "10.20.0.0/24")
	b := mkNetwork(t, s, "b", "10.30.0.0/24")
	one := mkService(t, s, netSpec("one", att("a")))
	two := mkService(t, s, netSpec("two", att("a"), att("b")))
	if vipsOf(one)[a.Id] != "10.20.0.2" || vipsOf(two)[a.Id] != "10.20.0.3" || vipsOf(two)[b.Id] != "10.30.0.2" {
		t.Fatalf("vips %v %v", one.VirtualIps, two.VirtualIps)
	}
	// Removing one frees .2, which the next service on a gets; two keeps
	// its addresses across an update that adds and removes networks.
	if _, err := s.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: "one"}); err != nil {
		t.Fatal(err)
	}
	up, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "two", Spec: netSpec("two", att("a"))})
	if err != nil {
		t.Fatal(err)
	}
	if got := vipsOf(up.Service); len(got) != 1 || got[a.Id] != "10.20.0.3" {
		t.Fatalf("after update %v", up.Service.VirtualIps)
	}
	if up.Service.SpecVersion != two.SpecVersion+1 {
		t.Fatalf("a network change must roll the tasks: spec version %d -> %d", two.SpecVersion, up.Service.SpecVersion)
	}
	three := mkService(t, s, netSpec("three", att("b"), att("a")))
	if vipsOf(three)[a.Id] != "10.20.0.2" || vipsOf(three)[b.Id] != "10.30.0.2" {
		t.Fatalf("three %v", three.VirtualIps)
	}
	// An update that names networks by name changes nothing and writes
	// nothing.
	same, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "three", Spec: netSpec("three", att("b"), att("a"))})
	if err != nil || same.Service.Meta.Version != three.Meta.Version {
		t.Fatalf("no-op update: %v %v", same, err)
	}
	// A full /24 lower half: 126 addresses (.2 to .127).
	mkNetwork(t, s, "c", "10.40.0.0/24")
	for i := 0; i < 126; i++ {
		mkService(t, s, netSpec(fmt.Sprintf("s%d", i), att("c")))
	}
	_, err = s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: netSpec("full", att("c"))})
	wantCode(t, err, codes.FailedPrecondition, "network c has no free service address left in 10.40.0.0/24")
}

// Concurrent creates onto one network all pass their allocation against
// the same state and pick the same address: the store refuses all but one,
// and the losers allocate again.
func TestConcurrentCreatesGetDistinctVIPs(t *testing.T) {
	const n = 4
	st := state.New()
	r := &gatedRaft{ctlRaft: ctlRaft{storeRaft{store: st}}, n: n, gate: make(chan struct{})}
	s := &ControlServer{Store: st, Raft: r}
	ctx := context.Background()
	net := mkNetwork(t, s, "appnet", "10.20.0.0/24")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: netSpec(fmt.Sprintf("web%d", i), att("appnet"))})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("web%d: %v", i, err)
		}
	}
	seen := map[string]string{}
	st.View(func(tx state.ReadTx) {
		for _, svc := range tx.ListServices() {
			vip := vipOn(svc, net.Id)
			if other, dup := seen[vip]; dup || vip == "" {
				t.Fatalf("%s and %s share VIP %q", svc.Spec.Name, other, vip)
			}
			seen[vip] = svc.Spec.Name
		}
	})
	if len(seen) != n {
		t.Fatalf("%d VIPs: %v", len(seen), seen)
	}
}

func TestGetNetworkShowsServicesAndNodes(t *testing.T) {
	s, r := newControl(t)
	ctx := context.Background()
	net := mkNetwork(t, s, "appnet", "")
	mkService(t, s, netSpec("web", att("appnet", "www")))
	dtApply(t, &r.storeRaft,
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Description: &swarmpb.NodeDescription{Hostname: "h1", DataPort: 4790,
			Networks: []*swarmpb.NodeNetwork{{NetworkId: net.Id, DockerNetwork: "rs-appnet-n1", Bridge: "rs0123", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1", Tasks: 1}}}}),
		state.Create(&swarmpb.Node{Id: "n2", Spec: &swarmpb.NodeSpec{}, Description: &swarmpb.NodeDescription{Hostname: "h2"}}))
	resp, err := s.GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: "appnet"})
	if err != nil {
		t.Fatal(err)
	}
	want := &swarmpb.GetNetworkResponse{
		Network:  resp.Network,
		Services: []*swarmpb.NetworkAttachedService{{ServiceId: resp.Services[0].GetServiceId(), ServiceName: "web", Vip: "10.96.0.2", Aliases: []string{"www"}}},
		Nodes:    []*swarmpb.NetworkNodeInfo{{NodeId: "n1", Hostname: "h1", State: &swarmpb.NodeNetwork{NetworkId: net.Id, DockerNetwork: "rs-appnet-n1", Bridge: "rs0123", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1", Tasks: 1}}},
	}
	if !proto.Equal(resp, want) {
		t.Fatalf("GetNetwork = %v\nwant %v", resp, want)
	}
	_, err = s.GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: "zzz"})
	wantCode(t, err, codes.NotFound, "network zzz not found")
}

// hookRaft runs before once, just before the first batch that deletes a
// network is applied: a write that landed in between.
type hookRaft struct {
	ctlRaft
	before func()
}

func (r *hookRaft) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	if len(b.Actions) == 1 && b.Actions[0].GetNetwork() != nil && b.Actions[0].Kind == swarmpb.StoreAction_KIND_DELETE && r.before != nil {
		f := r.before
		r.before = nil
		f()
	}
	return r.ctlRaft.Apply(ctx, b)
}

// A service attached while the network is being removed (after the API's
// check) keeps it: the store refuses the removal with the same message.
func TestRemoveNetworkRacingAServiceCreate(t *testing.T) {
	st := state.New()
	r := &hookRaft{ctlRaft: ctlRaft{storeRaft{store: st}}}
	s := &ControlServer{Store: st, Raft: r}
	ctx := context.Background()
	mkNetwork(t, s, "appnet", "")
	r.before = func() { mkService(t, s, netSpec("web", att("appnet"))) }
	_, err := s.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: "appnet"})
	wantCode(t, err, codes.FailedPrecondition, "network appnet is in use by service web")
	var n *swarmpb.Network
	st.View(func(tx state.ReadTx) { n = tx.GetNetworkByName("appnet") })
	if n == nil {
		t.Fatal("network removed")
	}
}
