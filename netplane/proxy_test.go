package netplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// backendServer listens on ip:port (port 0: ephemeral) and answers every
// connection with its name, then everything it read until EOF, then closes:
// it sees the client's half-close and answers after it.
func backendServer(t *testing.T, ip string, port int, name string) (int, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s:%s", name, b)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, n
}

// twoBackends starts backends A and B on 127.0.0.31 and .32, same port.
func twoBackends(t *testing.T) (port int, a, b *atomic.Int32) {
	t.Helper()
	for range 20 {
		port, a = backendServer(t, "127.0.0.31", 0, "A")
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.32:%d", port))
		if err != nil {
			continue // port taken on .32: try another
		}
		ln.Close()
		_, b = backendServer(t, "127.0.0.32", port, "B")
		return port, a, b
	}
	t.Fatal("no common free port on 127.0.0.31 and .32")
	return
}

// proxyFixture: a Plane whose table has redis (VIP 10.96.0.2) with local
// tasks r1 (127.0.0.31), r2 (127.0.0.32) and, if dead, r3 (127.0.0.33,
// nothing listening); idle (10.96.0.4) has no task. The proxy listens on
// 127.0.0.1; connections "to" dst are redirected there.
func proxyFixture(t *testing.T, dead bool) (p *Plane, pr *proxy, dst *atomic.Pointer[netip.AddrPort]) {
	t.Helper()
	p = New(Config{NodeID: "self"})
	t.Cleanup(p.shutdown)
	view := &swarmpb.EndpointsMessage{
		Networks: []*swarmpb.NetworkView{{Id: appnet, Name: "appnet", Subnet: "10.96.0.0/20"}},
		Services: []*swarmpb.DiscoveryService{
			{ServiceId: "svc-redis", Name: "redis",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.2"}},
				Tasks:    []*swarmpb.DiscoveryTask{{TaskId: "r1", NodeId: "self"}, {TaskId: "r2", NodeId: "self"}}},
			{ServiceId: "svc-idle", Name: "idle",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.4"}}},
		},
	}
	local := map[string]netip.Addr{"r1": mp("127.0.0.31"), "r2": mp("127.0.0.32")}
	if dead {
		view.Services[0].Tasks = append([]*swarmpb.DiscoveryTask{{TaskId: "r3", NodeId: "self"}}, view.Services[0].Tasks...)
		local["r3"] = mp("127.0.0.33")
	}
	p.tbl.Store(BuildTable(TableInput{View: view, NodeID: "self", Local: map[string]map[string]netip.Addr{appnet: local}}, nil))
	dst = new(atomic.Pointer[netip.AddrPort])
	p.origDst = func(*net.TCPConn) (netip.AddrPort, error) {
		d := dst.Load()
		if d == nil {
			return netip.AddrPort{}, errors.New("no destination")
		}
		return *d, nil
	}
	pr, err := p.startProxy(mp("127.0.0.1"), appnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pr.close)
	return p, pr, dst
}

// roundTrip connects to addr, sends msg, half-closes and returns the answer.
func roundTrip(addr string, msg string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

func proxyAddr(pr *proxy) string { return pr.ln.Addr().String() }

func TestProxyRoundRobinAndHalfClose(t *testing.T) {
	port, a, b := twoBackends(t)
	p, pr, dst := proxyFixture(t, false)
	d := netip.AddrPortFrom(mp("10.96.0.2"), uint16(port))
	dst.Store(&d)
	seen := map[string]int{}
	for i := range 4 {
		got, err := roundTrip(proxyAddr(pr), fmt.Sprintf("hello%d", i))
		if err != nil {
			t.Fatal(err)
		}
		// The backend answers after the client's half-close, with all it read.
		if got[2:] != fmt.Sprintf("hello%d", i) {
			t.Fatalf("answer %q", got)
		}
		seen[got[:1]]++
	}
	if seen["A"] != 2 || seen["B"] != 2 || a.Load() != 2 || b.Load() != 2 {
		t.Fatalf("not round robin: %v (A %d, B %d)", seen, a.Load(), b.Load())
	}
	st := p.Stats()["svc-redis"]
	if st.Connections != 4 || st.Bytes == 0 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestProxySkipsDeadBackend(t *testing.T) {
	port, _, _ := twoBackends(t)
	p, pr, dst := proxyFixture(t, true)
	d := netip.AddrPortFrom(mp("10.96.0.2"), uint16(port))
	dst.Store(&d)
	for i := range 6 {
		got, err := roundTrip(proxyAddr(pr), "x")
		if err != nil || (got != "A:x" && got != "B:x") {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
	// r3 was tried, failed, and is now tried only after the others.
	if _, ok := p.down.Load("r3"); !ok {
		t.Fatal("the dead backend is not marked down")
	}
	if st := p.Stats()["svc-redis"]; st.Connections != 6 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// isReset reports whether err is what a client sees of a reset.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED)
}

func TestProxyResetsWithoutBackend(t *testing.T) {
	port, _, _ := twoBackends(t)
	p, pr, dst := proxyFixture(t, false)
	for _, target := range []string{"10.96.0.4", "10.96.0.99"} { // idle service; unknown address
		d := netip.AddrPortFrom(mp(target), uint16(port))
		dst.Store(&d)
		start := time.Now()
		got, err := roundTrip(proxyAddr(pr), "x")
		if !isReset(err) {
			t.Fatalf("%s: got %q, %v; want a reset", target, got, err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("%s: reset took %v", target, time.Since(start))
		}
	}
	if p.Stats()["svc-idle"].Errors != 1 {
		t.Fatalf("stats %+v", p.Stats())
	}
	// No original destination (not a redirected connection): reset too.
	dst.Store(nil)
	if _, err := roundTrip(proxyAddr(pr), "x"); !isReset(err) {
		t.Fatalf("without destination: %v", err)
	}
}

func TestProxyAllBackendsDead(t *testing.T) {
	_, pr, dst := proxyFixture(t, false)
	// Nothing listens on this port of .31/.32.
	l, err := net.Listen("tcp4", "127.0.0.31:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d := netip.AddrPortFrom(mp("10.96.0.2"), uint16(port))
	dst.Store(&d)
	if _, err := roundTrip(proxyAddr(pr), "x"); !isReset(err) {
		t.Fatalf("got %v, want a reset", err)
	}
}

func TestRefusePortRefuses(t *testing.T) {
	_, pr, _ := proxyFixture(t, false)
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", pr.RefusePort()), 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("connected to the refuse port")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refuse port: %v", err)
	}
}

func TestOriginalDstOnPlainSocket(t *testing.T) {
	// Without a redirect the kernel has no original destination: an error,
	// not a made-up address.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err == nil {
			defer c.Close()
			io.ReadAll(c)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if a, err := originalDst(c.(*net.TCPConn)); err == nil {
		// With conntrack loaded the kernel reports the address itself.
		if a.String() != ln.Addr().String() {
			t.Fatalf("original destination %v of a direct connection to %v", a, ln.Addr())
		}
	}
}

// A container on two networks reaches the second network's VIP through the
// first network's bridge (its default route); a container on the first
// network only is reset.
func TestProxyCrossNetworkOnlyForMembers(t *testing.T) {
	port, _ := backendServer(t, "127.0.0.34", 0, "D")
	p := New(Config{NodeID: "self"})
	t.Cleanup(p.shutdown)
	v := testView()
	v.Services[2].Tasks = []*swarmpb.DiscoveryTask{{TaskId: "d1", NodeId: "self"}}
	local := map[string]map[string]netip.Addr{
		appnet:   {"r1": mp("127.0.0.35"), "w1": mp("127.0.0.36")},
		othernet: {"w1": mp("127.0.0.37"), "d1": mp("127.0.0.34")},
	}
	p.tbl.Store(BuildTable(TableInput{View: v, NodeID: "self", Local: local}, nil))
	p.origDst = func(*net.TCPConn) (netip.AddrPort, error) {
		return netip.AddrPortFrom(mp("10.96.16.2"), uint16(port)), nil // db's VIP
	}
	pr, err := p.startProxy(mp("127.0.0.1"), appnet) // appnet's bridge
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pr.close)
	from := func(src string) (string, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp4", proxyAddr(pr))
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// A reset that arrives before the write is reported to the write
		// (once), and the read then sees a plain end.
		if _, err := io.WriteString(c, "q"); err != nil {
			return "", err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return "", err
		}
		b, err := io.ReadAll(c)
		return string(b), err
	}
	if got, err := from("127.0.0.36"); err != nil || got != "D:q" { // w1: on both
		t.Fatalf("w1 to db: %q, %v", got, err)
	}
	if got, err := from("127.0.0.35"); !isReset(err) { // r1: appnet only
		t.Fatalf("r1 to db: %q, %v; want a reset", got, err)
	}
}
