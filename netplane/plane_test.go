package netplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// fakeBridges is an engine in memory; gateways are 127.0.0.5x.
type fakeBridges struct {
	mu        sync.Mutex
	bridges   map[string]Bridge                // by docker name
	endpoints map[string]map[string]netip.Addr // by docker name
	ensured   []string                         // docker names EnsureBridge returned
	removed   []string
	failRm    int // RemoveBridge calls left to fail
	n         int
	base      byte // gateways are 127.0.0.(base+n); 50 if zero
}

func newFakeBridges() *fakeBridges {
	return &fakeBridges{bridges: map[string]Bridge{}, endpoints: map[string]map[string]netip.Addr{}}
}

func (f *fakeBridges) add(netID, name string) Bridge {
	f.n++
	br := Bridge{
		NetworkID:  netID,
		DockerName: "rs-" + name + "-self",
		Interface:  fmt.Sprintf("rsfake%d", f.n),
		Subnet:     netip.MustParsePrefix(fmt.Sprintf("172.30.%d.0/24", f.n)),
		Gateway:    netip.AddrFrom4([4]byte{127, 0, 0, max(f.base, 50) + byte(f.n)}),
	}
	f.bridges[br.DockerName] = br
	return br
}

func (f *fakeBridges) EnsureBridge(_ context.Context, req BridgeRequest) (Bridge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bridges {
		if b.NetworkID == req.NetworkID {
			f.ensured = append(f.ensured, b.DockerName)
			return b, nil
		}
	}
	br := f.add(req.NetworkID, req.NetworkName)
	f.ensured = append(f.ensured, br.DockerName)
	return br, nil
}

func (f *fakeBridges) RemoveBridge(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRm > 0 {
		f.failRm--
		return errors.New("network has active endpoints")
	}
	if len(f.endpoints[name]) > 0 {
		return errors.New("network has active endpoints")
	}
	delete(f.bridges, name)
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeBridges) ListBridges(context.Context) ([]Bridge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Bridge
	for _, b := range f.bridges {
		out = append(out, b)
	}
	return out, nil
}

func (f *fakeBridges) Endpoints(_ context.Context, name string) (map[string]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bridges[name]; !ok {
		return nil, fmt.Errorf("no network %s", name)
	}
	out := map[string]netip.Addr{}
	for k, v := range f.endpoints[name] {
		out[k] = v
	}
	return out, nil
}

func (f *fakeBridges) setEndpoints(name string, eps map[string]netip.Addr) {
	f.mu.Lock()
	f.endpoints[name] = eps
	f.mu.Unlock()
}

func (f *fakeBridges) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.bridges {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type fakeRules struct {
	mu      sync.Mutex
	last    *RuleSet
	fail    error
	calls   int
	removed int // Remove calls
}

func (r *fakeRules) Apply(_ context.Context, rs RuleSet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		return r.fail
	}
	r.last = &rs
	return nil
}

// Remove records an empty rule set: the table is gone.
func (r *fakeRules) Remove(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.removed++
	r.last = &RuleSet{}
	return nil
}

func (r *fakeRules) get() *RuleSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// runPlane starts a Plane over the fakes; DNS on ephemeral ports.
func runPlane(t *testing.T, br *fakeBridges, rules *fakeRules) *Plane {
	t.Helper()
	p := New(Config{NodeID: "self", Bridges: br, Rules: rules})
	p.dnsPort = 0
	p.resolvConf = "/nonexistent"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return p
}

