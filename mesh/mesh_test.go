package mesh

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 5 * time.Second

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// tcpBackend is a task stand-in: for every line it receives it answers
// "<name> <line>", and it closes the connection on EOF.
type tcpBackend struct {
	name  string
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	open  atomic.Int64
}

func newTCPBackend(t testing.TB, name string) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{name: name, ln: ln, conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.open.Add(1)
			b.wg.Add(1)
			go b.serve(c)
		}
	}()
	t.Cleanup(b.Close)
	return b
}

func (b *tcpBackend) serve(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
		b.open.Add(-1)
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s %s", b.name, line); err != nil {
			return
		}
	}
}

func (b *tcpBackend) Addr() string { return b.ln.Addr().String() }

func (b *tcpBackend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// udpBackend answers every datagram with "<name> <payload>".
type udpBackend struct {
	name string
	pc   net.PacketConn
	done chan struct{}
}

func newUDPBackend(t testing.TB, name string) *udpBackend {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &udpBackend{name: name, pc: pc, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(name+" "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-b.done })
	return b
}

func (b *udpBackend) Addr() string { return b.pc.LocalAddr().String() }

// freePort returns a port that is currently free for TCP and UDP on every ip.
func freePort(t testing.TB, ips ...string) uint32 {
	t.Helper()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, ip := range ips {
			addr := net.JoinHostPort(ip, strconv.Itoa(port))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			l.Close()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return uint32(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// deadAddr returns an address nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func endpoint(proto string, port uint32, addrs ...string) *swarmpb.ServiceEndpoint {
	ep := &swarmpb.ServiceEndpoint{ServiceId: "svc", ServiceName: "svc", Protocol: proto, PublishedPort: port}
	for i, a := range addrs {
		ep.Backends = append(ep.Backends, &swarmpb.Backend{TaskId: fmt.Sprintf("task%d", i), Addr: a})
	}
	return ep
}

func newMesh(t testing.TB, ip string) *Mesh {
	t.Helper()
	m := New(ip, testLogger())
	t.Cleanup(func() { m.Close() })
	return m
}

func mustUpdate(t testing.TB, m *Mesh, eps ...*swarmpb.ServiceEndpoint) {
	t.Helper()
	if err := m.Update(eps); err != nil {
		t.Fatal(err)
	}
}

func hostPort(ip string, port uint32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

// lineConn is a client connection speaking the backend's line protocol.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialLine(addr string) (*lineConn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &lineConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// ask sends msg and returns the name of the backend that answered.
func (c *lineConn) ask(msg string) (string, error) {
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	name, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	if rest != msg {
		return "", fmt.Errorf("echo mismatch: got %q for %q", line, msg)
	}
	return name, nil
}

// ask opens a connection, asks once and closes it.
func ask(addr, msg string) (string, error) {
	c, err := dialLine(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ask(msg)
}

func waitNoActive(t *testing.T, m *Mesh) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, func() error {
		if a := m.Stats().Active; len(a) != 0 {
			return fmt.Errorf("active: %v", a)
		}
		return nil
	})
}

func TestTCPSpread(t *testing.T) {
	bs := []*tcpBackend{newTCPBackend(t, "a"), newTCPBackend(t, "b"), newTCPBackend(t, "c")}
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, bs[0].Addr(), bs[1].Addr(), bs[2].Addr()))

	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		name, err := ask(hostPort("127.0.0.1", port), "hello"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		counts[name]++
	}
	// Round robin from one sequential client is exact.
	for _, b := range bs {
		if counts[b.name] != 10 {
			t.Fatalf("uneven spread: %v", counts)
		}
	}
	if s := m.Stats(); s.Forwarded != 30 || s.Refused != 0 || s.Listeners != 1 {
		t.Fatalf("stats: %+v", s)
	}
	waitNoActive(t, m)
}

func TestTCPSpreadConcurrent(t *testing.T) {
	bs := []*tcpBackend{newTCPBackend(t, "a"), newTCPBackend(t, "b"), newTCPBackend(t, "c")}
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, bs[0].Addr(), bs[1].Addr(), bs[2].Addr()))

	// 30 connections held open at once: Stats shows 10 per backend.
	var conns []*lineConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 30; i++ {
		c, err := dialLine(hostPort("127.0.0.1", port))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.ask("x"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := m.Stats()
	for _, b := range bs {
		if s.Active[b.Addr()] != 10 {
			t.Fatalf("active per backend: %v", s.Active)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	waitNoActive(t, m)
}

func TestTCPHalfClose(t *testing.T) {
	b := newTCPBackend(t, "a")
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, b.Addr()))

	// HTTP/1.0 style: send the request, shut down writing, read to EOF.
	c, err := net.Dial("tcp", hostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, "one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "a one\na two\n" {
		t.Fatalf("got %q", got)
	}
	waitNoActive(t, m)
}

func TestTCPBackendUpdate(t *testing.T) {
	a, b, c := newTCPBackend(t, "a"), newTCPBackend(t, "b"), newTCPBackend(t, "c")
	port := freePort(t, "127.0.0.1")
	addr := hostPort("127.0.0.1", port)
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, a.Addr(), b.Addr()))

	held, err := dialLine(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	first, err := held.ask("before")
	if err != nil {
		t.Fatal(err)
	}
	removed, kept := a, b
	if first == "b" {
		removed, kept = b, a
	}

	// Replace the table: the held backend is gone, c is new.
	mustUpdate(t, m, endpoint("tcp", port, kept.Addr(), c.Addr()))
	counts := map[string]int{}
	for i := 0; i < 10; i++ {
		name, err := ask(addr, "after")
		if err != nil {
			t.Fatal(err)
		}
		counts[name]++
	}
	if counts[removed.name] != 0 || counts[kept.name] != 5 || counts["c"] != 5 {
		t.Fatalf("after update: %v (removed %s)", counts, removed.name)
	}

	// The connection opened before the update still reaches the removed
	// backend, until the client closes it.
	if name, err := held.ask("still"); err != nil || name != removed.name {
		t.Fatalf("held connection: %q, %v", name, err)
	}
	if n := m.Stats().Active[removed.Addr()]; n != 1 {
		t.Fatalf("active to removed backend: %d", n)
	}
	held.Close()
	testutil.Eventually(t, waitTimeout, func() error {
		if n := removed.open.Load(); n != 0 {
			return fmt.Errorf("removed backend still has %d conns", n)
		}
		return nil
	})
	waitNoActive(t, m)
}

