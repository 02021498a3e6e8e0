package mesh

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpPort serves one published UDP port. Each client address gets a flow: a
// connected UDP socket to one backend (chosen round robin when the flow is
// created), whose replies are sent back to the client from the published
// port's socket. Flows end after the idle timeout, when their backend leaves
// the table (UDP has no connection to drain, and a flow kept alive by a busy
// client would otherwise point at a stopped task forever), when the backend
// answers with ICMP port unreachable, or when the port closes.
type udpPort struct {
	m   *Mesh
	key portKey
	c   *portCounters
	pc  *net.UDPConn
	bs  atomic.Pointer[backendSet]
	rr  atomic.Uint64

	mu     sync.Mutex
	flows  map[netip.AddrPort]*udpFlow
	closed bool
}

type udpFlow struct {
	client netip.AddrPort
	b      *backend
	conn   *net.UDPConn
	last   atomic.Int64 // unix nanos of the last datagram either way
	once   sync.Once
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (p *udpPort) backends() *backendSet { return p.bs.Load() }

func (p *udpPort) setBackends(bs *backendSet) {
	p.bs.Store(bs)
	var gone []*udpFlow
	p.mu.Lock()
	for _, f := range p.flows {
		if bs.byAddr[f.b.addr] != f.b {
			gone = append(gone, f)
		}
	}
	p.mu.Unlock()
	for _, f := range gone {
		p.removeFlow(f)
	}
}

func (p *udpPort) close() {
	p.mu.Lock()
	p.closed = true
	flows := p.flows
	p.flows = make(map[netip.AddrPort]*udpFlow)
	p.mu.Unlock()
	p.pc.Close()
	for _, f := range flows {
		p.endFlow(f)
	}
}

func (p *udpPort) serve() {
	defer p.m.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, client, err := p.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.m.ctx.Err() != nil {
				return
			}
			continue
		}
		p.forward(client, buf[:n])
	}
}

// forward sends one client datagram to the client's flow, creating it if
// needed. A write refused by the backend (ICMP port unreachable seen on the
// connected socket) ends the flow and the datagram is retried once on a new
// flow to another backend.
func (p *udpPort) forward(client netip.AddrPort, pkt []byte) {
	for attempt := 0; attempt < 2; attempt++ {
		f := p.flow(client)
		if f == nil {
			break
		}
		f.touch()
		if _, err := f.conn.Write(pkt); err == nil {
			p.c.bytesIn.Add(uint64(len(pkt)))
			return
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			f.b.downUntil.Store(time.Now().Add(downFor).UnixNano())
		}
		p.removeFlow(f)
	}
	p.m.dropped.Add(1)
	p.c.dropped.Add(1)
}

// flow returns the client's flow, creating one to the next backend if there
// is none. It returns nil if no backend is usable or the port is closed.
func (p *udpPort) flow(client netip.AddrPort) *udpFlow {
	m := p.m
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if f := p.flows[client]; f != nil {
		return f
	}
	var conn *net.UDPConn
	b := pick(p.bs.Load(), &p.rr, func(b *backend) error {
		d := net.Dialer{Timeout: time.Duration(m.dialTimeout.Load())}
		c, err := d.DialContext(m.ctx, "udp", b.addr)
		if err != nil {
			m.log.Debug("backend dial failed", "port", p.key.String(), "backend", b.addr, "task", b.taskID, "err", err)
			return err
		}
		conn = c.(*net.UDPConn)
		return nil
	})
	if b == nil {
		return nil
	}
	f := &udpFlow{client: client, b: b, conn: conn}
	f.touch()
	p.flows[client] = f
	m.connStart(b.addr)
	p.c.conns.Add(1)
	m.wg.Add(1)
	go p.reply(f)
	return f
}

// reply copies the backend's datagrams back to the client until the flow is
// idle for the idle timeout or its socket is closed.
func (p *udpPort) reply(f *udpFlow) {
	defer p.m.wg.Done()
	defer p.removeFlow(f)
	buf := make([]byte, 64<<10)
	for {
		idle := time.Duration(p.m.udpIdle.Load())
		f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(idle))
		n, err := f.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < idle {
				continue // traffic since the deadline was set
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				f.b.downUntil.Store(time.Now().Add(downFor).UnixNano())
			}
			return
		}
		f.touch()
		if _, err := p.pc.WriteToUDPAddrPort(buf[:n], f.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
		} else {
			p.c.bytesOut.Add(uint64(n))
		}
	}
}

func (p *udpPort) removeFlow(f *udpFlow) {
	p.mu.Lock()
	if p.flows[f.client] == f {
		delete(p.flows, f.client)
	}
	p.mu.Unlock()
	p.endFlow(f)
}

func (p *udpPort) endFlow(f *udpFlow) {
	f.once.Do(func() {
		f.conn.Close()
		p.m.connEnd(f.b.addr)
	})
}