func planeView(withNet bool) *swarmpb.EndpointsMessage {
	if !withNet {
		return &swarmpb.EndpointsMessage{}
	}
	return &swarmpb.EndpointsMessage{
		Networks: []*swarmpb.NetworkView{{Id: appnet, Name: "appnet", Subnet: "10.96.0.0/20"}},
		Services: []*swarmpb.DiscoveryService{
			{ServiceId: "svc-redis", Name: "redis",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.2"}},
				Tasks:    []*swarmpb.DiscoveryTask{{TaskId: "r1", NodeId: "self"}, {TaskId: "r2", NodeId: "other"}}},
			{ServiceId: "svc-idle", Name: "idle",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.4"}}},
		},
		Nodes: []*swarmpb.NodeDataAddr{{NodeId: "other", Addr: "127.0.0.2:4790"}},
	}
}

func (p *Plane) dnsAddr(netID string) (netip.AddrPort, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.bridges[netID]
	if b == nil || b.dns == nil {
		return netip.AddrPort{}, false
	}
	return b.dns.Addr(), true
}

func TestPlaneUpdateSetsUpBridge(t *testing.T) {
	br := newFakeBridges()
	rules := &fakeRules{}
	p := runPlane(t, br, rules)
	p.Update(planeView(true))
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := br.names(); !slices.Equal(got, []string{"rs-appnet-self"}) {
			return fmt.Errorf("bridges %v", got)
		}
		return nil
	})
	// r1's container joins the bridge; the next view (or resync) sees it.
	br.setEndpoints("rs-appnet-self", map[string]netip.Addr{"r1": mp("172.30.1.2")})
	p.Update(planeView(true))
	var rs RuleSet
	testutil.Eventually(t, 5*time.Second, func() error {
		last := rules.get()
		if last == nil || len(last.Bridges) != 1 {
			return fmt.Errorf("rules %+v", last)
		}
		rs = *last
		if len(rs.Bridges[0].Live) != 2 { // redis VIP and r2's task address
			return fmt.Errorf("live %v", rs.Bridges[0].Live)
		}
		return nil
	})
	b := rs.Bridges[0]
	if b.Interface != "rsfake1" || b.Gateway != mp("127.0.0.51") || b.VIPSubnet != netip.MustParsePrefix("10.96.0.0/20") ||
		b.ProxyPort == 0 || b.RefusePort == 0 || b.Live[0] != mp("10.96.0.2") {
		t.Fatalf("bridge rules %+v", b)
	}
	// The proxy listens on the gateway (and resets a connection that was
	// not redirected); the refuse port refuses.
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(b.Gateway, b.ProxyPort).String(), 2*time.Second)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("proxy port: %v", err)
	}
	if c != nil {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(b.Gateway, b.RefusePort).String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("refuse port accepted")
	}
	// DNS on the gateway answers for the bridge's network.
	addr, ok := p.dnsAddr(appnet)
	if !ok || addr.Addr() != b.Gateway {
		t.Fatalf("DNS at %v %v", addr, ok)
	}
	m := query(t, addr, "127.0.0.1", "udp", "redis", dns.TypeA)
	if got := answers(m); len(got) != 1 || got[0] != "10.96.0.2" {
		t.Fatalf("redis = %v", got)
	}
	m = query(t, addr, "127.0.0.1", "udp", "tasks.redis", dns.TypeA)
	if got := answers(m); len(got) != 2 || got[0] != "172.30.1.2" {
		t.Fatalf("tasks.redis = %v", got)
	}
	rep := p.Report()
	if len(rep) != 1 || rep[0].GetNetworkId() != appnet || rep[0].GetDockerNetwork() != "rs-appnet-self" ||
		rep[0].GetTasks() != 1 || rep[0].GetGateway() != "127.0.0.51" || rep[0].GetSubnet() != "172.30.1.0/24" || rep[0].GetBridge() != "rsfake1" {
		t.Fatalf("report %v", rep)
	}
	// An unchanged view does not re-apply the rules.
	rules.mu.Lock()
	calls := rules.calls
	rules.mu.Unlock()
	p.mu.Lock() // a reconcile in flight finishes first
	p.mu.Unlock()
	p.Update(planeView(true))
	p.Update(planeView(true))
	p.mu.Lock()
	p.mu.Unlock()
	rules.mu.Lock()
	if rules.calls > calls+1 {
		t.Errorf("rules applied %d more times for an unchanged view", rules.calls-calls)
	}
	rules.mu.Unlock()
}