func TestTCPDeadBackendSkipped(t *testing.T) {
	live1, live2 := newTCPBackend(t, "l1"), newTCPBackend(t, "l2")
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, deadAddr(t), live1.Addr(), deadAddr(t), live2.Addr()))

	counts := map[string]int{}
	for i := 0; i < 20; i++ {
		name, err := ask(hostPort("127.0.0.1", port), "x")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		counts[name]++
	}
	if counts["l1"] == 0 || counts["l2"] == 0 || counts["l1"]+counts["l2"] != 20 {
		t.Fatalf("counts: %v", counts)
	}
	if s := m.Stats(); s.Refused != 0 || s.Forwarded != 20 {
		t.Fatalf("stats: %+v", s)
	}
}

// expectClosedQuickly checks the client sees EOF or a reset, not silence.
func expectClosedQuickly(t *testing.T, addr string) {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	io.WriteString(c, "anyone?\n")
	_, err = c.Read(make([]byte, 16))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("want EOF or reset, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closing took %v", d)
	}
}

func TestTCPNoBackends(t *testing.T) {
	p1, p2 := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m,
		endpoint("tcp", p1),                           // no backend at all
		endpoint("tcp", p2, deadAddr(t), deadAddr(t)), // all failing
	)
	expectClosedQuickly(t, hostPort("127.0.0.1", p1))
	expectClosedQuickly(t, hostPort("127.0.0.1", p2))
	if s := m.Stats(); s.Refused != 2 || s.Forwarded != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestTCPPortRemoved(t *testing.T) {
	b := newTCPBackend(t, "a")
	port := freePort(t, "127.0.0.1")
	addr := hostPort("127.0.0.1", port)
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("tcp", port, b.Addr()))

	held, err := dialLine(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.ask("x"); err != nil {
		t.Fatal(err)
	}

	mustUpdate(t, m)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("dial succeeded after the port left the table")
	}
	if s := m.Stats(); s.Listeners != 0 {
		t.Fatalf("listeners: %d", s.Listeners)
	}
	// A connection accepted before keeps going.
	if _, err := held.ask("y"); err != nil {
		t.Fatalf("held connection: %v", err)
	}
	held.Close()

	// Publishing the port again binds it again.
	mustUpdate(t, m, endpoint("tcp", port, b.Addr()))
	if _, err := ask(addr, "z"); err != nil {
		t.Fatal(err)
	}
}

