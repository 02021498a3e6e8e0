package netplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	// maxBackendTries bounds the backends one connection tries before it is
	// reset.
	maxBackendTries = 3
	// downFor is how long a backend that failed is tried only after the
	// others, so that one dead task does not cost every n-th connection a
	// dial timeout while the view catches up.
	downFor = 2 * time.Second
	// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h), which
	// golang.org/x/sys/unix does not name.
	soOriginalDst = 80
)

// ServiceStats counts a service's proxied connections on this node.
type ServiceStats struct {
	Connections uint64 // connections proxied to a backend
	Active      int64  // of those, still open
	Bytes       uint64 // bytes copied, both directions
	Errors      uint64 // connections reset: no backend, none answered
}

type serviceCounters struct {
	conns, bytes, errors atomic.Uint64
	active               atomic.Int64
}

// Stats returns the proxy counters per service ID, for metrics.
func (p *Plane) Stats() map[string]ServiceStats {
	out := map[string]ServiceStats{}
	p.stats.Range(func(k, v any) bool {
		c := v.(*serviceCounters)
		out[k.(string)] = ServiceStats{Connections: c.conns.Load(), Active: c.active.Load(), Bytes: c.bytes.Load(), Errors: c.errors.Load()}
		return true
	})
	return out
}

func (p *Plane) counters(serviceID string) *serviceCounters {
	if c, ok := p.stats.Load(serviceID); ok {
		return c.(*serviceCounters)
	}
	c, _ := p.stats.LoadOrStore(serviceID, new(serviceCounters))
	return c.(*serviceCounters)
}

// proxy is one bridge's TCP proxy: a listener the kernel redirects live
// virtual addresses to, and a bound socket that never listens, for the
// others (the kernel answers their SYNs with a reset).
type proxy struct {
	p         *Plane
	networkID string
	ln        *net.TCPListener
	refuseFD  int
	refuse    uint16
}

// startProxy binds the proxy and refuse ports on gw (ephemeral ports).
func (p *Plane) startProxy(gw netip.Addr, networkID string) (*proxy, error) {
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(gw, 0)))
	if err != nil {
		return nil, fmt.Errorf("listen for the proxy on %s: %w", gw, err)
	}
	fd, port, err := bindNoListen(gw)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("bind the refuse port on %s: %w", gw, err)
	}
	pr := &proxy{p: p, networkID: networkID, ln: ln, refuseFD: fd, refuse: port}
	p.wg.Add(1)
	go pr.serve()
	return pr, nil
}

// bindNoListen binds a TCP socket to an ephemeral port of addr without
// listening on it.
func bindNoListen(addr netip.Addr) (int, uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4()}); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port), nil
}

// ProxyPort is the port the kernel redirects live addresses to.
func (pr *proxy) ProxyPort() uint16 { return uint16(pr.ln.Addr().(*net.TCPAddr).Port) }

// RefusePort is the bound, never listening port for addresses without tasks.
func (pr *proxy) RefusePort() uint16 { return pr.refuse }

func (pr *proxy) close() {
	pr.ln.Close()
	if pr.refuseFD >= 0 {
		unix.Close(pr.refuseFD)
		pr.refuseFD = -1
	}
}

// originalDst reads where a redirected connection was addressed
// (getsockopt SO_ORIGINAL_DST). The value is a struct sockaddr_in, which
// fits in the IPv6Mreq that x/sys can read without unsafe code.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var out netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if err != nil {
			serr = err
			return
		}
		b := m.Multiaddr
		port := uint16(b[2])<<8 | uint16(b[3])
		out = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("read the original destination: %w", err)
	}
	return out, nil
}

func (pr *proxy) serve() {
	p := pr.p
	defer p.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := pr.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("proxy: accept failed; retrying", "network", pr.networkID, "err", err, "retry_in", delay)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			pr.handle(c)
		}()
	}
}