func TestPlaneLastTaskLeavesRemovesBridge(t *testing.T) {
	br := newFakeBridges()
	rules := &fakeRules{}
	p := runPlane(t, br, rules)
	p.Update(planeView(true))
	testutil.Eventually(t, 5*time.Second, func() error {
		if last := rules.get(); last == nil || len(last.Bridges) != 1 {
			return errors.New("no rules for the bridge yet")
		}
		return nil
	})
	gw := rules.get().Bridges[0].Gateway
	proxyPort := rules.get().Bridges[0].ProxyPort
	// The network leaves the view while a container is still on the bridge
	// (it is stopping): the bridge stays.
	br.setEndpoints("rs-appnet-self", map[string]netip.Addr{"r1": mp("172.30.1.2")})
	br.mu.Lock()
	br.failRm = 1 // and the engine refuses once more after the container left
	br.mu.Unlock()
	p.Update(planeView(false))
	testutil.Eventually(t, 5*time.Second, func() error {
		if last := rules.get(); last == nil || len(last.Bridges) != 1 || len(last.Bridges[0].Live) != 0 {
			return fmt.Errorf("rules %+v", last)
		}
		return nil
	})
	if got := br.names(); len(got) != 1 {
		t.Fatalf("bridge removed with a container on it: %v", got)
	}
	br.setEndpoints("rs-appnet-self", nil)
	testutil.Eventually(t, 15*time.Second, func() error {
		p.Update(planeView(false)) // wake the loop; the failed removal is retried
		if got := br.names(); len(got) != 0 {
			return fmt.Errorf("bridges %v", got)
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if last := rules.get(); last == nil || len(last.Bridges) != 0 {
			return fmt.Errorf("rules %+v", last)
		}
		rules.mu.Lock()
		removed := rules.removed
		rules.mu.Unlock()
		if removed == 0 {
			return fmt.Errorf("the node's table was emptied, not removed")
		}
		if len(p.Report()) != 0 {
			return fmt.Errorf("report %v", p.Report())
		}
		return nil
	})
	if c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(gw, proxyPort).String(), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after its bridge was removed")
	}
}

func taskOn(nets ...string) *swarmpb.Task {
	t := &swarmpb.Task{Id: "t1", Spec: &swarmpb.ServiceSpec{}}
	for _, n := range nets {
		t.Spec.Networks = append(t.Spec.Networks, &swarmpb.NetworkAttachmentConfig{Target: n, Aliases: []string{"x"}})
	}
	return t
}

func TestPlaneAttach(t *testing.T) {
	br := newFakeBridges()
	p := runPlane(t, br, &fakeRules{})
	ctx := context.Background()
	if att, err := p.Attach(ctx, taskOn()); err != nil || len(att.Networks) != 0 {
		t.Fatalf("no networks: %v %v", att, err)
	}
	// The task arrives before the view naming its network: Attach waits.
	type result struct {
		att Attachment
		err error
	}
	res := make(chan result, 1)
	go func() {
		att, err := p.Attach(ctx, taskOn(appnet, appnet))
		res <- result{att, err}
	}()
	p.Update(planeView(true))
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Attach hung")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.att.Networks) != 1 || r.att.Networks[0].DockerName != "rs-appnet-self" || r.att.Networks[0].NetworkID != appnet ||
		len(r.att.DNS) != 1 || r.att.DNS[0] != mp("127.0.0.51") {
		t.Fatalf("attachment %+v", r.att)
	}
	// A network the view never names (yet): the bridge is named after its
	// ID, and kept although the view does not list it.
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	att, err := p.Attach(sctx, taskOn("net-new-0123456789"))
	if err != nil || att.Networks[0].DockerName != "rs-net-new-0123-self" {
		t.Fatalf("attach before the view: %+v %v", att, err)
	}
	p.Update(planeView(true))
	p.mu.Lock() // let the reconcile run
	p.mu.Unlock()
	p.Update(planeView(true))
	testutil.Eventually(t, 2*time.Second, func() error {
		if _, ok := p.dnsAddr("net-new-0123456789"); !ok {
			return errors.New("no DNS on the attached bridge")
		}
		return nil
	})
	if !slices.Contains(br.names(), "rs-net-new-0123-self") {
		t.Fatalf("just-attached bridge removed: %v", br.names())
	}
}

