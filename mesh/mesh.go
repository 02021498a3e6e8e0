package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Defaults; see SetDialTimeout and SetUDPIdleTimeout.
const (
	DefaultDialTimeout    = time.Second
	DefaultUDPIdleTimeout = 30 * time.Second
	// downFor is how long a backend that failed a dial is tried only after
	// every other backend of its port (so one dead task does not add a dial
	// timeout to every n-th connection while the managers catch up).
	downFor = 2 * time.Second
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("mesh: closed")

// PortError is one published port that could not be served.
type PortError struct {
	Protocol string
	Port     uint32
	Err      error
}

func (e *PortError) Error() string {
	return fmt.Sprintf("%s/%d: %v", e.Protocol, e.Port, e.Err)
}

func (e *PortError) Unwrap() error { return e.Err }

// UpdateError lists the ports an Update could not bind (or rejected as
// invalid). Every other port of the table is served.
type UpdateError struct {
	Ports []*PortError
}

func (e *UpdateError) Error() string {
	parts := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		parts[i] = p.Error()
	}
	return "mesh: cannot serve " + strings.Join(parts, "; ")
}

// Unwrap exposes the per-port errors to errors.Is/As.
func (e *UpdateError) Unwrap() []error {
	errs := make([]error, len(e.Ports))
	for i, p := range e.Ports {
		errs[i] = p
	}
	return errs
}

// Stats is a snapshot of the mesh's counters.
type Stats struct {
	// Active counts, per backend address, the open proxied TCP connections
	// and live UDP flows (including ones to backends no longer in the table).
	Active map[string]int
	// Forwarded counts TCP connections and UDP flows ever set up to a backend.
	Forwarded uint64
	// Refused counts TCP client connections closed at once because no
	// backend was listed or none could be dialed.
	Refused uint64
	// Dropped counts UDP datagrams dropped for lack of a usable backend.
	Dropped uint64
	// Listeners is the number of published ports currently bound.
	Listeners int
	// Ports holds the counters of each published port bound now, with the
	// service that publishes it.
	Ports []PortStats

	// Kernel: the kernel path counts the TCP connections it forwards (a
	// counting Forwarder has applied rules); the kernel figures below
	// and in Ports mean something only then. Connections the kernel
	// forwards never reach the userspace counters above, and those it lets
	// through to the userspace listener are counted there only.
	Kernel bool
	// KernelForwarded counts the TCP connections the kernel forwarded to
	// a task, on every port published since the mesh took the kernel path.
	// It is read from the kernel at most once a second.
	KernelForwarded uint64
}

// PortStats are the counters of one published port: the userspace
// proxy's, and the kernel path's connections (Stats.Kernel).
type PortStats struct {
	Protocol string // tcp | udp
	Port     uint32
	Service  string // the publishing service's name, as the table gives it
	// Connections counts TCP connections and UDP flows set up to a backend;
	// Refused TCP connections closed at once (no usable backend); Dropped
	// UDP datagrams without a usable backend.
	Connections, Refused, Dropped uint64
	// BytesIn counts bytes from clients to backends, BytesOut the replies.
	BytesIn, BytesOut uint64
	// KernelConnections counts the TCP connections the kernel path
	// forwarded to a task (Stats.Kernel). The kernel counts no bytes: its
	// nat rules see only a connection's first packet.
	KernelConnections uint64
}

// portCounters are PortStats' live counters, kept per port for the mesh's
// life so that a port published again goes on counting.
type portCounters struct {
	conns, refused, dropped, bytesIn, bytesOut atomic.Uint64
}

// Mesh is the routing mesh of one node. All methods are safe for concurrent
// use.
type Mesh struct {
	ingressIP string
	log       *slog.Logger

	dialTimeout atomic.Int64 // time.Duration
	udpIdle     atomic.Int64 // time.Duration

	ctx    context.Context // canceled by Close: aborts dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the mesh starts

	mu     sync.Mutex // serializes Update and Close
	ports  map[portKey]port
	closed bool

	// The kernel path (kernel.go), all under mu.
	fwd       Forwarder // nil: userspace only
	kernelErr error     // why the kernel does not forward now; nil when it does
	// path is what Path reports, published under mu whenever fwd or
	// kernelErr change and read without it: mu is held across nft runs.
	path       atomic.Pointer[pathState]
	local      map[LocalKey]netip.AddrPort
	applied    *KernelRules          // the rules last applied with success; nil: none or unknown
	tableSeen  bool                  // an Update has run
	isHostAddr func(netip.Addr) bool // tests; nil = this host's addresses

	connMu      sync.Mutex
	conns       map[net.Conn]struct{} // proxied connections (both sides)
	connsClosed bool

	// view is the bound ports as Stats reports them, published under mu
	// by Update and Close and read without it: mu is held across nft
	// runs, and the metrics scrape must not wait for them.
	view atomic.Pointer[[]portView]
	// kcounts reads the kernel path's counters (nil: the forwarder has
	// none), set by UseKernel and read by Stats without mu.
	kcounts atomic.Pointer[kernelCounts]
	// kernelRetry: the last kernel transaction failed (KernelRetry).
	kernelRetry atomic.Bool

	statMu    sync.Mutex
	active    map[string]int
	perPort   map[portKey]*portCounters // under statMu
	forwarded atomic.Uint64
	refused   atomic.Uint64
	dropped   atomic.Uint64
}

