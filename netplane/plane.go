package netplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Timings and bounds of the reconcile loop.
const (
	// resyncEvery is the safety reconcile when no view arrives.
	resyncEvery = 5 * time.Second
	// engineTimeout bounds one engine call (EnsureBridge, Endpoints, ...);
	// rulesTimeout one kernel rules transaction.
	engineTimeout = 20 * time.Second
	rulesTimeout  = 10 * time.Second
	// attachGrace keeps a bridge that Attach just ensured although its
	// network is not in the view yet and no container is on it yet. The
	// container is created right after Attach and the view names the
	// network as soon as the task is assigned, so seconds are enough; a
	// longer grace only keeps unused bridges around after the last task.
	attachGrace = 10 * time.Second
	// viewWait is how long Attach waits for a network to appear in the view
	// before it names the bridge after the network's ID.
	viewWait = 5 * time.Second
	// rulesReapply re-applies unchanged rules now and then, in case someone
	// flushed them.
	rulesReapply = time.Minute
	// refreshEvery bounds the wake-ups for unknown sources.
	refreshEvery = time.Second
	// DNSPort is where the DNS responder listens on each gateway.
	DNSPort = 53
)

// Plane is one node's service-discovery data plane. Its methods are safe for
// concurrent use.
type Plane struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // ends when Run returns
	cancel context.CancelFunc
	wg     sync.WaitGroup

	view   atomic.Pointer[swarmpb.EndpointsMessage]
	viewCh atomic.Pointer[chan struct{}] // closed and replaced on each Update
	tbl    atomic.Pointer[Table]
	wake   chan struct{}
	// lastRefresh is when refreshSoon last woke the loop (unix ns).
	lastRefresh atomic.Int64
	ruleErr     atomic.Pointer[error]
	report      atomic.Pointer[[]*swarmpb.NodeNetwork] // for heartbeats, never blocked by the engine

	// mu guards bridges and the listeners in it. Engine calls are made
	// while holding it: Attach and reconcile are serialized, which keeps
	// "ensure, then maybe remove" decisions consistent.
	mu      sync.Mutex
	bridges map[string]*bridgeState // by network ID
	running bool                    // Run is serving listeners

	warned      map[string]string // warning key -> last error logged at Warn
	alloc       *TaskAddrs        // reconcile only
	lastRules   *RuleSet
	lastApplied time.Time

	ticketKey [32]byte
	sessions  tls.ClientSessionCache
	stats     sync.Map // service ID -> *serviceCounters
	rr        sync.Map // network/address -> *atomic.Uint64
	down      sync.Map // task ID -> time.Time of its last failed dial
	conns     connSet
	pending   chan struct{} // data-port connections before their request

	// Seams for tests.
	dnsPort    uint16
	resolvConf string
	origDst    func(*net.TCPConn) (netip.AddrPort, error)
}

// bridgeState is one of this node's bridges and what serves on it.
type bridgeState struct {
	br         Bridge
	vipSubnet  netip.Prefix // from the view; invalid until the network is seen
	dns        *dnsServer
	proxy      *proxy
	local      map[string]netip.Addr // task ID -> container address, last seen
	attachedAt time.Time
}

// New makes a Plane; Run starts it.
func New(cfg Config) *Plane {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Plane{
		cfg:        cfg,
		log:        log.With("component", "netplane"),
		ctx:        ctx,
		cancel:     cancel,
		wake:       make(chan struct{}, 1),
		bridges:    map[string]*bridgeState{},
		alloc:      NewTaskAddrs(),
		warned:     map[string]string{},
		pending:    make(chan struct{}, maxPendingTunnels),
		sessions:   tls.NewLRUClientSessionCache(256),
		dnsPort:    DNSPort,
		resolvConf: "/etc/resolv.conf",
		origDst:    originalDst,
	}
	rand.Read(p.ticketKey[:])
	ch := make(chan struct{})
	p.viewCh.Store(&ch)
	p.tbl.Store(BuildTable(TableInput{View: &swarmpb.EndpointsMessage{}, NodeID: cfg.NodeID}, nil))
	return p
}

