package netplane

// Multiplexed tunnels. A proxied connection to a task on another node is a
// stream of a long-lived mutual-TLS connection between the two daemons
// (hashicorp/yamux), not a TLS connection of its own: a new connection
// costs a stream header instead of a TLS handshake (which, resumed, still
// made a key exchange and was half of both daemons' CPU per connection,
// BENCHMARKS.md section 9). Each stream starts with the same request as a
// single tunnel (TunnelHeader, TunnelReply) and is authorized on its own.
// Image transfers keep a connection of their own (TunnelALPN): a long bulk
// copy must not share a connection's window with interactive traffic.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// TunnelMuxALPN is the ALPN protocol of multiplexed data-path connections.
const TunnelMuxALPN = "raftswarm-data-mux"

// muxPerPeer is how many multiplexed connections a node keeps to each
// other node: streams are spread over them, so one TCP connection's
// window and one TLS record stream do not cap a busy pair of nodes.
const muxPerPeer = 2

func muxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 15 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// muxPool holds this node's multiplexed connections to other nodes.
type muxPool struct {
	mu    sync.Mutex
	peers map[string]*muxPeer // node ID + "@" + data address
}

type muxPeer struct {
	slots [muxPerPeer]*yamux.Session
	next  atomic.Uint32
}

// session returns an open session to the node, dialing one for the next
// slot when it has none or its session died.
func (p *Plane) muxSession(ctx context.Context, nodeID, addr string) (*yamux.Session, int, error) {
	key := nodeID + "@" + addr
	p.mux.mu.Lock()
	if p.mux.peers == nil {
		p.mux.peers = map[string]*muxPeer{}
	}
	peer := p.mux.peers[key]
	if peer == nil {
		peer = &muxPeer{}
		p.mux.peers[key] = peer
	}
	slot := int(peer.next.Add(1)) % muxPerPeer
	if s := peer.slots[slot]; s != nil && !s.IsClosed() {
		p.mux.mu.Unlock()
		return s, slot, nil
	}
	p.mux.mu.Unlock()

	s, err := p.dialMux(ctx, nodeID, addr)
	if err != nil {
		return nil, slot, err
	}
	p.mux.mu.Lock()
	defer p.mux.mu.Unlock()
	if cur := peer.slots[slot]; cur != nil && !cur.IsClosed() {
		// Another connection filled the slot meanwhile: use it.
		s.Close()
		return cur, slot, nil
	}
	peer.slots[slot] = s
	return s, slot, nil
}

// dropMux forgets a session that failed, so the next stream dials anew.
func (p *Plane) dropMux(nodeID, addr string, slot int, s *yamux.Session) {
	p.mux.mu.Lock()
	defer p.mux.mu.Unlock()
	if peer := p.mux.peers[nodeID+"@"+addr]; peer != nil && peer.slots[slot] == s {
		peer.slots[slot] = nil
	}
	s.Close()
}

// closeMux closes every multiplexed connection (the Plane stops).
func (p *Plane) closeMux() {
	p.mux.mu.Lock()
	defer p.mux.mu.Unlock()
	for _, peer := range p.mux.peers {
		for i, s := range peer.slots {
			if s != nil {
				s.Close()
				peer.slots[i] = nil
			}
		}
	}
}

// dialMux opens a multiplexed connection to node nodeID at addr.
func (p *Plane) dialMux(ctx context.Context, nodeID, addr string) (*yamux.Session, error) {
	cfg, err := p.tunnelClientTLS(nodeID)
	if err != nil {
		return nil, fmt.Errorf("tunnel to node %s: %w", nodeID, err)
	}
	cfg.NextProtos = []string{TunnelMuxALPN}
	ctx, cancel := context.WithTimeout(ctx, tunnelHandshakeTimeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: backendDialTimeout}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
	}
	if got := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != TunnelMuxALPN {
		nc.Close()
		return nil, fmt.Errorf("tunnel to node %s at %s: it does not multiplex (ALPN %q)", nodeID, addr, got)
	}
	s, err := yamux.Client(nc, muxConfig())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
	}
	return s, nil
}

// dialStream opens a stream to node nodeID at addr for a KIND_CONNECT
// request and returns it once the node accepted it. A dead session is
// replaced once.
func (p *Plane) dialStream(ctx context.Context, nodeID, addr string, h *swarmpb.TunnelHeader) (net.Conn, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		s, slot, err := p.muxSession(ctx, nodeID, addr)
		if err != nil {
			return nil, err
		}
		st, err := s.OpenStream()
		if err != nil {
			p.dropMux(nodeID, addr, slot, s)
			lastErr = fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
			continue
		}
		st.SetDeadline(time.Now().Add(tunnelHandshakeTimeout))
		var reply swarmpb.TunnelReply
		err = writeFrame(st, h)
		if err == nil {
			err = readFrame(st, &reply)
		}
		if err != nil {
			st.Close()
			if s.IsClosed() {
				p.dropMux(nodeID, addr, slot, s)
				lastErr = fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
				continue
			}
			return nil, fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
		}
		st.SetDeadline(time.Time{})
		if !reply.GetOk() {
			st.Close()
			return nil, fmt.Errorf("node %s refused the tunnel: %s", nodeID, reply.GetError())
		}
		return st, nil
	}
	return nil, lastErr
}

// serveMux serves the streams of one multiplexed connection from node
// peer until it closes.
func (p *Plane) serveMux(c *tls.Conn, peer string) {
	s, err := yamux.Server(c, muxConfig())
	if err != nil {
		return
	}
	defer s.Close()
	stop := context.AfterFunc(p.ctx, func() { s.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := s.AcceptStream()
		if err != nil {
			if !errors.Is(err, io.EOF) && !s.IsClosed() {
				p.log.Debug("data port: multiplexed connection ended", "peer", peer, "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.handleStream(st, peer)
		}()
	}
}

// handleStream serves one KIND_CONNECT stream: request, authorization,
// then the raw bytes to the task.
func (p *Plane) handleStream(st *yamux.Stream, peer string) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(tunnelHandshakeTimeout))
	var h swarmpb.TunnelHeader
	if err := readFrame(st, &h); err != nil {
		p.log.Debug("data port: bad stream header", "peer", peer, "err", err)
		return
	}
	refuse := func(err error) {
		p.log.Debug("data port: request refused", "peer", peer, "kind", h.GetKind().String(), "err", err)
		writeFrame(st, &swarmpb.TunnelReply{Error: err.Error()})
	}
	if h.GetKind() != swarmpb.TunnelHeader_KIND_CONNECT {
		refuse(fmt.Errorf("request kind %s is not served on a multiplexed connection", h.GetKind()))
		return
	}
	target, err := p.authorizeConnect(peer, &h)
	if err != nil {
		refuse(err)
		return
	}
	d := net.Dialer{Timeout: backendDialTimeout}
	bc, err := d.DialContext(p.ctx, "tcp", target.String())
	if err != nil {
		refuse(fmt.Errorf("task %s port %d: %w", h.GetTaskId(), h.GetPort(), err))
		return
	}
	if !p.conns.add(bc) {
		bc.Close()
		return
	}
	defer p.conns.remove(bc)
	if err := writeFrame(st, &swarmpb.TunnelReply{Ok: true}); err != nil {
		bc.Close()
		return
	}
	st.SetDeadline(time.Time{})
	join(st, bc, nil)
}
