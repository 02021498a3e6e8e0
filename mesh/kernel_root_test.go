package mesh

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// These tests program the host's nftables (root only): each in a table of
// its own ("raftswarm_mesh_perfmesh<random>") whose rules match only
// addresses in 127.0.7.0/24 or a veth of the test, removed at the end even
// on failure.

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (nftables)")
	}
	if _, err := os.Stat(nftPath); err != nil {
		t.Skip("no " + nftPath)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testForwarder returns a forwarder on a fresh table, removed at cleanup.
func testForwarder(t testing.TB, table string) *NFTForwarder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	f, err := newNFTForwarder(ctx, table, nftPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := f.Remove(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return f
}

func tableExists(t *testing.T, table string) (bool, string) {
	t.Helper()
	out, err := exec.Command(nftPath, "list", "table", "ip", table).CombinedOutput()
	return err == nil, string(out)
}

// TestKernelPathRoot: new connections are forwarded by the kernel (the
// userspace proxy sees none), spread over the backends; a backend taken
// out of the table drains (its established connection goes on, new ones
// go elsewhere); Close removes the table.
func TestKernelPathRoot(t *testing.T) {
	needRoot(t)
	table := NFTTableName("perfmesh" + randHex(2))
	f := testForwarder(t, table)
	a, b := newTCPBackend(t, "a"), newTCPBackend(t, "b")
	m := newMesh(t, "127.0.7.1")
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.7.1")
	addr := hostPort("127.0.7.1", port)
	mustUpdate(t, m, endpoint("tcp", port, a.Addr(), b.Addr()))
	if p, why := m.Path(); p != PathKernel {
		t.Fatalf("path = %s (%s)", p, why)
	}
	if ok, out := tableExists(t, table); !ok || !strings.Contains(out, "dnat to "+a.Addr()) {
		t.Fatalf("table %s after Update:\n%s", table, out)
	}

	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		name, err := ask(addr, fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("connections per backend %v: want both", seen)
	}
	if n := m.Stats().Forwarded; n != 0 {
		t.Fatalf("the userspace proxy forwarded %d connections, want 0 (all in the kernel)", n)
	}

	// Drain: the established connection keeps its backend after the
	// backend leaves the table; new connections avoid it.
	c, err := dialLine(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.ask("before")
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]*tcpBackend{"a": b, "b": a}[first]
	mustUpdate(t, m, endpoint("tcp", port, other.Addr()))
	if got, err := c.ask("after"); err != nil || got != first {
		t.Fatalf("established connection after its backend left the table: %q, %v (want %q)", got, err, first)
	}
	for i := 0; i < 10; i++ {
		if name, err := ask(addr, "new"); err != nil || name != other.name {
			t.Fatalf("new connection went to %q (%v), want %q only", name, err, other.name)
		}
	}

	m.Close()
	if ok, out := tableExists(t, table); ok {
		t.Fatalf("table %s still there after Close:\n%s", table, out)
	}
	// The drained connection outlives even the rules.
	if got, err := c.ask("closed"); err != nil || got != first {
		t.Fatalf("established connection after Close: %q, %v", got, err)
	}
}

// TestKernelCrashCleanupRoot: rules left by a daemon that died without its
// cleanup are removed when the node's mesh starts again.
func TestKernelCrashCleanupRoot(t *testing.T) {
	needRoot(t)
	table := NFTTableName("perfmesh" + randHex(2))
	f := testForwarder(t, table)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stale := KernelRules{IngressIP: netip.MustParseAddr("127.0.7.1"), Ports: []KernelPort{{Port: 9, Slots: []KernelSlot{{Addr: netip.MustParseAddrPort("127.0.7.9:9")}}}}}
	if err := f.Apply(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tableExists(t, table); !ok {
		t.Fatal("stale table not created")
	}
	f2, err := newNFTForwarder(ctx, table, nftPath)
	if err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, "127.0.7.1")
	if err := m.UseKernel(f2); err != nil {
		t.Fatal(err)
	}
	if ok, out := tableExists(t, table); ok {
		t.Fatalf("stale table kept by UseKernel:\n%s", out)
	}
}

// TestKernelUnavailable: without a usable nft the forwarder cannot be
// made, says why, and the userspace proxy serves.
func TestKernelUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := newNFTForwarder(ctx, "raftswarm_mesh_x", "/nonexistent/nft")
	if err == nil || !strings.Contains(err.Error(), "kernel forwarding unavailable") {
		t.Fatalf("err = %v", err)
	}
	a := newTCPBackend(t, "a")
	m := newMesh(t, "127.0.7.1")
	m.SetKernelUnavailable(err)
	port := freePort(t, "127.0.7.1")
	mustUpdate(t, m, endpoint("tcp", port, a.Addr()))
	if p, why := m.Path(); p != PathUserspace || !strings.Contains(why, "unavailable") {
		t.Fatalf("path = %s (%s)", p, why)
	}
	if name, err := ask(hostPort("127.0.7.1", port), "x"); err != nil || name != "a" {
		t.Fatalf("ask: %q %v", name, err)
	}
	if m.Stats().Forwarded != 1 {
		t.Fatal("not served by the userspace proxy")
	}
}

// whoBackend answers every connection with "<name> <client address>".
func whoBackend(t *testing.T, name, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln
}

func who(dial func() (net.Conn, error)) (name, client string, err error) {
	c, err := dial()
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", err
	}
	name, client, _ = strings.Cut(strings.TrimSpace(line), " ")
	return name, client, nil
}