func TestPlaneAttachErrors(t *testing.T) {
	p := New(Config{NodeID: "self"})
	t.Cleanup(p.shutdown)
	if _, err := p.Attach(context.Background(), taskOn(appnet)); err == nil || !strings.Contains(err.Error(), "cannot create networks") {
		t.Fatalf("no Bridges: %v", err)
	}
	p2 := New(Config{NodeID: "self", Bridges: newFakeBridges(), RulesError: errors.New("nft: operation not permitted")})
	t.Cleanup(p2.shutdown)
	if _, err := p2.Attach(context.Background(), taskOn(appnet)); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("rules unusable: %v", err)
	}
	if att, err := p2.Attach(context.Background(), taskOn()); err != nil || len(att.Networks) != 0 {
		t.Fatalf("a task without networks must not fail: %v", err)
	}
}

func TestPlaneAdoptsAfterRestart(t *testing.T) {
	br := newFakeBridges()
	br.add(appnet, "appnet")
	br.add("net-gone", "gone")
	br.setEndpoints("rs-appnet-self", map[string]netip.Addr{"r1": mp("172.30.1.2")})
	rules := &fakeRules{}
	p := runPlane(t, br, rules)
	// Before any view: everything adopted is kept and served.
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(p.Report()) != 2 {
			return fmt.Errorf("report %v", p.Report())
		}
		if _, ok := p.dnsAddr("net-gone"); !ok {
			return errors.New("adopted bridge not served")
		}
		return nil
	})
	if len(br.names()) != 2 {
		t.Fatal("removed a bridge before the first view")
	}
	if rules.get() != nil {
		t.Fatal("rules replaced before the first view")
	}
	p.Update(planeView(true))
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := br.names(); !slices.Equal(got, []string{"rs-appnet-self"}) {
			return fmt.Errorf("bridges %v", got)
		}
		return nil
	})
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.n != 2 || len(br.bridges) != 1 {
		t.Fatalf("adopted bridge recreated: %d made", br.n)
	}
}

func TestPlaneRulesFailureIsRetried(t *testing.T) {
	br := newFakeBridges()
	rules := &fakeRules{fail: errors.New("nft: no such file")}
	p := runPlane(t, br, rules)
	p.Update(planeView(true))
	testutil.Eventually(t, 5*time.Second, func() error {
		if p.RulesError() == nil {
			return errors.New("no rules error recorded")
		}
		return nil
	})
	rules.mu.Lock()
	rules.fail = nil
	rules.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		p.Update(planeView(true))
		if p.RulesError() != nil || rules.get() == nil {
			return errors.New("rules not applied after the failure cleared")
		}
		return nil
	})
}

func TestPlaneUpdateDoesNotBlock(t *testing.T) {
	p := New(Config{NodeID: "self", Bridges: newFakeBridges()})
	t.Cleanup(p.shutdown)
	// Not running: many updates must not block.
	done := make(chan struct{})
	go func() {
		for range 100 {
			p.Update(planeView(true))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Update blocked")
	}
}

func TestPlaneRulesForContainersOnTwoNetworks(t *testing.T) {
	br := newFakeBridges()
	rules := &fakeRules{}
	p := runPlane(t, br, rules)
	v := testView() // appnet and othernet
	p.Update(v)
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := br.names(); len(got) != 2 {
			return fmt.Errorf("bridges %v", got)
		}
		return nil
	})
	// w1 joins both bridges.
	br.setEndpoints("rs-appnet-self", map[string]netip.Addr{"w1": mp("172.30.1.2")})
	br.setEndpoints("rs-othernet-self", map[string]netip.Addr{"w1": mp("172.30.2.2")})
	testutil.Eventually(t, 5*time.Second, func() error {
		p.Update(v)
		last := rules.get()
		if last == nil || len(last.Bridges) != 4 {
			return fmt.Errorf("rules %+v", last)
		}
		return nil
	})
	got := map[string]BridgeRules{}
	for _, b := range rules.get().Bridges {
		got[b.Interface+" "+b.VIPSubnet.String()] = b
	}
	for _, k := range []string{"rsfake1 10.96.0.0/20", "rsfake1 10.96.16.0/20", "rsfake2 10.96.0.0/20", "rsfake2 10.96.16.0/20"} {
		if _, ok := got[k]; !ok {
			t.Fatalf("no rules for %s: %v", k, got)
		}
	}
	// Through appnet's bridge, othernet's live addresses go to appnet's proxy.
	a, o := got["rsfake1 10.96.0.0/20"], got["rsfake1 10.96.16.0/20"]
	if o.ProxyPort != a.ProxyPort || o.Gateway != a.Gateway || !slices.Contains(o.Live, mp("10.96.16.2")) {
		t.Fatalf("cross-network rules %+v (own %+v)", o, a)
	}
}