type portKey struct {
	proto string // "tcp" | "udp"
	port  uint32
}

// portView is one bound published port as Stats sees it.
type portView struct {
	key     portKey
	service string
	c       *portCounters
}

func (k portKey) String() string { return fmt.Sprintf("%s/%d", k.proto, k.port) }

// port is one bound published port.
type port interface {
	setBackends(bs *backendSet)
	backends() *backendSet
	close() // stops accepting; does not wait for goroutines
}

// backend is one task address of one published port. Backend values are kept
// across Updates while the address (and task) stays, so dial-failure marks
// survive table changes.
type backend struct {
	taskID    string
	addr      string
	downUntil atomic.Int64 // unix nanos; 0 = healthy
}

type backendSet struct {
	list   []*backend
	byAddr map[string]*backend
}

// New returns a mesh that binds published ports on ingressIP ("" = all
// addresses). log may be nil.
func New(ingressIP string, log *slog.Logger) *Mesh {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		ingressIP: ingressIP,
		log:       log.With("component", "mesh"),
		ctx:       ctx,
		cancel:    cancel,
		ports:     make(map[portKey]port),
		conns:     make(map[net.Conn]struct{}),
		active:    make(map[string]int),
	}
	m.dialTimeout.Store(int64(DefaultDialTimeout))
	m.udpIdle.Store(int64(DefaultUDPIdleTimeout))
	return m
}

// SetDialTimeout sets the timeout of each backend dial (default 1 s).
func (m *Mesh) SetDialTimeout(d time.Duration) {
	if d > 0 {
		m.dialTimeout.Store(int64(d))
	}
}

// SetUDPIdleTimeout sets how long a UDP flow lives without traffic in either
// direction (default 30 s). It applies to flows' next idle check.
func (m *Mesh) SetUDPIdleTimeout(d time.Duration) {
	if d > 0 {
		m.udpIdle.Store(int64(d))
	}
}