func TestCloseClosesProxiedConns(t *testing.T) {
	b := newTCPBackend(t, "a")
	port := freePort(t, "127.0.0.1")
	m := New("127.0.0.1", testLogger())
	mustUpdate(t, m, endpoint("tcp", port, b.Addr()))
	held, err := dialLine(hostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.ask("x"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	held.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := held.r.ReadByte(); err == nil {
		t.Fatal("connection still open after Close")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection hangs after Close")
	}
	testutil.Eventually(t, waitTimeout, func() error {
		if n := b.open.Load(); n != 0 {
			return fmt.Errorf("backend still has %d conns", n)
		}
		return nil
	})
	if err := m.Update([]*swarmpb.ServiceEndpoint{endpoint("tcp", port, b.Addr())}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestUpdatePortInUse(t *testing.T) {
	b := newTCPBackend(t, "a")
	busy, free := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	occupant, err := net.Listen("tcp", hostPort("127.0.0.1", busy))
	if err != nil {
		t.Fatal(err)
	}
	defer occupant.Close()

	m := newMesh(t, "127.0.0.1")
	table := []*swarmpb.ServiceEndpoint{endpoint("tcp", busy, b.Addr()), endpoint("tcp", free, b.Addr())}
	err = m.Update(table)
	var ue *UpdateError
	if !errors.As(err, &ue) || len(ue.Ports) != 1 || ue.Ports[0].Port != busy || ue.Ports[0].Protocol != "tcp" {
		t.Fatalf("want UpdateError for port %d, got %v", busy, err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(int(busy))) {
		t.Fatalf("error does not name the port: %v", err)
	}
	if _, err := ask(hostPort("127.0.0.1", free), "x"); err != nil {
		t.Fatalf("other port: %v", err)
	}

	// Once the port is free, the next Update binds it.
	occupant.Close()
	mustUpdate(t, m, table...)
	if _, err := ask(hostPort("127.0.0.1", busy), "x"); err != nil {
		t.Fatalf("retried port: %v", err)
	}
	if s := m.Stats(); s.Listeners != 2 {
		t.Fatalf("listeners: %d", s.Listeners)
	}
}

func TestUpdateInvalidEntries(t *testing.T) {
	m := newMesh(t, "127.0.0.1")
	err := m.Update([]*swarmpb.ServiceEndpoint{endpoint("sctp", 5000), endpoint("tcp", 70000)})
	var ue *UpdateError
	if !errors.As(err, &ue) || len(ue.Ports) != 2 {
		t.Fatalf("got %v", err)
	}
}

func TestTwoMeshesSameHost(t *testing.T) {
	b2, b3 := newTCPBackend(t, "two"), newTCPBackend(t, "three")
	u2, u3 := newUDPBackend(t, "two"), newUDPBackend(t, "three")
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	m2, m3 := newMesh(t, "127.0.0.2"), newMesh(t, "127.0.0.3")
	mustUpdate(t, m2, endpoint("tcp", port, b2.Addr()), endpoint("udp", port, u2.Addr()))
	mustUpdate(t, m3, endpoint("tcp", port, b3.Addr()), endpoint("udp", port, u3.Addr()))

	for ip, want := range map[string]string{"127.0.0.2": "two", "127.0.0.3": "three"} {
		name, err := ask(hostPort(ip, port), "x")
		if err != nil || name != want {
			t.Fatalf("%s tcp: %q %v", ip, name, err)
		}
		c := newUDPClient(t)
		if got := c.roundTrip(t, hostPort(ip, port), "x"); got != want+" x" {
			t.Fatalf("%s udp: %q", ip, got)
		}
	}
}

type udpClient struct {
	*net.UDPConn
}

func newUDPClient(t *testing.T) *udpClient {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpClient{c}
}

// roundTrip sends msg to addr until a reply comes (UDP may drop), checks the
// reply comes from addr, and returns it.
func (c *udpClient) roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDP([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			t.Fatal(err)
		}
		if from.String() != to.String() {
			t.Fatalf("reply from %v, want %v", from, to)
		}
		return string(buf[:n])
	}
	t.Fatalf("no UDP reply from %s", addr)
	return ""
}

func TestUDPEchoAndStickiness(t *testing.T) {
	u1, u2 := newUDPBackend(t, "u1"), newUDPBackend(t, "u2")
	port := freePort(t, "127.0.0.1")
	addr := hostPort("127.0.0.1", port)
	m := newMesh(t, "127.0.0.1")
	m.SetUDPIdleTimeout(200 * time.Millisecond)
	mustUpdate(t, m, endpoint("udp", port, u1.Addr(), u2.Addr()))

	ca, cb := newUDPClient(t), newUDPClient(t)
	backendOf := func(c *udpClient, msg string) string {
		got := c.roundTrip(t, addr, msg)
		name, rest, _ := strings.Cut(got, " ")
		if rest != msg {
			t.Fatalf("echo mismatch: %q", got)
		}
		return name
	}
	na := backendOf(ca, "a0")
	nb := backendOf(cb, "b0")
	if na == nb {
		t.Fatalf("two flows on one backend %s", na)
	}
	// Each client's flow sticks to its backend.
	for i := 1; i < 10; i++ {
		if n := backendOf(ca, "a"+strconv.Itoa(i)); n != na {
			t.Fatalf("client a moved from %s to %s", na, n)
		}
		if n := backendOf(cb, "b"+strconv.Itoa(i)); n != nb {
			t.Fatalf("client b moved from %s to %s", nb, n)
		}
	}
	if s := m.Stats(); len(s.Active) != 2 || s.Forwarded != 2 {
		t.Fatalf("stats: %+v", s)
	}

	// Idle flows expire; the next datagram opens a new flow.
	waitNoActive(t, m)
	backendOf(ca, "again")
	if s := m.Stats(); s.Forwarded != 3 {
		t.Fatalf("stats after idle: %+v", s)
	}
}

func TestUDPBackendRemovedAndNone(t *testing.T) {
	u1, u2 := newUDPBackend(t, "u1"), newUDPBackend(t, "u2")
	port := freePort(t, "127.0.0.1")
	addr := hostPort("127.0.0.1", port)
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("udp", port, u1.Addr(), u2.Addr()))

	c := newUDPClient(t)
	first := c.roundTrip(t, addr, "x")
	other := u2
	if strings.HasPrefix(first, "u2 ") {
		other = u1
	}
	// The flow's backend leaves the table: the client moves to the other.
	mustUpdate(t, m, endpoint("udp", port, other.Addr()))
	if got := c.roundTrip(t, addr, "y"); got != other.name+" y" {
		t.Fatalf("after removal got %q", got)
	}

	// No backends: datagrams are dropped.
	mustUpdate(t, m, endpoint("udp", port))
	to, _ := net.ResolveUDPAddr("udp", addr)
	if _, err := c.WriteToUDP([]byte("z"), to); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, func() error {
		if s := m.Stats(); s.Dropped == 0 || len(s.Active) != 0 {
			return fmt.Errorf("stats: %+v", s)
		}
		return nil
	})
}

func TestUDPDeadBackendSkipped(t *testing.T) {
	live := newUDPBackend(t, "live")
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadUDP := dead.LocalAddr().String()
	dead.Close()
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	mustUpdate(t, m, endpoint("udp", port, deadUDP, live.Addr()))
	// Flows to the dead one hit ICMP port unreachable and are ended; the
	// client is retried onto the live backend.
	for i := 0; i < 4; i++ {
		c := newUDPClient(t)
		if got := c.roundTrip(t, hostPort("127.0.0.1", port), "x"); got != "live x" {
			t.Fatalf("got %q", got)
		}
	}
}

func TestAllAddresses(t *testing.T) {
	b, u := newTCPBackend(t, "t"), newUDPBackend(t, "u")
	port := freePort(t, "127.0.0.1")
	m := newMesh(t, "")
	mustUpdate(t, m, endpoint("tcp", port, b.Addr()), endpoint("udp", port, u.Addr()))
	if name, err := ask(hostPort("127.0.0.1", port), "x"); err != nil || name != "t" {
		t.Fatalf("tcp: %q %v", name, err)
	}
	c := newUDPClient(t)
	if got := c.roundTrip(t, hostPort("127.0.0.1", port), "x"); got != "u x" {
		t.Fatalf("udp: %q", got)
	}
}

// Each published port keeps its own counters, named with its service.
func TestPortStats(t *testing.T) {
	b := newTCPBackend(t, "a")
	p1, p2 := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	m := newMesh(t, "127.0.0.1")
	e1 := endpoint("tcp", p1, b.Addr())
	e1.ServiceName = "web"
	mustUpdate(t, m, e1, endpoint("tcp", p2))
	for i := 0; i < 5; i++ {
		if _, err := ask(hostPort("127.0.0.1", p1), "hello"); err != nil {
			t.Fatal(err)
		}
	}
	expectClosedQuickly(t, hostPort("127.0.0.1", p2))
	waitNoActive(t, m)
	ports := m.Stats().Ports
	if len(ports) != 2 {
		t.Fatalf("ports: %+v", ports)
	}
	byPort := map[uint32]PortStats{}
	for _, p := range ports {
		byPort[p.Port] = p
	}
	web, none := byPort[p1], byPort[p2]
	if web.Service != "web" || web.Protocol != "tcp" || web.Connections != 5 || web.Refused != 0 || web.BytesIn == 0 || web.BytesOut == 0 {
		t.Errorf("port %d: %+v", p1, web)
	}
	if none.Service != "svc" || none.Connections != 0 || none.Refused != 1 || none.BytesIn != 0 {
		t.Errorf("port %d: %+v", p2, none)
	}
}
