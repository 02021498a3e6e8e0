package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The data paths a node's mesh serves published TCP ports with, as the
// node reports them (NodeDescription.mesh_path).
const (
	PathKernel    = "kernel"
	PathUserspace = "userspace"
)

// kernelTimeout bounds one Apply or Remove.
const kernelTimeout = 10 * time.Second

// Bounds on reading the kernel's connection counters (ConnCounter) for
// Stats: figures younger than kernelCountsMaxAge are reused, so however
// often the metrics are scraped the counters cost at most one nft run per
// kernelCountsMaxAge, and one read waits at most kernelCountsTimeout.
const (
	kernelCountsMaxAge  = time.Second
	kernelCountsTimeout = 2 * time.Second
)

// Forwarder programs the kernel to forward published TCP ports: the
// kernel half of the mesh (NFTForwarder). The mesh hands it the whole rule
// set derived from the endpoint table on every change, never a patch.
type Forwarder interface {
	// Apply replaces every rule of this node with rs, atomically: a new
	// connection sees either the old rules or the new ones. Established
	// connections keep the backend they have (conntrack), so a backend
	// that leaves rs drains.
	Apply(ctx context.Context, rs KernelRules) error
	// Remove deletes every rule of this node. Nothing to remove is not an
	// error.
	Remove(ctx context.Context) error
}

// ConnCounter is the optional ability of a Forwarder to count the TCP
// connections the kernel forwards (NFTForwarder has it). Without it the
// mesh reports no kernel-path figures.
type ConnCounter interface {
	// Connections returns, per published port, the connections the
	// kernel has forwarded to a task since the rules were first applied.
	// The counts survive Apply (a port unpublished and published again
	// goes on counting) and end with Remove. Connections the kernel lets
	// through to the userspace listener are not counted here.
	Connections(ctx context.Context) (map[uint16]uint64, error)
}

// KernelRules is what the kernel forwards: new TCP connections to
// IngressIP:Port (every local address when IngressIP is invalid) go to one
// of the port's slots, chosen at random per connection.
type KernelRules struct {
	IngressIP netip.Addr
	Ports     []KernelPort
}

// Equal reports whether rs and o program the kernel the same way.
func (rs KernelRules) Equal(o KernelRules) bool {
	return rs.IngressIP == o.IngressIP && slices.EqualFunc(rs.Ports, o.Ports, func(a, b KernelPort) bool {
		return a.Port == b.Port && slices.Equal(a.Slots, b.Slots)
	})
}

// KernelPort is one published TCP port. A port absent from the rules, or
// with no slots, is left to the userspace proxy.
type KernelPort struct {
	Port  uint16
	Slots []KernelSlot
}

// KernelSlot is one share of a port's new connections.
type KernelSlot struct {
	// Addr is where the kernel sends the connection (DNAT): the address
	// Docker published the task on, on this host. Invalid: the kernel lets
	// the connection through to the userspace listener (a task on another
	// host).
	Addr netip.AddrPort
	// Direct, if valid, is the task's container address:target port, used
	// instead of Addr for clients not on loopback, so the task sees the
	// client's real address. Loopback clients keep Addr: reaching a
	// container from a 127.x source would need route_localnet on the
	// bridge, which lets containers reach the host's loopback services
	// (CVE-2020-8558).
	Direct netip.AddrPort
}

// LocalKey names one published port of a task on this node.
type LocalKey struct {
	TaskID   string
	HostPort uint32
}