// reset closes c with a TCP reset (SO_LINGER 0): the client sees "connection
// refused/reset" at once rather than an empty answer.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// handle proxies one redirected connection.
func (pr *proxy) handle(client *net.TCPConn) {
	p := pr.p
	if !p.conns.add(client) {
		reset(client)
		return
	}
	defer p.conns.remove(client)
	dst, err := p.origDst(client)
	if err != nil {
		p.log.Debug("proxy: no original destination", "network", pr.networkID, "err", err)
		reset(client)
		return
	}
	src, _ := netip.AddrFromSlice(client.RemoteAddr().(*net.TCPAddr).IP)
	tb := p.table()
	if !tb.Known(src.Unmap()) {
		p.refreshSoon()
	}
	tg := tb.Lookup(dst.Addr(), tb.NetworksOf(src.Unmap(), pr.networkID))
	if tg == nil || len(tg.Backends) == 0 {
		if tg != nil {
			p.counters(tg.ServiceID).errors.Add(1)
		}
		reset(client)
		return
	}
	cnt := p.counters(tg.ServiceID)
	server, err := p.dialBackends(tg, dst)
	if err != nil {
		p.log.Debug("proxy: no backend answered", "service", tg.Name, "dst", dst.String(), "err", err)
		cnt.errors.Add(1)
		reset(client)
		return
	}
	if !p.conns.add(server) {
		server.Close()
		reset(client)
		return
	}
	defer p.conns.remove(server)
	client.SetNoDelay(true)
	if tc, ok := server.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	cnt.conns.Add(1)
	cnt.active.Add(1)
	defer cnt.active.Add(-1)
	join(client, server, &cnt.bytes)
}

// dialBackends connects to the target's backends in round-robin order,
// recently failed ones last, at most maxBackendTries of them.
func (p *Plane) dialBackends(tg *Target, dst netip.AddrPort) (net.Conn, error) {
	n := len(tg.Backends)
	rrKey := tg.NetworkID + "/" + dst.Addr().String()
	v, _ := p.rr.LoadOrStore(rrKey, new(atomic.Uint64))
	start := int(v.(*atomic.Uint64).Add(1) - 1)
	order := make([]Backend, 0, n)
	var later []Backend
	now := time.Now()
	for i := range n {
		b := tg.Backends[(start+i)%n]
		if t, ok := p.down.Load(b.TaskID); ok && now.Sub(t.(time.Time)) < downFor {
			later = append(later, b)
			continue
		}
		order = append(order, b)
	}
	order = append(order, later...)
	var errs []error
	for i, b := range order {
		if i == maxBackendTries {
			break
		}
		c, err := p.dialBackend(tg.NetworkID, b, dst.Port())
		if err == nil {
			p.down.Delete(b.TaskID)
			return c, nil
		}
		p.down.Store(b.TaskID, time.Now())
		errs = append(errs, fmt.Errorf("task %s: %w", b.TaskID, err))
	}
	return nil, errors.Join(errs...)
}

// dialBackend connects to port of one task: over the bridge for a local
// task, through a tunnel to its node otherwise.
func (p *Plane) dialBackend(networkID string, b Backend, port uint16) (net.Conn, error) {
	if b.IsLocal() {
		d := net.Dialer{Timeout: backendDialTimeout}
		return d.DialContext(p.ctx, "tcp", netip.AddrPortFrom(b.Local, port).String())
	}
	c, _, err := p.dialTunnel(p.ctx, b.NodeID, b.DataAddr, &swarmpb.TunnelHeader{
		Kind: swarmpb.TunnelHeader_KIND_CONNECT, NetworkId: networkID, TaskId: b.TaskID, Port: uint32(port),
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// closeWriter is a connection that can end its sending side alone
// (*net.TCPConn, *tls.Conn).
type closeWriter interface{ CloseWrite() error }

// join copies a and b both ways until both directions end, adding the
// bytes to n if not nil, then closes both. A clean end of one direction is
// passed on as a half-close, so request/response protocols that shut down
// writing first keep working.
func join(a, b net.Conn, n *atomic.Uint64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(b, a, n)
	}()
	pipe(a, b, n)
	wg.Wait()
	a.Close()
	b.Close()
}

// pipe copies src to dst. At src's end it half-closes dst; on an error it
// closes both, which ends the other direction too.
func pipe(dst, src net.Conn, n *atomic.Uint64) {
	w, err := io.Copy(dst, src)
	if n != nil {
		n.Add(uint64(w))
	}
	if err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(closeWriter); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}

// connSet tracks open connections so that Run's end closes them.
type connSet struct {
	mu     sync.Mutex
	closed bool
	m      map[io.Closer]struct{}
}

func (s *connSet) add(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[io.Closer]struct{}{}
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c io.Closer) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for c := range m {
		c.Close()
	}
}