// TestKernelClientAddressRoot: a client from another host (a network
// namespace behind a veth) reaches the task's container address directly
// and the task sees the client's own address; a loopback client goes to
// the published address instead.
func TestKernelClientAddressRoot(t *testing.T) {
	needRoot(t)
	id := randHex(2)
	ns, hostIP, nsIP := testutil.VethNetns(t, id, int(id[0])%200+20)

	published := whoBackend(t, "published", "127.0.7.2:0") // docker-proxy's place
	container := whoBackend(t, "container", hostIP+":0")   // the container's address
	pubPort := uint32(published.Addr().(*net.TCPAddr).Port)

	table := NFTTableName("perfmesh" + id)
	f := testForwarder(t, table)
	m := newMesh(t, hostIP)
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, hostIP)
	ep := &swarmpb.ServiceEndpoint{Protocol: "tcp", PublishedPort: port, Backends: []*swarmpb.Backend{{TaskId: "t1", Addr: published.Addr().String()}}}
	mustUpdate(t, m, ep)
	m.SetLocal(map[LocalKey]netip.AddrPort{{TaskID: "t1", HostPort: pubPort}: container.Addr().(*net.TCPAddr).AddrPort()})
	if p, why := m.Path(); p != PathKernel {
		t.Fatalf("path = %s (%s)", p, why)
	}

	ingress := hostPort(hostIP, port)
	var name, client string
	testutil.Eventually(t, waitTimeout, func() error {
		// The first packets may race the veth's carrier.
		var err error
		name, client, err = who(func() (net.Conn, error) { return testutil.DialFromNetns(ns, ingress, 2*time.Second) })
		return err
	})
	if name != "container" || !strings.HasPrefix(client, nsIP+":") {
		t.Fatalf("remote client reached %q seeing %q, want the container seeing %s", name, client, nsIP)
	}
	if m.Stats().Forwarded != 0 {
		t.Fatal("the userspace proxy took the connection")
	}
	// From this host, the client address is a local one, also not
	// loopback: the container too.
	if name, _, err := who(func() (net.Conn, error) { return net.DialTimeout("tcp", ingress, 2*time.Second) }); err != nil || name != "container" {
		t.Fatalf("host client reached %q (%v), want the container", name, err)
	}
}

