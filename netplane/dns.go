package netplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNS defaults.
const (
	// upstreamTimeout bounds one exchange with one of the host's resolvers;
	// forwardTimeout bounds the whole forwarding of a query (all of them).
	upstreamTimeout = 2 * time.Second
	forwardTimeout  = 4 * time.Second
	// maxForwards bounds the queries being forwarded at once per bridge; a
	// query beyond it is answered SERVFAIL rather than queued.
	maxForwards = 256
	// resolvConfTTL is how long the host's resolver list is cached.
	resolvConfTTL = 5 * time.Second
)

// dnsServer answers queries arriving on one bridge's gateway, UDP and TCP.
type dnsServer struct {
	networkID string
	table     func() *Table
	unknown   func() // called for a query from an address the table does not know
	fwd       *forwarder
	log       *slog.Logger
	sem       chan struct{}
	udp, tcp  *dns.Server
}

// startDNS binds addr (UDP and TCP) and serves the bridge of networkID.
// unknown (may be nil) is called when a query comes from an address the
// table does not know, e.g. a container that has just started.
func startDNS(addr netip.AddrPort, networkID string, table func() *Table, unknown func(), fwd *forwarder, log *slog.Logger) (*dnsServer, error) {
	pc, ln, tcpAddr, err := listenDNS(addr)
	if err != nil {
		return nil, err
	}
	s := &dnsServer{networkID: networkID, table: table, unknown: unknown, fwd: fwd, log: log, sem: make(chan struct{}, maxForwards)}
	s.udp = &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				log.Debug("DNS server stopped", "addr", tcpAddr.String(), "err", err)
			}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("DNS server on %s did not start within 5s", tcpAddr)
		}
	}
	return s, nil
}

// listenDNS binds UDP and TCP on one port. With port 0 (tests) the port
// the UDP socket got is used for TCP too, and another is tried when TCP
// finds it taken.
func listenDNS(addr netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp4", addr.String())
		if err != nil {
			return nil, nil, addr, fmt.Errorf("listen for DNS on udp %s: %w", addr, err)
		}
		tcpAddr := netip.AddrPortFrom(addr.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp4", tcpAddr.String())
		if err == nil {
			return pc, ln, tcpAddr, nil
		}
		pc.Close()
		if addr.Port() != 0 || attempt >= 10 {
			return nil, nil, tcpAddr, fmt.Errorf("listen for DNS on tcp %s: %w", tcpAddr, err)
		}
	}
}

// Addr is the address the server answers on (UDP and TCP).
func (s *dnsServer) Addr() netip.AddrPort {
	return s.udp.PacketConn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// close stops both servers.
func (s *dnsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.udp.ShutdownContext(ctx); err != nil {
		s.udp.PacketConn.Close()
	}
	if err := s.tcp.ShutdownContext(ctx); err != nil {
		s.tcp.Listener.Close()
	}
}

// ServeDNS answers one query: the names the table owns for the querying
// container's networks, with TTL 0; anything else through the host's
// resolvers.
func (s *dnsServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	if q.Qclass == dns.ClassINET {
		src := addrOf(w.RemoteAddr())
		tb := s.table()
		if s.unknown != nil && !tb.Known(src) {
			s.unknown()
		}
		if addrs, owned := tb.Resolve(q.Name, tb.NetworksOf(src, s.networkID)); owned {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Authoritative = true
			m.RecursionAvailable = true
			if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
				for _, a := range addrs {
					m.Answer = append(m.Answer, &dns.A{
						Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
						A:   a.AsSlice(),
					})
				}
			}
			writeReply(w, r, m)
			return
		}
	}
	s.forward(w, r)
}

func (s *dnsServer) forward(w dns.ResponseWriter, r *dns.Msg) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.fwd.total)
	defer cancel()
	resp, err := s.fwd.exchange(ctx, r)
	if err != nil {
		s.log.Debug("DNS forward failed", "name", r.Question[0].Name, "err", err)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		w.WriteMsg(m)
		return
	}
	resp.Id = r.Id
	writeReply(w, r, resp)
}

// writeReply sends m, truncated to what a UDP client can take.
func writeReply(w dns.ResponseWriter, r, m *dns.Msg) {
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// forwarder sends queries the table does not own to the host's resolvers,
// read from a resolv.conf file (re-read every few seconds).
type forwarder struct {
	path    string
	timeout time.Duration // per upstream exchange
	total   time.Duration // whole forward

	mu      sync.Mutex
	servers []string // host:port
	loaded  time.Time
	// static, when set, replaces the file (tests).
	static []string
}

func newForwarder(path string) *forwarder {
	return &forwarder{path: path, timeout: upstreamTimeout, total: forwardTimeout}
}

// upstreams returns the resolvers to try, in order.
func (f *forwarder) upstreams() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.static != nil {
		return f.static, nil
	}
	if f.servers != nil && time.Since(f.loaded) < resolvConfTTL {
		return f.servers, nil
	}
	cc, err := dns.ClientConfigFromFile(f.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no host resolvers: %s does not exist", f.path)
		}
		return nil, fmt.Errorf("read host resolvers: %w", err)
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	servers := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, port))
	}
	f.servers, f.loaded = servers, time.Now()
	return servers, nil
}

// exchange asks each upstream in turn until one answers (any rcode), within
// ctx, over UDP; a truncated answer is asked again over TCP.
func (f *forwarder) exchange(ctx context.Context, r *dns.Msg) (*dns.Msg, error) {
	servers, err := f.upstreams()
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		return nil, errors.New("no host resolvers configured")
	}
	q := r.Copy()
	var last error
	for _, srv := range servers {
		if ctx.Err() != nil {
			break
		}
		c := &dns.Client{Net: "udp", Timeout: f.timeout}
		resp, _, err := c.ExchangeContext(ctx, q, srv)
		if err == nil && resp.Truncated {
			c = &dns.Client{Net: "tcp", Timeout: f.timeout}
			resp, _, err = c.ExchangeContext(ctx, q, srv)
		}
		if err == nil {
			return resp, nil
		}
		last = fmt.Errorf("%s: %w", srv, err)
	}
	if last == nil {
		last = ctx.Err()
	}
	return nil, last
}