// Update installs a new full endpoint table. It binds ports new to the table,
// closes the listeners of ports gone from it (connections already proxied
// through them keep going), and atomically swaps the backend lists of the
// rest. Ports that cannot be bound are reported in an *UpdateError while all
// others are served; they are tried again on the next Update, so calling
// Update again with the same table is the way to retry.
func (m *Mesh) Update(ports []*swarmpb.ServiceEndpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}

	var failed []*PortError
	want := make(map[portKey][]*swarmpb.Backend)
	pp := make(map[portKey]bool)
	svc := make(map[portKey]string)
	for _, ep := range ports {
		if ep == nil {
			continue
		}
		proto := strings.ToLower(ep.GetProtocol())
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			failed = append(failed, &PortError{Protocol: proto, Port: ep.GetPublishedPort(), Err: errors.New("unsupported protocol")})
			continue
		}
		if ep.GetPublishedPort() == 0 || ep.GetPublishedPort() > 65535 {
			failed = append(failed, &PortError{Protocol: proto, Port: ep.GetPublishedPort(), Err: errors.New("invalid port")})
			continue
		}
		k := portKey{proto, ep.GetPublishedPort()}
		switch ep.GetProxyProtocol() {
		case "":
		case ProxyProtocolV2:
			if proto != "tcp" {
				failed = append(failed, &PortError{Protocol: proto, Port: ep.GetPublishedPort(), Err: errors.New("the PROXY protocol applies to tcp ports only")})
				continue
			}
			pp[k] = true
		default:
			failed = append(failed, &PortError{Protocol: proto, Port: ep.GetPublishedPort(), Err: fmt.Errorf("unknown PROXY protocol version %q", ep.GetProxyProtocol())})
			continue
		}
		if prev, dup := want[k]; dup {
			// Two services cannot publish the same port; the managers should
			// not send this. Serve the union rather than drop either.
			m.log.Warn("published port listed twice; merging backends", "port", k.String(), "service", ep.GetServiceName())
			want[k] = append(prev, ep.GetBackends()...)
			continue
		}
		want[k] = ep.GetBackends()
		svc[k] = ep.GetServiceName()
	}

	for k, p := range m.ports {
		if _, ok := want[k]; !ok {
			p.close()
			delete(m.ports, k)
			m.log.Info("unpublished port closed", "port", k.String())
		}
	}

	for k, bes := range want {
		p, ok := m.ports[k]
		var old *backendSet
		if ok {
			old = p.backends()
		}
		bs := newBackendSet(bes, old)
		if ok {
			p.setBackends(bs)
			if tp, isTCP := p.(*tcpPort); isTCP {
				tp.ppv2.Store(pp[k])
			}
			continue
		}
		p, err := m.bind(k, bs)
		if err != nil {
			failed = append(failed, &PortError{Protocol: k.proto, Port: k.port, Err: err})
			m.log.Warn("cannot bind published port", "port", k.String(), "err", err)
			continue
		}
		if tp, isTCP := p.(*tcpPort); isTCP {
			tp.ppv2.Store(pp[k])
		}
		m.ports[k] = p
		m.log.Info("published port bound", "port", k.String(), "addr", m.listenAddr(k.port), "backends", len(bs.list))
	}

	m.publishViewLocked(svc)
	m.tableSeen = true
	if m.fwd != nil {
		// The listeners stay bound under the kernel rules: they hold the
		// ports, serve the share the kernel lets through (tasks on other
		// hosts, PROXY-protocol ports) and everything if the rules fail.
		m.applyKernelLocked()
	}

	if len(failed) == 0 {
		return nil
	}
	sort.Slice(failed, func(i, j int) bool {
		if failed[i].Port != failed[j].Port {
			return failed[i].Port < failed[j].Port
		}
		return failed[i].Protocol < failed[j].Protocol
	})
	return &UpdateError{Ports: failed}
}

// publishViewLocked publishes the bound ports, with the service of each,
// for Stats. m.mu is held.
func (m *Mesh) publishViewLocked(services map[portKey]string) {
	v := make([]portView, 0, len(m.ports))
	for k := range m.ports {
		v = append(v, portView{key: k, service: services[k], c: m.counters(k)})
	}
	sort.Slice(v, func(i, j int) bool {
		if v[i].key.port != v[j].key.port {
			return v[i].key.port < v[j].key.port
		}
		return v[i].key.proto < v[j].key.proto
	})
	m.view.Store(&v)
}

func newBackendSet(bes []*swarmpb.Backend, old *backendSet) *backendSet {
	bs := &backendSet{byAddr: make(map[string]*backend, len(bes))}
	for _, be := range bes {
		addr := be.GetAddr()
		if addr == "" {
			continue
		}
		if _, dup := bs.byAddr[addr]; dup {
			continue
		}
		b := &backend{taskID: be.GetTaskId(), addr: addr}
		if old != nil {
			if ob, ok := old.byAddr[addr]; ok && ob.taskID == b.taskID {
				b = ob
			}
		}
		bs.list = append(bs.list, b)
		bs.byAddr[addr] = b
	}
	return bs
}

func (m *Mesh) listenAddr(p uint32) string {
	return net.JoinHostPort(m.ingressIP, strconv.FormatUint(uint64(p), 10))
}

func (m *Mesh) bind(k portKey, bs *backendSet) (port, error) {
	// net.ListenConfig sets SO_REUSEADDR on Linux TCP listeners, so a port
	// whose old connections linger in TIME_WAIT can be bound again at once.
	var lc net.ListenConfig
	switch k.proto {
	case "tcp":
		ln, err := lc.Listen(m.ctx, "tcp", m.listenAddr(k.port))
		if err != nil {
			return nil, err
		}
		p := &tcpPort{m: m, key: k, c: m.counters(k), ln: ln.(*net.TCPListener)}
		p.bs.Store(bs)
		// Start the rotation at a random backend: every node's mesh gets the
		// same sorted list, and without this each node's first connections
		// would all land on the same task.
		p.rr.Store(rand.Uint64())
		m.wg.Add(1)
		go p.serve()
		return p, nil
	case "udp":
		pc, err := lc.ListenPacket(m.ctx, "udp", m.listenAddr(k.port))
		if err != nil {
			return nil, err
		}
		p := &udpPort{m: m, key: k, c: m.counters(k), pc: pc.(*net.UDPConn), flows: make(map[netip.AddrPort]*udpFlow)}
		p.bs.Store(bs)
		p.rr.Store(rand.Uint64())
		m.wg.Add(1)
		go p.serve()
		return p, nil
	}
	return nil, errors.New("unsupported protocol")
}