// TestKernelCountersRoot: the kernel path counts the connections it
// forwards, per published port, beside the userspace proxy's counts of
// the ones it lets through (a task on "another host"); the counts survive
// rule changes (which delete the chains no longer wanted) and a port
// unpublished and published again.
func TestKernelCountersRoot(t *testing.T) {
	needRoot(t)
	table := NFTTableName("perfmesh" + randHex(2))
	f := testForwarder(t, table)
	a := whoBackend(t, "a", "127.0.0.1:0")
	b := whoBackend(t, "b", "127.0.0.1:0")
	remote := whoBackend(t, "remote", "127.0.7.3:0") // stands for a task on another host
	m := newMesh(t, "127.0.7.1")
	m.isHostAddr = func(ip netip.Addr) bool { return ip != netip.MustParseAddr("127.0.7.3") }
	if err := m.UseKernel(f); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.Kernel {
		t.Fatalf("kernel figures before any rules: %+v", s)
	}
	port := freePort(t, "127.0.7.1")
	addr := hostPort("127.0.7.1", port)
	ep := func(backends ...net.Listener) *swarmpb.ServiceEndpoint {
		e := &swarmpb.ServiceEndpoint{Protocol: "tcp", PublishedPort: port, ServiceName: "web"}
		for i, l := range backends {
			e.Backends = append(e.Backends, &swarmpb.Backend{TaskId: fmt.Sprint("t", i), Addr: l.Addr().String()})
		}
		return e
	}
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 2*time.Second) }
	connect := func(n int) map[string]int {
		t.Helper()
		seen := map[string]int{}
		for i := 0; i < n; i++ {
			name, _, err := who(dial)
			if err != nil {
				t.Fatal(err)
			}
			seen[name]++
		}
		return seen
	}
	expect := func(kernel, user uint64) {
		t.Helper()
		testutil.Eventually(t, waitTimeout, func() error {
			s := m.Stats()
			if !s.Kernel || len(s.Ports) != 1 {
				return fmt.Errorf("stats %+v: want kernel figures and one port", s)
			}
			p := s.Ports[0]
			if p.KernelConnections != kernel || s.KernelForwarded != kernel || p.Connections != user {
				return fmt.Errorf("port %d: kernel %d (node %d), userspace %d; want kernel %d, userspace %d",
					p.Port, p.KernelConnections, s.KernelForwarded, p.Connections, kernel, user)
			}
			return nil
		})
	}

	mustUpdate(t, m, ep(a, remote))
	// a's container address (here its own): without one, a task
	// published on loopback takes loopback clients only, and the
	// userspace listener would serve both tasks.
	aAddr := a.Addr().(*net.TCPAddr).AddrPort()
	m.SetLocal(map[LocalKey]netip.AddrPort{{TaskID: "t0", HostPort: uint32(aAddr.Port())}: aAddr})
	seen := connect(40)
	if seen["a"] == 0 || seen["remote"] == 0 || seen["a"]+seen["remote"] != 40 {
		t.Fatalf("connections per backend %v: want both", seen)
	}
	kernel, user := uint64(seen["a"]), uint64(seen["remote"])
	expect(kernel, user)

	mustUpdate(t, m, ep(a, b))
	kernel += 10
	if seen := connect(10); seen["remote"] != 0 {
		t.Fatalf("connections per backend %v after the remote task left", seen)
	}
	expect(kernel, user)

	// One slot fewer: its chain goes, the counter stays.
	mustUpdate(t, m, ep(b))
	if _, out := tableExists(t, table); strings.Contains(out, fmt.Sprintf("chain be_%d_1", port)) || !strings.Contains(out, fmt.Sprintf("counter conns_%d", port)) {
		t.Fatalf("table %s after a slot left:\n%s", table, out)
	}
	mustUpdate(t, m)
	mustUpdate(t, m, ep(b))
	kernel += 5
	connect(5)
	expect(kernel, user)
}