// table is the current name table.
func (p *Plane) table() *Table { return p.tbl.Load() }

// Run serves the tunnel listener (if DataAddr is set) and keeps bridges,
// rules, names and proxies in line with the latest view until ctx ends.
// On return the listeners are closed; bridges and rules are left in place
// (running tasks keep working while the daemon restarts). It returns nil:
// every failure is logged and retried (a data port that cannot be bound is
// logged, and the rest runs without it).
func (p *Plane) Run(ctx context.Context) error {
	defer p.shutdown()
	if p.cfg.DataAddr != "" {
		// A data port taken by another program must not stop the rest:
		// local names and proxies still work, only other nodes cannot
		// reach this node's tasks.
		if ln, err := net.Listen("tcp", p.cfg.DataAddr); err != nil {
			p.log.Warn("cannot serve the data port: tasks on this node are reachable only from this node (choose another port with --data-port)", "addr", p.cfg.DataAddr, "err", err)
		} else {
			p.wg.Add(1)
			go p.serveTunnel(ln)
			defer ln.Close()
		}
	}
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()
	p.adopt(ctx)

	tick := time.NewTicker(resyncEvery)
	defer tick.Stop()
	for {
		p.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-tick.C:
		}
	}
}

// shutdown closes every listener and connection and waits for their
// goroutines. Bridges and rules stay.
func (p *Plane) shutdown() {
	p.mu.Lock()
	p.running = false
	for _, b := range p.bridges {
		b.stopListeners()
	}
	p.mu.Unlock()
	p.cancel()
	p.conns.closeAll()
	p.wg.Wait()
}