// UseKernel makes the mesh forward its published TCP ports in the kernel
// through f from the next Update on. It first removes whatever rules f's
// owner left behind (a daemon killed without its exit cleanup), and
// returns that error, leaving the mesh on the userspace path, if it fails.
// Call it once, before the first Update.
func (m *Mesh) UseKernel(f Forwarder) error {
	ctx, cancel := context.WithTimeout(m.ctx, kernelTimeout)
	defer cancel()
	if err := f.Remove(ctx); err != nil {
		m.mu.Lock()
		m.setKernelErrLocked(fmt.Errorf("remove stale kernel rules: %w", err))
		m.mu.Unlock()
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fwd = f
	if cc, ok := f.(ConnCounter); ok {
		m.kcounts.Store(&kernelCounts{cc: cc})
	}
	m.setKernelErrLocked(errors.New("no endpoint table yet"))
	return nil
}

// kernelCounts reads the kernel path's connection counters for Stats,
// bounded in cost (kernelCountsMaxAge, kernelCountsTimeout) and never
// under Mesh.mu: one read at a time, the others take the last figures.
type kernelCounts struct {
	cc      ConnCounter
	applied atomic.Bool // rules were applied once: the counters exist
	readMu  sync.Mutex  // held by the read in progress
	last    atomic.Pointer[kernelCountsRead]
}

type kernelCountsRead struct {
	at    time.Time
	ports map[uint16]uint64 // nil: none read yet
}

// reset forgets the counts: the forwarder's table is gone with them. It
// does not wait for a read in progress (the caller holds Mesh.mu); Stats
// reports no kernel figures until rules are applied again, by when that
// read's are at most kernelCountsMaxAge old.
func (k *kernelCounts) reset() {
	k.applied.Store(false)
	k.last.Store(nil)
}

// read returns the per-port counts, reading them again if the last read
// is older than kernelCountsMaxAge and no other read is in progress.
func (k *kernelCounts) read(ctx context.Context, log *slog.Logger) map[uint16]uint64 {
	last := k.last.Load()
	if last != nil && time.Since(last.at) < kernelCountsMaxAge {
		return last.ports
	}
	if !k.readMu.TryLock() {
		if last == nil {
			return nil
		}
		return last.ports
	}
	defer k.readMu.Unlock()
	if l := k.last.Load(); l != last && l != nil { // another read finished meanwhile
		return l.ports
	}
	ctx, cancel := context.WithTimeout(ctx, kernelCountsTimeout)
	ports, err := k.cc.Connections(ctx)
	cancel()
	if err != nil {
		// Keep the last figures (counters only grow); try again after
		// kernelCountsMaxAge rather than on every call.
		log.Debug("cannot read the kernel path's connection counters; reporting the last ones", "err", err)
		if last != nil {
			ports = last.ports
		}
	}
	k.last.Store(&kernelCountsRead{at: time.Now(), ports: ports})
	return ports
}

// SetKernelUnavailable records why the mesh serves every port in user
// space (shown by Path), for a node whose Forwarder could not be made.
func (m *Mesh) SetKernelUnavailable(reason error) {
	m.mu.Lock()
	m.setKernelErrLocked(reason)
	m.mu.Unlock()
}

// SetLocal tells the mesh the container address (IP:target port) of each
// published port of the tasks on this node, so the kernel sends clients
// straight to the container and the task sees their address. It re-applies
// the kernel rules if they change.
func (m *Mesh) SetLocal(local map[LocalKey]netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mapsEqual(m.local, local) {
		return
	}
	m.local = local
	if m.fwd != nil && !m.closed && m.tableSeen {
		m.applyKernelLocked()
	}
}

// Path reports the path published TCP ports are served by: PathKernel, or
// PathUserspace and why.
//
// It never waits for the kernel: the agent reads it for every heartbeat,
// while Update and SetLocal hold m.mu across nft runs, which take hundreds
// of milliseconds on a loaded host. Heartbeats that waited for them came
// late enough for the leader to mark the node Down and replace its tasks
// (the task kills the discovery end-to-end test saw with --mesh-path auto).
func (m *Mesh) Path() (path, reason string) {
	if p := m.path.Load(); p != nil {
		return p.path, p.reason
	}
	return PathUserspace, "kernel forwarding not enabled"
}

// KernelRetry reports whether the kernel path is enabled and its last
// transaction failed: the userspace proxy serves every port meanwhile,
// and calling Update again, even with the same table, tries the kernel
// again. It never waits for the kernel.
func (m *Mesh) KernelRetry() bool { return m.kernelRetry.Load() }

// pathState is one answer of Path.
type pathState struct{ path, reason string }

// setKernelErrLocked records why the kernel does not forward (nil: it
// does) and publishes the path for Path. m.mu is held.
func (m *Mesh) setKernelErrLocked(err error) {
	m.kernelErr = err
	p := &pathState{path: PathUserspace, reason: "kernel forwarding not enabled"}
	switch {
	case err != nil:
		p.reason = err.Error()
	case m.fwd != nil:
		p = &pathState{path: PathKernel}
	}
	m.path.Store(p)
}

// applyKernelLocked derives the kernel rules from the bound ports and
// applies them. m.mu is held. On failure the userspace listeners (always
// bound) serve every connection with every backend.
//
// Rules equal to the last ones applied are not applied again: the managers
// send the whole endpoint table on every change of any service, and most
// changes (a task of another host, a UDP port, a task starting that is not
// yet in the table) leave this node's kernel rules as they are, while each
// nft run costs a fork and a table rewrite.
func (m *Mesh) applyKernelLocked() {
	rs, user, err := m.kernelRulesLocked()
	applyFailed := false
	if err == nil && (m.kernelErr != nil || m.applied == nil || !m.applied.Equal(rs)) {
		ctx, cancel := context.WithTimeout(m.ctx, kernelTimeout)
		err = m.fwd.Apply(ctx, rs)
		cancel()
		m.applied = &rs
		applyFailed = err != nil
	}
	if err != nil {
		m.applied = nil // unknown: apply again next time
		if m.kernelErr == nil {
			m.log.Warn("kernel forwarding failed; the userspace proxy serves every published port", "err", err)
		}
		m.kernelRetry.Store(applyFailed)
		if applyFailed {
			// A failed transaction leaves the rules applied before it
			// in the kernel, which would go on taking new connections
			// (to tasks that may have left) while the node reports the
			// userspace path: remove them, their counters with them.
			ctx, cancel := context.WithTimeout(m.ctx, kernelTimeout)
			if rerr := m.fwd.Remove(ctx); rerr != nil {
				m.log.Warn("cannot remove the kernel rules after a failed update; they may still forward new connections", "err", rerr)
			}
			cancel()
			if k := m.kcounts.Load(); k != nil {
				k.reset()
			}
		}
		m.setKernelErrLocked(err)
		for _, p := range m.ports {
			if tp, ok := p.(*tcpPort); ok {
				tp.user.Store(nil)
			}
		}
		return
	}
	if m.kernelErr != nil {
		m.log.Info("published TCP ports forwarded in the kernel", "ports", len(rs.Ports))
	}
	if k := m.kcounts.Load(); k != nil {
		k.applied.Store(true)
	}
	m.kernelRetry.Store(false)
	m.setKernelErrLocked(nil)
	for k, p := range m.ports {
		if tp, ok := p.(*tcpPort); ok {
			tp.user.Store(user[k])
		}
	}
}

// kernelRulesLocked computes the kernel rules of the bound TCP ports, and
// for each port the kernel handles partly, the backends its userspace
// listener should use for the connections the kernel lets through (the
// ones on other hosts).
func (m *Mesh) kernelRulesLocked() (KernelRules, map[portKey]*backendSet, error) {
	var rs KernelRules
	if m.ingressIP != "" {
		ip, err := netip.ParseAddr(m.ingressIP)
		if err != nil {
			return rs, nil, fmt.Errorf("ingress address %q: %w", m.ingressIP, err)
		}
		ip = ip.Unmap()
		switch {
		case ip.IsUnspecified() && ip.Is4():
		case !ip.Is4():
			return rs, nil, fmt.Errorf("ingress address %s is not IPv4 (the kernel path is IPv4 only)", ip)
		default:
			rs.IngressIP = ip
		}
	}
	hostAddrs := m.hostAddrs()
	user := make(map[portKey]*backendSet)
	keys := make([]portKey, 0, len(m.ports))
	for k := range m.ports {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].port < keys[j].port })
	for _, k := range keys {
		tp, ok := m.ports[k].(*tcpPort)
		if !ok || tp.ppv2.Load() {
			continue // UDP and PROXY-protocol ports stay in user space
		}
		bs := tp.bs.Load()
		kp := KernelPort{Port: uint16(k.port)}
		rest := &backendSet{byAddr: make(map[string]*backend)}
		inKernel := 0
		// Clients not on loopback fall through from a slot published on
		// a loopback address without a known container: the listener
		// then needs every backend.
		loopbackOnly := false
		for _, b := range bs.list {
			ap, err := netip.ParseAddrPort(b.addr)
			if err != nil || !ap.Addr().Unmap().Is4() || !hostAddrs(ap.Addr().Unmap()) {
				// Another host: leave this share to the userspace proxy.
				kp.Slots = append(kp.Slots, KernelSlot{})
				rest.list = append(rest.list, b)
				rest.byAddr[b.addr] = b
				continue
			}
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			s := KernelSlot{Addr: ap}
			if d, ok := m.local[LocalKey{TaskID: b.taskID, HostPort: uint32(ap.Port())}]; ok && d.Addr().Unmap().Is4() && d.Port() != 0 {
				s.Direct = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
			}
			if !s.Direct.IsValid() && ap.Addr().IsLoopback() {
				loopbackOnly = true
			}
			kp.Slots = append(kp.Slots, s)
			inKernel++
		}
		if inKernel == 0 {
			continue
		}
		if len(rest.list) > 0 && !loopbackOnly {
			user[k] = rest
		}
		rs.Ports = append(rs.Ports, kp)
	}
	return rs, user, nil
}

// hostAddrs returns a predicate for the addresses of this host: loopback
// and the interfaces' addresses. A task published on one of them is
// reached by delivering locally, without forwarding.
func (m *Mesh) hostAddrs() func(netip.Addr) bool {
	if m.isHostAddr != nil {
		return m.isHostAddr
	}
	set := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					set[ip.Unmap()] = true
				}
			}
		}
	}
	return func(a netip.Addr) bool { return a.IsLoopback() || set[a] }
}

func mapsEqual(a, b map[LocalKey]netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