// Two running Planes: node-a's proxy reaches node-b's task through node-b's
// data port.
func TestPlanesAcrossNodes(t *testing.T) {
	root := testRoot(t)
	credsA, credsB := testCreds(t, root, "node-a", "cluster-1"), testCreds(t, root, "node-b", "cluster-1")
	free := func() string {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	bAddr := free()
	port, _ := backendServer(t, "127.0.0.72", 0, "R")
	start := func(nodeID, dataAddr string, br *fakeBridges, rules *fakeRules, creds *ca.Creds) *Plane {
		p := New(Config{NodeID: nodeID, DataAddr: dataAddr, Bridges: br, Rules: rules,
			ServerTLS: creds.ServerTLSConfig, ClientTLS: func() *tls.Config { return creds.ClientTLSConfig(TunnelALPN) }})
		p.dnsPort = 0
		p.resolvConf = "/nonexistent"
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return p
	}
	brA, brB := newFakeBridges(), newFakeBridges()
	brB.base = 60
	rulesA := &fakeRules{}
	a := start("node-a", "", brA, rulesA, credsA)
	b := start("node-b", bAddr, brB, &fakeRules{}, credsB)
	view := tunnelView(bAddr, true) // r2 on node-b, w1 on node-a
	b.Update(view)
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(brB.names()) != 1 {
			return errors.New("no bridge on node-b")
		}
		return nil
	})
	brB.setEndpoints("rs-appnet-self", map[string]netip.Addr{"r2": mp("127.0.0.72")})
	testutil.Eventually(t, 5*time.Second, func() error {
		b.Update(view)
		if _, ok := b.table().LocalTask(appnet, "r2"); !ok {
			return errors.New("node-b does not know r2's container yet")
		}
		return nil
	})
	var dst atomic.Pointer[netip.AddrPort]
	vip := netip.AddrPortFrom(mp("10.96.0.2"), uint16(port))
	dst.Store(&vip)
	a.origDst = func(*net.TCPConn) (netip.AddrPort, error) { return *dst.Load(), nil }
	a.Update(view)
	var proxyAt string
	testutil.Eventually(t, 5*time.Second, func() error {
		last := rulesA.get()
		if last == nil || len(last.Bridges) != 1 || len(last.Bridges[0].Live) == 0 {
			return fmt.Errorf("node-a rules %+v", last)
		}
		proxyAt = netip.AddrPortFrom(last.Bridges[0].Gateway, last.Bridges[0].ProxyPort).String()
		return nil
	})
	got, err := roundTrip(proxyAt, "across")
	if err != nil || got != "R:across" {
		t.Fatalf("node-a to r2 on node-b: %q, %v", got, err)
	}
}

// A query from a container the table does not know yet (just started) makes
// the Plane list the bridge's containers again, before the periodic resync.
func TestPlaneUnknownSourceRefreshes(t *testing.T) {
	br := newFakeBridges()
	p := runPlane(t, br, &fakeRules{})
	p.Update(planeView(true))
	var addr netip.AddrPort
	testutil.Eventually(t, 5*time.Second, func() error {
		var ok bool
		if addr, ok = p.dnsAddr(appnet); !ok {
			return errors.New("no DNS yet")
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if len(p.wake) != 0 {
			return errors.New("a reconcile is pending")
		}
		return nil
	})
	p.mu.Lock() // the reconcile in flight (if any) is over
	p.mu.Unlock()
	br.setEndpoints("rs-appnet-self", map[string]netip.Addr{"r1": mp("127.0.0.81")})
	start := time.Now()
	testutil.Eventually(t, 3*time.Second, func() error {
		query(t, addr, "127.0.0.81", "udp", "redis", dns.TypeA)
		if !p.table().Known(mp("127.0.0.81")) {
			return errors.New("the asking container is still unknown")
		}
		return nil
	})
	if d := time.Since(start); d >= resyncEvery {
		t.Fatalf("known only after %v, the periodic resync", d)
	}
}