// adopt takes over the bridges a previous run left.
func (p *Plane) adopt(ctx context.Context) {
	if p.cfg.Bridges == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	brs, err := p.cfg.Bridges.ListBridges(cctx)
	if err != nil {
		p.log.Warn("cannot list this node's bridges to adopt them; they are adopted when their network's tasks return", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, br := range brs {
		if br.NetworkID == "" || p.bridges[br.NetworkID] != nil {
			continue
		}
		p.bridges[br.NetworkID] = &bridgeState{br: br}
		p.log.Info("adopted bridge", "network", br.NetworkID, "bridge", br.DockerName)
	}
	p.publishReportLocked()
}

// Update hands the Plane the latest discovery view from the leader. It does
// not block on the engine or the kernel.
func (p *Plane) Update(view *swarmpb.EndpointsMessage) {
	if view == nil {
		view = &swarmpb.EndpointsMessage{}
	}
	p.view.Store(proto.CloneOf(view))
	ch := make(chan struct{})
	if old := p.viewCh.Swap(&ch); old != nil {
		close(*old)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// refreshSoon wakes the reconcile loop, at most once per refreshEvery: a
// query or connection from a container the table does not know yet (it has
// just started) gets it listed before the periodic resync.
func (p *Plane) refreshSoon() {
	now := time.Now().UnixNano()
	last := p.lastRefresh.Load()
	if now-last < int64(refreshEvery) || !p.lastRefresh.CompareAndSwap(last, now) {
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// networkInView returns a network of the latest view.
func (p *Plane) networkInView(id string) *swarmpb.NetworkView {
	for _, n := range p.view.Load().GetNetworks() {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

// reconcile brings bridges, listeners, the table and the rules in line
// with the latest view.
func (p *Plane) reconcile(ctx context.Context) {
	view := p.view.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if p.cfg.Bridges != nil {
		for _, n := range view.GetNetworks() {
			_, err := p.ensureLocked(ctx, n.GetId(), n.GetName(), n.GetInternal())
			p.warnLocked("ensure "+n.GetId(), err, "cannot set up the network on this node; its tasks cannot start here until this is fixed", "network", n.GetName())
		}
	}
	// Local containers per bridge; listeners on every bridge (adopted and
	// attached ones too).
	local := map[string]map[string]netip.Addr{}
	for id, b := range p.bridges {
		if p.running {
			err := p.startListeners(b, id)
			p.warnLocked("listen "+id, err, "cannot serve names and virtual addresses on a bridge (is another DNS server bound to port 53 on every address?); retrying", "bridge", b.br.DockerName)
		}
		if vn := p.networkInView(id); vn != nil {
			if pfx, err := netip.ParsePrefix(vn.GetSubnet()); err == nil {
				b.vipSubnet = pfx.Masked()
			}
		}
		if p.cfg.Bridges != nil {
			cctx, cancel := context.WithTimeout(ctx, engineTimeout)
			eps, err := p.cfg.Bridges.Endpoints(cctx, b.br.DockerName)
			cancel()
			p.warnLocked("endpoints "+id, err, "cannot list the containers on a bridge; using the last list", "bridge", b.br.DockerName)
			if err == nil {
				b.local = eps
			}
		}
		local[id] = b.local
	}
	// Bridges no longer needed: network out of the view, no container on it,
	// not just attached. Only once a view has arrived: a restarted daemon
	// keeps what it adopted until it knows.
	if view != nil && p.cfg.Bridges != nil {
		for id, b := range p.bridges {
			if p.networkInView(id) != nil || len(b.local) > 0 || time.Since(b.attachedAt) < attachGrace {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, engineTimeout)
			err := p.cfg.Bridges.RemoveBridge(cctx, b.br.DockerName)
			cancel()
			p.warnLocked("remove "+id, err, "cannot remove a bridge no longer needed; retrying later (remove it with 'docker network rm' if its containers are gone)", "bridge", b.br.DockerName)
			if err != nil {
				continue
			}
			b.stopListeners()
			delete(p.bridges, id)
			delete(local, id)
			p.log.Info("removed bridge", "network", id, "bridge", b.br.DockerName)
		}
	}
	if view == nil {
		view = &swarmpb.EndpointsMessage{}
	}
	// Forget dial failures old enough not to matter any more.
	p.down.Range(func(k, v any) bool {
		if time.Since(v.(time.Time)) > downFor {
			p.down.Delete(k)
		}
		return true
	})
	tb := BuildTable(TableInput{View: view, NodeID: p.cfg.NodeID, Local: local}, p.alloc)
	p.tbl.Store(tb)
	// Until the first view the rules of a previous run stay: replacing them
	// with an empty set would let packets to virtual addresses leave.
	if p.view.Load() != nil {
		p.applyRulesLocked(ctx, tb)
	}
	p.publishReportLocked()
}

// warnLocked logs err at Warn the first time it occurs for key (and when it
// changes), at Debug while it repeats, so that a retried failure does not
// flood the log; a nil err clears key.
func (p *Plane) warnLocked(key string, err error, msg string, args ...any) {
	if err == nil {
		delete(p.warned, key)
		return
	}
	args = append(args, "err", err)
	if p.warned[key] == err.Error() {
		p.log.Debug(msg, args...)
		return
	}
	p.warned[key] = err.Error()
	p.log.Warn(msg, args...)
}

// ensureLocked ensures the bridge of a network and its listeners.
func (p *Plane) ensureLocked(ctx context.Context, id, name string, internal bool) (*bridgeState, error) {
	b := p.bridges[id]
	if b == nil {
		if name == "" {
			name = id[:min(len(id), 12)]
		}
		cctx, cancel := context.WithTimeout(ctx, engineTimeout)
		br, err := p.cfg.Bridges.EnsureBridge(cctx, BridgeRequest{NetworkID: id, NetworkName: name, Internal: internal})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("create the engine network for %s: %w", name, err)
		}
		if !br.Gateway.Is4() {
			return nil, fmt.Errorf("the engine network %s has no IPv4 gateway", br.DockerName)
		}
		b = &bridgeState{br: br}
		p.bridges[id] = b
	}
	if p.running {
		if err := p.startListeners(b, id); err != nil {
			return b, err
		}
	}
	return b, nil
}

// startListeners starts what is missing of a bridge's DNS and proxy.
func (p *Plane) startListeners(b *bridgeState, networkID string) error {
	if !b.br.Gateway.Is4() {
		return fmt.Errorf("the engine network %s has no IPv4 gateway", b.br.DockerName)
	}
	if b.dns == nil {
		fwd := newForwarder(p.resolvConf)
		s, err := startDNS(netip.AddrPortFrom(b.br.Gateway, p.dnsPort), networkID, p.table, p.refreshSoon, fwd, p.log)
		if err != nil {
			return err
		}
		b.dns = s
	}
	if b.proxy == nil {
		pr, err := p.startProxy(b.br.Gateway, networkID)
		if err != nil {
			return err
		}
		b.proxy = pr
	}
	return nil
}

func (b *bridgeState) stopListeners() {
	if b.dns != nil {
		b.dns.close()
		b.dns = nil
	}
	if b.proxy != nil {
		b.proxy.close()
		b.proxy = nil
	}
}

// applyRulesLocked hands the kernel the rules of every served bridge, when
// they changed (or now and then, or after a failure).
func (p *Plane) applyRulesLocked(ctx context.Context, tb *Table) {
	if p.cfg.Rules == nil {
		return
	}
	rs := p.ruleSetLocked(tb)
	if p.lastRules != nil && rulesEqual(*p.lastRules, rs) && time.Since(p.lastApplied) < rulesReapply {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, rulesTimeout)
	var err error
	if len(rs.Bridges) == 0 {
		// Nothing left on this node: no table at all, rather than an
		// empty one.
		err = p.cfg.Rules.Remove(cctx)
	} else {
		err = p.cfg.Rules.Apply(cctx, rs)
	}
	cancel()
	p.warnLocked("rules", err, "cannot program the kernel rules; service names on this node do not route until this is fixed (needs root or CAP_NET_ADMIN and nftables)")
	if err != nil {
		p.ruleErr.Store(&err)
		p.lastRules = nil
		return
	}
	p.ruleErr.Store(nil)
	p.lastRules, p.lastApplied = &rs, time.Now()
}

// ruleSetLocked is what the kernel must do for this node's bridges now:
// per bridge, its own network's virtual subnet, then those of the networks
// its containers are also on (a container on several networks sends to
// all of them through its default route, one bridge). The proxy answers
// only for networks the connecting container is on.
func (p *Plane) ruleSetLocked(tb *Table) RuleSet {
	var rs RuleSet
	ids := make([]string, 0, len(p.bridges))
	for id := range p.bridges {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b := p.bridges[id]
		if b.proxy == nil || !b.vipSubnet.IsValid() {
			continue
		}
		rs.Bridges = append(rs.Bridges, BridgeRules{
			Interface:  b.br.Interface,
			Gateway:    b.br.Gateway,
			VIPSubnet:  b.vipSubnet,
			ProxyPort:  b.proxy.ProxyPort(),
			RefusePort: b.proxy.RefusePort(),
			Live:       tb.Live(id),
		})
		for _, other := range tb.CoNetworks(id) {
			_, subnet, _, ok := tb.Network(other)
			if !ok || subnet.Overlaps(b.vipSubnet) {
				continue
			}
			rs.Bridges = append(rs.Bridges, BridgeRules{
				Interface:  b.br.Interface,
				Gateway:    b.br.Gateway,
				VIPSubnet:  subnet,
				ProxyPort:  b.proxy.ProxyPort(),
				RefusePort: b.proxy.RefusePort(),
				Live:       tb.Live(other),
			})
		}
	}
	return rs
}

func rulesEqual(a, b RuleSet) bool {
	return slices.EqualFunc(a.Bridges, b.Bridges, func(x, y BridgeRules) bool {
		return x.Interface == y.Interface && x.Gateway == y.Gateway && x.VIPSubnet == y.VIPSubnet &&
			x.ProxyPort == y.ProxyPort && x.RefusePort == y.RefusePort && slices.Equal(x.Live, y.Live)
	})
}

// Attach ensures the engine networks for the task's networks exist on this
// node and says how to connect its container. A task with no networks gets
// an empty Attachment.
func (p *Plane) Attach(ctx context.Context, t *swarmpb.Task) (Attachment, error) {
	nets := t.GetSpec().GetNetworks()
	if len(nets) == 0 {
		return Attachment{}, nil
	}
	if p.cfg.Bridges == nil {
		return Attachment{}, errors.New("this node's container engine cannot create networks: services with --network cannot run here")
	}
	if p.cfg.RulesError != nil {
		return Attachment{}, fmt.Errorf("this node cannot route service names: %w", p.cfg.RulesError)
	}
	var att Attachment
	seen := map[string]bool{}
	for _, n := range nets {
		id := n.GetTarget()
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		vn := p.waitNetwork(ctx, id)
		p.mu.Lock()
		b, err := p.ensureLocked(ctx, id, vn.GetName(), vn.GetInternal())
		if b != nil {
			b.attachedAt = time.Now()
		}
		p.publishReportLocked()
		p.mu.Unlock()
		if err != nil {
			return Attachment{}, fmt.Errorf("attach to network %s: %w", nameOr(vn.GetName(), id), err)
		}
		// Names are answered by our DNS on the gateway, not by the engine:
		// engine aliases would make Docker's resolver answer a local
		// container's address instead of the service's virtual address.
		att.Networks = append(att.Networks, AttachedNetwork{NetworkID: id, DockerName: b.br.DockerName})
		att.DNS = append(att.DNS, b.br.Gateway)
	}
	return att, nil
}

func nameOr(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// waitNetwork returns the network from the view, waiting a little for a
// view that has it (a task can arrive before the view naming its network);
// nil if none came.
func (p *Plane) waitNetwork(ctx context.Context, id string) *swarmpb.NetworkView {
	deadline := time.NewTimer(viewWait)
	defer deadline.Stop()
	for {
		ch := *p.viewCh.Load()
		if n := p.networkInView(id); n != nil {
			return n
		}
		select {
		case <-ch:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-p.ctx.Done():
			return nil
		}
	}
}

// Report is what this node has set up per network, for its heartbeats. It
// returns the state of the last reconcile or attachment, without waiting
// for one in progress.
func (p *Plane) Report() []*swarmpb.NodeNetwork {
	r := p.report.Load()
	if r == nil {
		return nil
	}
	out := make([]*swarmpb.NodeNetwork, len(*r))
	for i, n := range *r {
		out[i] = proto.CloneOf(n)
	}
	return out
}

// publishReportLocked snapshots the bridges for Report.
func (p *Plane) publishReportLocked() {
	out := make([]*swarmpb.NodeNetwork, 0, len(p.bridges))
	for id, b := range p.bridges {
		nn := &swarmpb.NodeNetwork{
			NetworkId:     id,
			DockerNetwork: b.br.DockerName,
			Bridge:        b.br.Interface,
			Tasks:         uint32(len(b.local)),
		}
		if b.br.Subnet.IsValid() {
			nn.Subnet = b.br.Subnet.String()
		}
		if b.br.Gateway.IsValid() {
			nn.Gateway = b.br.Gateway.String()
		}
		out = append(out, nn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NetworkId < out[j].NetworkId })
	p.report.Store(&out)
}

// RulesError is the last failure to program the kernel rules, nil once
// they were applied.
func (p *Plane) RulesError() error {
	if e := p.ruleErr.Load(); e != nil {
		return *e
	}
	return nil
}

// FetchImage asks the node at addr (its data-path address) whose ID is
// nodeID for an image by ID and returns the 'docker save' stream.
func (p *Plane) FetchImage(ctx context.Context, nodeID, addr, imageID string) (io.ReadCloser, error) {
	if err := validImageID(imageID); err != nil {
		return nil, err
	}
	c, _, err := p.dialTunnel(ctx, nodeID, addr, &swarmpb.TunnelHeader{Kind: swarmpb.TunnelHeader_KIND_IMAGE, ImageId: imageID})
	if err != nil {
		return nil, fmt.Errorf("fetch image %s: %w", imageID, err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return &imageStream{c: c, stop: stop}, nil
}