// benchRules is a rule set of n published ports on 127.0.7.1 with two
// local tasks each; backend port base+i lets two sets differ.
func benchRules(n int, base uint16) KernelRules {
	rs := KernelRules{IngressIP: netip.MustParseAddr("127.0.7.1")}
	for i := 0; i < n; i++ {
		rs.Ports = append(rs.Ports, KernelPort{Port: uint16(40000 + i), Slots: []KernelSlot{
			{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.7.2"), base+uint16(i))},
			{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.7.3"), base+uint16(i)), Direct: netip.MustParseAddrPort("172.17.0.2:80")},
		}})
	}
	return rs
}

// BenchmarkKernelApply is one nft transaction that changes the rules of
// n published ports: what every endpoint table cost a node on the kernel
// path before unchanged rules were skipped (an unchanged table now costs
// BenchmarkKernelRulesUnchanged).
func BenchmarkKernelApply(b *testing.B) {
	needRoot(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			f := testForwarder(b, NFTTableName("perfmesh"+randHex(2)))
			sets := [2]KernelRules{benchRules(n, 1000), benchRules(n, 2000)}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.Apply(ctx, sets[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKernelRulesUnchanged is an endpoint table that leaves this
// node's kernel rules as they are (a change of another host's task) on
// a mesh with n published TCP ports: derived and compared, no nft run.
func BenchmarkKernelRulesUnchanged(b *testing.B) {
	needRoot(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			f := testForwarder(b, NFTTableName("perfmesh"+randHex(2)))
			m := newMesh(b, "127.0.7.1")
			if err := m.UseKernel(f); err != nil {
				b.Fatal(err)
			}
			ports := make([]uint32, n)
			for i := range ports {
				ports[i] = freePort(b, "127.0.7.1")
			}
			table := func(remote string) []*swarmpb.ServiceEndpoint {
				var eps []*swarmpb.ServiceEndpoint
				for i, p := range ports {
					eps = append(eps, endpoint("tcp", p, fmt.Sprintf("127.0.7.2:%d", 1000+i), remote))
				}
				return eps
			}
			tables := [2][]*swarmpb.ServiceEndpoint{table("203.0.113.1:80"), table("203.0.113.2:80")} // TEST-NET-3: another host
			mustUpdate(b, m, tables[1]...)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := m.Update(tables[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKernelCounters is one read of the kernel path's counters (what
// Stats costs at most once a second) with n published ports.
func BenchmarkKernelCounters(b *testing.B) {
	needRoot(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			f := testForwarder(b, NFTTableName("perfmesh"+randHex(2)))
			ctx := context.Background()
			if err := f.Apply(ctx, benchRules(n, 1000)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				got, err := f.Connections(ctx)
				if err != nil || len(got) != n {
					b.Fatalf("%d counters, %v; want %d", len(got), err, n)
				}
			}
		})
	}
}

// BenchmarkKernelConnect is what the kernel path adds to a new
// connection, without Docker: one op is a TCP connect, one byte read
// and the client's reset, 16 at a time, against
// three loopback servers directly (round robin) or through a mesh port
// whose rules (NFTForwarder, the product's script) DNAT each connection
// to one of them at random. Each target connects from its own client
// address, so no connection reuses the 4-tuple of the other target's
// TIME-WAIT sockets (see bench/mesh). Besides ns/op it reports the
// process's CPU (user+system, which on loopback includes the kernel's
// packet processing, NAT and conntrack) per connection.
func BenchmarkKernelConnect(b *testing.B) {
	needRoot(b)
	const ingress = "127.0.7.40"
	var servers []string
	for _, ip := range []string{"127.0.7.41", "127.0.7.42", "127.0.7.43"} {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte{'x'})
				c.Close()
			}
		}()
		servers = append(servers, l.Addr().String())
	}
	port := freePort(b, ingress)
	f := testForwarder(b, NFTTableName("perfmesh"+randHex(2)))
	rs := KernelRules{IngressIP: netip.MustParseAddr(ingress)}
	kp := KernelPort{Port: uint16(port)}
	for _, s := range servers {
		kp.Slots = append(kp.Slots, KernelSlot{Addr: netip.MustParseAddrPort(s)})
	}
	rs.Ports = []KernelPort{kp}
	if err := f.Apply(context.Background(), rs); err != nil {
		b.Fatal(err)
	}
	mesh := []string{fmt.Sprintf("%s:%d", ingress, port)}
	for _, tc := range []struct {
		name, src string
		addrs     []string
	}{{"direct", "127.0.7.44", servers}, {"kernel", "127.0.7.45", mesh}} {
		b.Run(tc.name, func(b *testing.B) {
			d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.src)}, Control: func(_, _ string, c syscall.RawConn) error {
				// The port is picked at connect, per 4-tuple, not at
				// bind past every TIME-WAIT socket of the address.
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				}); err != nil {
					return err
				}
				return serr
			}}
			var next atomic.Uint64
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 1)
				for pb.Next() {
					c, err := d.Dial("tcp", tc.addrs[next.Add(1)%uint64(len(tc.addrs))])
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Errorf("no byte from the server: %v", err)
					}
					// Reset, not FIN: no socket of either end is left
					// in TIME-WAIT, whose tuples new SYNs from the same
					// client address would meet at this rate (about
					// 10,000 a second) and stall on.
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
			})
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
