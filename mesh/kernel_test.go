package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// recForwarder records what the mesh asks of the kernel.
type recForwarder struct {
	mu       sync.Mutex
	applied  []KernelRules // the successful Applies
	attempts int           // every Apply
	removed  int
	fail     error
}

func (f *recForwarder) Apply(_ context.Context, rs KernelRules) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	if f.fail != nil {
		return f.fail
	}
	f.applied = append(f.applied, rs)
	return nil
}

func (f *recForwarder) Remove(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed++
	return nil
}

func (f *recForwarder) last(t *testing.T) KernelRules {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		t.Fatal("no rules applied")
	}
	return f.applied[len(f.applied)-1]
}

func TestNFTMeshScript(t *testing.T) {
	rs := KernelRules{
		IngressIP: netip.MustParseAddr("127.0.7.1"),
		Ports: []KernelPort{{Port: 8080, Slots: []KernelSlot{
			{Addr: netip.MustParseAddrPort("127.0.7.1:32768"), Direct: netip.MustParseAddrPort("172.17.0.2:80")},
			{Addr: netip.MustParseAddrPort("127.0.7.2:32769")},
			{},
			{Addr: netip.MustParseAddrPort("198.51.100.1:32770")},
			{Addr: netip.MustParseAddrPort("198.51.100.1:32771"), Direct: netip.MustParseAddrPort("172.17.0.3:80")},
		}}},
	}
	// Chains of an earlier Apply: port_9090's go, be_8080_0 stays.
	prev := map[string]bool{"ingress": true, "port_9090": true, "be_9090_0": true, "be_8080_0": true}
	got, chains, err := nftMeshScript("raftswarm_mesh_abc", rs, prev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table ip raftswarm_mesh_abc\nflush table ip raftswarm_mesh_abc\n" +
			"chain ip raftswarm_mesh_abc be_9090_0\ndelete chain ip raftswarm_mesh_abc be_9090_0\n" +
			"chain ip raftswarm_mesh_abc port_9090\ndelete chain ip raftswarm_mesh_abc port_9090\n" +
			"table ip raftswarm_mesh_abc {",
		"\tcounter conns_8080 {\n\t}",
		"type nat hook prerouting priority -110; policy accept;\n\t\tip daddr 127.0.7.1 jump ingress",
		"type nat hook output priority -110; policy accept;\n\t\tip daddr 127.0.7.1 jump ingress",
		"tcp dport 8080 jump port_8080",
		"numgen random mod 5 vmap { 0 : goto be_8080_0, 1 : goto be_8080_1, 2 : accept, 3 : goto be_8080_3, 4 : goto be_8080_4 }",
		"chain be_8080_0 {\n\t\tmeta l4proto tcp ip saddr 127.0.0.0/8 counter name conns_8080 dnat to 127.0.7.1:32768\n\t\tmeta l4proto tcp counter name conns_8080 dnat to 172.17.0.2:80\n\t}",
		// loopback published address: clients not on loopback fall through
		"chain be_8080_1 {\n\t\tmeta l4proto tcp ip saddr 127.0.0.0/8 counter name conns_8080 dnat to 127.0.7.2:32769\n\t}",
		"chain be_8080_3 {\n\t\tmeta l4proto tcp counter name conns_8080 dnat to 198.51.100.1:32770\n\t}",
		// the task calling its own published port goes through the
		// published address (no hairpin on the bridge)
		"chain be_8080_4 {\n\t\tmeta l4proto tcp ip saddr 127.0.0.0/8 counter name conns_8080 dnat to 198.51.100.1:32771\n" +
			"\t\tmeta l4proto tcp ip saddr 172.17.0.3 counter name conns_8080 dnat to 198.51.100.1:32771\n" +
			"\t\tmeta l4proto tcp counter name conns_8080 dnat to 172.17.0.3:80\n\t}",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "be_8080_2") {
		t.Errorf("the userspace slot has a chain:\n%s", got)
	}
	if strings.Contains(got, "delete table") || strings.Contains(got, "delete chain ip raftswarm_mesh_abc be_8080_0") {
		t.Errorf("the script deletes the table (its counters) or a chain still wanted:\n%s", got)
	}
	wantChains := map[string]bool{"ingress": true, "port_8080": true, "be_8080_0": true, "be_8080_1": true, "be_8080_3": true, "be_8080_4": true}
	if len(chains) != len(wantChains) {
		t.Errorf("chains = %v, want %v", chains, wantChains)
	}
	for c := range wantChains {
		if !chains[c] {
			t.Errorf("chains = %v, want %v", chains, wantChains)
		}
	}

	all, _, err := nftMeshScript("t", KernelRules{}, nil)
	if err != nil || !strings.Contains(all, "fib daddr type local jump ingress") {
		t.Errorf("all addresses: %v\n%s", err, all)
	}
	for name, bad := range map[string]KernelRules{
		"v6 ingress": {IngressIP: netip.MustParseAddr("::1")},
		"dup port":   {Ports: []KernelPort{{Port: 1}, {Port: 1}}},
		"zero port":  {Ports: []KernelPort{{Port: 0}}},
		"v6 backend": {Ports: []KernelPort{{Port: 1, Slots: []KernelSlot{{Addr: netip.MustParseAddrPort("[::1]:80")}}}}},
		"no port":    {Ports: []KernelPort{{Port: 1, Slots: []KernelSlot{{Addr: netip.MustParseAddrPort("1.2.3.4:0")}}}}},
		"bad direct": {Ports: []KernelPort{{Port: 1, Slots: []KernelSlot{{Addr: netip.MustParseAddrPort("1.2.3.4:5"), Direct: netip.MustParseAddrPort("0.0.0.0:80")}}}}},
	} {
		if _, _, err := nftMeshScript("t", bad, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestParseNFTCounters reads `nft -j list counters table ip T` as nft
// 1.0.6 prints it: the port counters of the table, nothing else.
func TestParseNFTCounters(t *testing.T) {
	out := `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},` +
		` {"counter": {"family": "ip", "name": "conns_8080", "table": "raftswarm_mesh_abc", "handle": 6, "packets": 3, "bytes": 180}},` +
		` {"counter": {"family": "ip", "name": "conns_9090", "table": "raftswarm_mesh_abc", "handle": 24, "packets": 0, "bytes": 0}},` +
		` {"counter": {"family": "ip", "name": "conns_80", "table": "raftswarm_mesh_other", "handle": 2, "packets": 7, "bytes": 420}},` +
		` {"counter": {"family": "inet", "name": "conns_81", "table": "raftswarm_mesh_abc", "handle": 3, "packets": 7, "bytes": 420}},` +
		` {"counter": {"family": "ip", "name": "conns_x", "table": "raftswarm_mesh_abc", "handle": 4, "packets": 1, "bytes": 60}},` +
		` {"counter": {"family": "ip", "name": "conns_70000", "table": "raftswarm_mesh_abc", "handle": 5, "packets": 1, "bytes": 60}},` +
		` {"counter": {"family": "ip", "name": "other_82", "table": "raftswarm_mesh_abc", "handle": 7, "packets": 1, "bytes": 60}}]}`
	got, err := parseNFTCounters("raftswarm_mesh_abc", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[8080] != 3 || got[9090] != 0 {
		t.Fatalf("counters = %v, want 8080:3 9090:0", got)
	}
	if got, err := parseNFTCounters("t", []byte(`{"nftables": [{"metainfo": {"json_schema_version": 1}}]}`)); err != nil || len(got) != 0 {
		t.Fatalf("no counters: %v, %v", got, err)
	}
	if _, err := parseNFTCounters("t", []byte("Error: No such file or directory\n")); err == nil {
		t.Fatal("nft's error text parsed as counters")
	}
}

func TestNFTTableName(t *testing.T) {
	for id, want := range map[string]string{
		"AbCdEf0123456789": "raftswarm_mesh_abcdef012345",
		"x-y":              "raftswarm_mesh_xy",
		"--":               "",
	} {
		if got := NFTTableName(id); got != want {
			t.Errorf("NFTTableName(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestKernelRulesFromTable checks how the endpoint table becomes kernel
// rules: tasks published on this host are DNATed (to their container when
// known), tasks on other hosts are left to the userspace listener, which
// then serves only them; PROXY-protocol and UDP ports stay in user space.
func TestKernelRulesFromTable(t *testing.T) {
	m := New("127.0.7.1", testLogger())
	defer m.Close()
	// 198.51.100.0/24 stands for this host's own (non-loopback) addresses.
	m.isHostAddr = func(a netip.Addr) bool { return a.IsLoopback() || netip.MustParsePrefix("198.51.100.0/24").Contains(a) }
	f := &recForwarder{}
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	if f.removed != 1 {
		t.Fatalf("UseKernel removed stale rules %d times, want 1", f.removed)
	}
	if p, _ := m.Path(); p != PathUserspace {
		t.Fatalf("path before any table = %s", p)
	}
	port, pp, udp := freePort(t, "127.0.7.1"), freePort(t, "127.0.7.1"), freePort(t, "127.0.7.1")
	ppEp := endpoint("tcp", pp, "127.0.7.2:1000")
	ppEp.ProxyProtocol = ProxyProtocolV2
	eps := []*swarmpb.ServiceEndpoint{
		{Protocol: "tcp", PublishedPort: port, Backends: []*swarmpb.Backend{
			{TaskId: "local", Addr: "198.51.100.1:2000"},
			{TaskId: "samehost", Addr: "198.51.100.2:2001"},
			{TaskId: "remote", Addr: "192.0.2.9:2002"},
		}},
		ppEp,
		endpoint("udp", udp, "127.0.7.2:1001"),
	}
	mustUpdate(t, m, eps...)
	if p, why := m.Path(); p != PathKernel {
		t.Fatalf("path = %s (%s), want kernel", p, why)
	}
	rs := f.last(t)
	if rs.IngressIP != netip.MustParseAddr("127.0.7.1") || len(rs.Ports) != 1 || rs.Ports[0].Port != uint16(port) {
		t.Fatalf("rules = %+v, want only tcp/%d on 127.0.7.1", rs, port)
	}
	want := []KernelSlot{{Addr: netip.MustParseAddrPort("198.51.100.1:2000")}, {Addr: netip.MustParseAddrPort("198.51.100.2:2001")}, {}}
	if got := rs.Ports[0].Slots; !slotsEqual(got, want) {
		t.Fatalf("slots = %v, want %v", got, want)
	}
	m.mu.Lock()
	user := m.ports[portKey{"tcp", port}].(*tcpPort).user.Load()
	m.mu.Unlock()
	if user == nil || len(user.list) != 1 || user.list[0].addr != "192.0.2.9:2002" {
		t.Fatalf("userspace share = %+v, want only the remote task", user)
	}

	// The container address of the local task: clients go straight there.
	m.SetLocal(map[LocalKey]netip.AddrPort{{TaskID: "local", HostPort: 2000}: netip.MustParseAddrPort("172.17.0.5:80")})
	want[0].Direct = netip.MustParseAddrPort("172.17.0.5:80")
	if got := f.last(t).Ports[0].Slots; !slotsEqual(got, want) {
		t.Fatalf("slots after SetLocal = %v, want %v", got, want)
	}

	// A task published on loopback takes only loopback clients in the
	// kernel; the others fall through, so the listener needs every backend.
	eps[0].Backends = append(eps[0].Backends, &swarmpb.Backend{TaskId: "lo", Addr: "127.0.7.2:2003"})
	mustUpdate(t, m, eps...)
	m.mu.Lock()
	user = m.ports[portKey{"tcp", port}].(*tcpPort).user.Load()
	m.mu.Unlock()
	if user != nil {
		t.Fatalf("userspace share %+v with a loopback-only slot, want all backends", user)
	}

	// A failing kernel leaves every port to the userspace proxy.
	f.mu.Lock()
	f.fail = errors.New("boom")
	f.mu.Unlock()
	eps[0].Backends = eps[0].Backends[:3] // a change: unchanged rules are not applied again
	mustUpdate(t, m, eps...)
	if p, why := m.Path(); p != PathUserspace || !strings.Contains(why, "boom") {
		t.Fatalf("path after failure = %s (%s)", p, why)
	}
	m.mu.Lock()
	user = m.ports[portKey{"tcp", port}].(*tcpPort).user.Load()
	m.mu.Unlock()
	if user != nil {
		t.Fatal("userspace share kept after the kernel failed")
	}
	// The rules applied before the failed transaction are removed: they
	// would go on taking connections while the node says userspace.
	if f.removed != 2 {
		t.Fatalf("rules removed %d times after a failed update, want 2 (UseKernel, the failure)", f.removed)
	}

	m.Close()
	if f.removed != 3 {
		t.Fatalf("Close removed rules %d times in all, want 3", f.removed)
	}
}

func (f *recForwarder) applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// TestKernelRulesAppliedOnlyWhenChanged: the managers send the whole
// endpoint table on every change of any service; a table (or a SetLocal)
// that leaves this node's kernel rules as they are runs no nft
// transaction, while one that changes them does, and a failed transaction
// is retried with the next table even if that is the same.
func TestKernelRulesAppliedOnlyWhenChanged(t *testing.T) {
	m := New("127.0.7.1", testLogger())
	defer m.Close()
	m.isHostAddr = func(a netip.Addr) bool { return a.IsLoopback() || netip.MustParsePrefix("198.51.100.0/24").Contains(a) }
	f := &recForwarder{}
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	port, udp := freePort(t, "127.0.7.1"), freePort(t, "127.0.7.1")
	table := func(remote, udpBackend string) []*swarmpb.ServiceEndpoint {
		return []*swarmpb.ServiceEndpoint{
			{Protocol: "tcp", PublishedPort: port, Backends: []*swarmpb.Backend{
				{TaskId: "local", Addr: "198.51.100.1:2000"},
				{TaskId: "remote", Addr: remote},
			}},
			endpoint("udp", udp, udpBackend),
		}
	}
	step := func(what string, want int) {
		t.Helper()
		if got := f.applies(); got != want {
			t.Fatalf("after %s: %d nft transactions, want %d", what, got, want)
		}
	}
	mustUpdate(t, m, table("192.0.2.9:2002", "127.0.7.2:1001")...)
	step("the first table", 1)
	mustUpdate(t, m, table("192.0.2.9:2002", "127.0.7.2:1001")...)
	step("the same table again", 1)
	mustUpdate(t, m, table("192.0.2.9:2002", "127.0.7.2:1002")...)
	step("a change of a UDP port only", 1)

	// The remote task moved: same kernel rules, but the userspace
	// listener's share must follow.
	mustUpdate(t, m, table("192.0.2.10:2002", "127.0.7.2:1002")...)
	step("a change of a task on another host", 1)
	m.mu.Lock()
	user := m.ports[portKey{"tcp", port}].(*tcpPort).user.Load()
	m.mu.Unlock()
	if user == nil || len(user.list) != 1 || user.list[0].addr != "192.0.2.10:2002" {
		t.Fatalf("userspace share = %+v, want the moved remote task", user)
	}

	m.SetLocal(map[LocalKey]netip.AddrPort{{TaskID: "elsewhere", HostPort: 3000}: netip.MustParseAddrPort("172.17.0.9:80")})
	step("SetLocal of a task not in the table", 1)
	m.SetLocal(map[LocalKey]netip.AddrPort{{TaskID: "local", HostPort: 2000}: netip.MustParseAddrPort("172.17.0.5:80")})
	step("SetLocal of the local task", 2)
	mustUpdate(t, m, table("192.0.2.10:2002", "127.0.7.2:1002")...)
	step("the same table after SetLocal", 2)

	f.mu.Lock()
	f.fail = errors.New("boom")
	f.mu.Unlock()
	m.SetLocal(nil)
	step("a failed transaction", 3)
	if p, _ := m.Path(); p != PathUserspace || !m.KernelRetry() {
		t.Fatalf("path after a failed transaction = %s, retry %v; want userspace, to be retried", p, m.KernelRetry())
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	mustUpdate(t, m, table("192.0.2.10:2002", "127.0.7.2:1002")...)
	step("the same table after a failed transaction", 4)
	if p, why := m.Path(); p != PathKernel || m.KernelRetry() {
		t.Fatalf("path = %s (%s), retry %v; want kernel again, nothing to retry", p, why, m.KernelRetry())
	}
	mustUpdate(t, m, table("192.0.2.10:2002", "127.0.7.2:1002")...)
	step("the same table once applied", 4)
	mustUpdate(t, m, table("192.0.2.10:2002", "127.0.7.2:1002")[1:]...)
	step("the TCP port unpublished", 5)
}

func slotsEqual(a, b []KernelSlot) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProxyV2Header(t *testing.T) {
	src, dst := netip.MustParseAddrPort("203.0.113.7:51234"), netip.MustParseAddrPort("127.0.7.1:8080")
	b := appendProxyV2(nil, src, dst)
	if len(b) != 28 {
		t.Fatalf("IPv4 header is %d bytes, want 28", len(b))
	}
	gs, gd, err := ReadProxyV2(bytes.NewReader(b))
	if err != nil || gs != src || gd != dst {
		t.Fatalf("read back %v %v %v", gs, gd, err)
	}
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2")
	gs, gd, err = ReadProxyV2(bytes.NewReader(appendProxyV2(nil, src6, dst6)))
	if err != nil || gs != src6 || gd != dst6 {
		t.Fatalf("IPv6 read back %v %v %v", gs, gd, err)
	}
	gs, _, err = ReadProxyV2(bytes.NewReader(appendProxyV2(nil, src, dst6)))
	if err != nil || gs.IsValid() {
		t.Fatalf("mixed families: %v %v, want a LOCAL header", gs, err)
	}
	if _, _, err := ReadProxyV2(strings.NewReader("GET / HTTP/1.1\r\n\r\n")); err == nil {
		t.Fatal("HTTP accepted as a PROXY header")
	}
}

// TestProxyProtocolUserspace checks that a PROXY-protocol port sends the
// header, with the client's address, before the client's bytes.
func TestProxyProtocolUserspace(t *testing.T) {
	ln := newRawListener(t)
	m := newMesh(t, "127.0.7.1")
	port := freePort(t, "127.0.7.1")
	ep := endpoint("tcp", port, ln.Addr().String())
	ep.ProxyProtocol = ProxyProtocolV2
	mustUpdate(t, m, ep)

	c, err := dialLine(hostPort("127.0.7.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := ln.accept(t)
	defer srv.Close()
	src, dst, err := ReadProxyV2(srv)
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != c.LocalAddr().String() || dst.String() != hostPort("127.0.7.1", port) {
		t.Fatalf("header says %v -> %v, want %v -> 127.0.7.1:%d", src, dst, c.LocalAddr(), port)
	}

	// A bad version is refused by Update.
	ep.ProxyProtocol = "v9"
	var ue *UpdateError
	if err := m.Update([]*swarmpb.ServiceEndpoint{ep}); !errors.As(err, &ue) {
		t.Fatalf("v9 accepted: %v", err)
	}
}

// rawListener hands accepted connections to the test.
type rawListener struct {
	net.Listener
	conns chan net.Conn
}

func newRawListener(t *testing.T) *rawListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.7.2:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &rawListener{Listener: ln, conns: make(chan net.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(l.conns)
		for c := range l.conns {
			c.Close()
		}
	})
	return l
}

func (l *rawListener) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-l.conns:
		c.SetDeadline(time.Now().Add(waitTimeout))
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no connection reached the backend")
		return nil
	}
}

// blockingForwarder's Apply waits until the test releases it, as an nft run
// does on a loaded host.
type blockingForwarder struct {
	entered chan struct{} // a value for every Apply that started
	release chan struct{} // closed: every Apply returns
}

func (f *blockingForwarder) Apply(ctx context.Context, _ KernelRules) error {
	f.entered <- struct{}{}
	select {
	case <-f.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *blockingForwarder) Remove(context.Context) error { return nil }

// Path answers while the kernel is being programmed: the agent reads it for
// every heartbeat, and a heartbeat that waited for an nft run came late
// enough for the leader to mark the node Down and replace its tasks.
func TestPathDoesNotWaitForTheKernel(t *testing.T) {
	m := New("127.0.7.1", testLogger())
	t.Cleanup(func() { m.Close() })
	f := &blockingForwarder{entered: make(chan struct{}, 16), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(f.release) }) }
	t.Cleanup(release) // before Close, which waits for the Apply in progress
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	ep := endpoint("tcp", freePort(t, "127.0.7.1"), "127.0.7.1:2000")
	updated := make(chan error, 1)
	go func() { updated <- m.Update([]*swarmpb.ServiceEndpoint{ep}) }()
	select {
	case <-f.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Update never applied the kernel rules")
	}

	type answer struct{ path, reason string }
	got := make(chan answer, 1)
	go func() {
		p, why := m.Path()
		got <- answer{p, why}
	}()
	select {
	case a := <-got:
		if a.path != PathUserspace || a.reason != "no endpoint table yet" {
			t.Errorf("path while the first rules are applied = %s (%s), want userspace (no endpoint table yet)", a.path, a.reason)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Path waited for the kernel rules being applied")
	}

	release()
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if p, why := m.Path(); p != PathKernel {
		t.Fatalf("path after the rules applied = %s (%s), want kernel", p, why)
	}
}

// Stats answers while the kernel is being programmed: the node's metrics
// scrape reads it, and must not hang for as long as an nft run takes on a
// loaded host (nor, with it, the scrape's other figures).
func TestStatsDoesNotWaitForTheKernel(t *testing.T) {
	m := New("127.0.7.1", testLogger())
	t.Cleanup(func() { m.Close() })
	f := &blockingForwarder{entered: make(chan struct{}, 16), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(f.release) }) }
	t.Cleanup(release) // before Close, which waits for the Apply in progress
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.7.1")
	ep := endpoint("tcp", port, "127.0.7.1:2000")
	ep.ServiceName = "web"
	updated := make(chan error, 1)
	go func() { updated <- m.Update([]*swarmpb.ServiceEndpoint{ep}) }()
	select {
	case <-f.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Update never applied the kernel rules")
	}

	got := make(chan Stats, 1)
	go func() { got <- m.Stats() }()
	select {
	case s := <-got:
		// The ports the Update bound before it programmed the kernel.
		if s.Listeners != 1 || len(s.Ports) != 1 || s.Ports[0].Port != port || s.Ports[0].Service != "web" {
			t.Errorf("stats while the rules are applied = %+v, want tcp/%d of web", s, port)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Stats waited for the kernel rules being applied")
	}

	release()
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	m.Close()
	if s := m.Stats(); s.Listeners != 0 || len(s.Ports) != 0 {
		t.Fatalf("stats after Close = %+v, want no port", s)
	}
}

// countingForwarder is a recForwarder whose kernel counts connections.
type countingForwarder struct {
	recForwarder
	counts map[uint16]uint64 // under mu
	reads  int
	err    error
}

func (f *countingForwarder) Connections(context.Context) (map[uint16]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	out := make(map[uint16]uint64, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out, nil
}

func (f *countingForwarder) set(counts map[uint16]uint64, err error) {
	f.mu.Lock()
	f.counts, f.err = counts, err
	f.mu.Unlock()
}

func (f *countingForwarder) nreads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// TestStatsKernelCounts: Stats reports the kernel's per-port counts beside
// the userspace ones once rules are applied, reads the kernel at most once
// per kernelCountsMaxAge however often it is called, and keeps the last
// figures when a read fails.
func TestStatsKernelCounts(t *testing.T) {
	m := New("127.0.7.1", testLogger())
	defer m.Close()
	f := &countingForwarder{}
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	tcp, udp := freePort(t, "127.0.7.1"), freePort(t, "127.0.7.1")
	// Counters of TCP ports published before (one numbered as the UDP
	// port) count in the node's figure only.
	f.set(map[uint16]uint64{uint16(tcp): 7, uint16(udp): 99, 1: 3}, nil)
	tcpKernel := func(s Stats) uint64 {
		for _, p := range s.Ports {
			if p.Protocol == "tcp" {
				return p.KernelConnections
			}
		}
		t.Fatalf("no tcp port in %+v", s)
		return 0
	}
	if s := m.Stats(); s.Kernel || f.nreads() != 0 {
		t.Fatalf("before any rules: kernel %v, %d reads", s.Kernel, f.nreads())
	}
	mustUpdate(t, m, endpoint("tcp", tcp, "127.0.7.1:2000"), endpoint("udp", udp, "127.0.7.1:2001"))
	s := m.Stats()
	if !s.Kernel || s.KernelForwarded != 7+99+3 || len(s.Ports) != 2 {
		t.Fatalf("stats %+v: want kernel figures, 109 in all, two ports", s)
	}
	for _, p := range s.Ports {
		want := map[string]uint64{"tcp": 7, "udp": 0}[p.Protocol]
		if p.KernelConnections != want {
			t.Errorf("%s/%d: kernel %d, want %d", p.Protocol, p.Port, p.KernelConnections, want)
		}
	}
	for i := 0; i < 50; i++ {
		m.Stats()
	}
	if n := f.nreads(); n != 1 {
		t.Fatalf("%d kernel reads for 51 Stats calls within %v, want 1", n, kernelCountsMaxAge)
	}

	f.set(nil, errors.New("nft gone"))
	testutil.Eventually(t, waitTimeout, func() error {
		if f.nreads() < 2 {
			m.Stats()
			return errors.New("no second read yet")
		}
		return nil
	})
	if s := m.Stats(); s.KernelForwarded != 109 || tcpKernel(s) != 7 {
		t.Fatalf("after a failed read: %+v, want the last figures", s)
	}
	f.set(map[uint16]uint64{uint16(tcp): 8}, nil)
	testutil.Eventually(t, waitTimeout, func() error {
		if n := tcpKernel(m.Stats()); n != 8 {
			return fmt.Errorf("kernel %d, want 8", n)
		}
		return nil
	})

	// A failed transaction removes the rules, their counters with them.
	f.mu.Lock()
	f.fail = errors.New("boom")
	f.mu.Unlock()
	mustUpdate(t, m, endpoint("tcp", tcp, "127.0.7.1:2002"), endpoint("udp", udp, "127.0.7.1:2001"))
	if s := m.Stats(); s.Kernel || tcpKernel(s) != 0 {
		t.Fatalf("stats after the rules were removed: %+v, want no kernel figures", s)
	}
}