// Close closes every listener and every proxied connection and waits for all
// the mesh's goroutines to end. It is idempotent.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.fwd != nil {
		// Established connections keep flowing (conntrack holds their
		// translation); new ones stop being forwarded with the listeners.
		ctx, cancel := context.WithTimeout(context.Background(), kernelTimeout)
		if err := m.fwd.Remove(ctx); err != nil {
			m.log.Warn("cannot remove the mesh's kernel rules; the next start of this node removes them", "err", err)
		}
		cancel()
		m.applied = nil
		m.setKernelErrLocked(ErrClosed)
	}
	for k, p := range m.ports {
		p.close()
		delete(m.ports, k)
	}
	m.publishViewLocked(nil)
	m.mu.Unlock()

	m.cancel()
	m.connMu.Lock()
	m.connsClosed = true
	for c := range m.conns {
		c.Close()
	}
	m.connMu.Unlock()
	m.wg.Wait()
	return nil
}

// Stats returns a snapshot of the mesh's counters. It never waits for the
// rules being applied: the node's metrics read it, while Update and
// SetLocal hold m.mu across nft runs. On the kernel path it reads the
// kernel's counters (one nft run, at most once per second, bounded by a
// timeout; the last figures otherwise).
func (m *Mesh) Stats() Stats {
	s := Stats{
		Active:    make(map[string]int),
		Forwarded: m.forwarded.Load(),
		Refused:   m.refused.Load(),
		Dropped:   m.dropped.Load(),
	}
	m.statMu.Lock()
	for a, n := range m.active {
		s.Active[a] = n
	}
	m.statMu.Unlock()
	var view []portView
	if v := m.view.Load(); v != nil {
		view = *v
	}
	var kernel map[uint16]uint64
	if k := m.kcounts.Load(); k != nil && k.applied.Load() {
		s.Kernel = true
		kernel = k.read(m.ctx, m.log)
		for _, n := range kernel {
			s.KernelForwarded += n
		}
	}
	s.Listeners = len(view)
	for _, p := range view {
		c := p.c
		ps := PortStats{Protocol: p.key.proto, Port: p.key.port, Service: p.service,
			Connections: c.conns.Load(), Refused: c.refused.Load(), Dropped: c.dropped.Load(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()}
		if p.key.proto == "tcp" {
			ps.KernelConnections = kernel[uint16(p.key.port)]
		}
		s.Ports = append(s.Ports, ps)
	}
	return s
}

// counters returns the port's counters, creating them on first use.
func (m *Mesh) counters(k portKey) *portCounters {
	m.statMu.Lock()
	defer m.statMu.Unlock()
	c := m.perPort[k]
	if c == nil {
		if m.perPort == nil {
			m.perPort = make(map[portKey]*portCounters)
		}
		c = &portCounters{}
		m.perPort[k] = c
	}
	return c
}

func (m *Mesh) connStart(addr string) {
	m.forwarded.Add(1)
	m.statMu.Lock()
	m.active[addr]++
	m.statMu.Unlock()
}

func (m *Mesh) connEnd(addr string) {
	m.statMu.Lock()
	if m.active[addr]--; m.active[addr] <= 0 {
		delete(m.active, addr)
	}
	m.statMu.Unlock()
}

// track registers a proxied socket so Close can close it. It returns false
// (and the caller must close c) if the mesh is closing.
func (m *Mesh) track(c net.Conn) bool {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.connsClosed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mesh) untrack(c net.Conn) {
	m.connMu.Lock()
	delete(m.conns, c)
	m.connMu.Unlock()
}

// pick calls try on the port's backends, starting at the next round-robin
// position and going around once over backends not recently failed, then
// once over those that did. It returns the first backend try accepts.
func pick(bs *backendSet, rr *atomic.Uint64, try func(*backend) error) *backend {
	n := len(bs.list)
	if n == 0 {
		return nil
	}
	start := int((rr.Add(1) - 1) % uint64(n))
	now := time.Now().UnixNano()
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < n; i++ {
			b := bs.list[(start+i)%n]
			down := b.downUntil.Load() > now
			if down != (pass == 1) {
				continue
			}
			if err := try(b); err != nil {
				b.downUntil.Store(time.Now().Add(downFor).UnixNano())
				continue
			}
			b.downUntil.Store(0)
			return b
		}
	}
	return nil
}
