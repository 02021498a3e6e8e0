package netplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Tunnel protocol limits.
const (
	// TunnelALPN is the ALPN protocol of data-path connections, so that a
	// data port is never mistaken for a manager's port or the reverse.
	TunnelALPN = "raftswarm-data"
	// maxTunnelMsg caps a TunnelHeader or TunnelReply: the length prefix is
	// read first, so a peer cannot make a node allocate more.
	maxTunnelMsg = 4 << 10
	// tunnelHandshakeTimeout bounds the TLS handshake and the header/reply
	// exchange of one tunnel connection.
	tunnelHandshakeTimeout = 5 * time.Second
	// backendDialTimeout bounds a connect to a task container.
	backendDialTimeout = 2 * time.Second
	// maxPendingTunnels bounds the data-port connections still in their
	// handshake or header (unauthenticated so far); more are closed at once.
	maxPendingTunnels = 512
)

// Tunnel errors a client may see in its reply.
var (
	errNotAuthorized = errors.New("not authorized")
)

// writeFrame writes m as a 4-byte big-endian length and its encoding.
func writeFrame(w io.Writer, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxTunnelMsg {
		return fmt.Errorf("tunnel message of %d bytes exceeds %d", len(b), maxTunnelMsg)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// readFrame reads one length-prefixed message of at most maxTunnelMsg bytes.
func readFrame(r io.Reader, m proto.Message) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxTunnelMsg {
		return fmt.Errorf("tunnel message of %d bytes exceeds %d", size, maxTunnelMsg)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// ownIdentity reads the node identity of the certificate a TLS config
// presents (Certificates or GetCertificate/GetClientCertificate).
func ownIdentity(c *tls.Config) (ca.Identity, error) {
	var cert *tls.Certificate
	var err error
	switch {
	case len(c.Certificates) > 0:
		cert = &c.Certificates[0]
	case c.GetCertificate != nil:
		cert, err = c.GetCertificate(&tls.ClientHelloInfo{})
	case c.GetClientCertificate != nil:
		cert, err = c.GetClientCertificate(&tls.CertificateRequestInfo{})
	}
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return ca.Identity{}, fmt.Errorf("the node has no certificate: %v", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return ca.Identity{}, fmt.Errorf("parse the node certificate: %w", err)
		}
	}
	return ca.IdentityFromCert(leaf)
}

// peerIdentity is the identity in a verified peer certificate.
func peerIdentity(cs tls.ConnectionState) (ca.Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return ca.Identity{}, errors.New("the peer presented no certificate")
	}
	return ca.IdentityFromCert(cs.PeerCertificates[0])
}

// tunnelServerTLS is the data port's TLS configuration for one connection:
// the node's server configuration, tightened to TLS 1.3 with a client
// certificate required and verified against the cluster root, and one
// session ticket key for the Plane's life so that clients resume.
func (p *Plane) tunnelServerTLS() (*tls.Config, error) {
	if p.cfg.ServerTLS == nil {
		return nil, errors.New("no server TLS configuration")
	}
	base := p.cfg.ServerTLS()
	if base == nil {
		return nil, errors.New("no server TLS configuration")
	}
	if base.ClientCAs == nil {
		return nil, errors.New("the server TLS configuration has no cluster root to verify clients with")
	}
	own, err := ownIdentity(base)
	if err != nil {
		return nil, err
	}
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.NextProtos = []string{TunnelALPN}
	c.CurvePreferences = dataPathCurves
	c.SetSessionTicketKeys([][32]byte{p.ticketKey})
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := peerIdentity(cs)
		if err != nil {
			return err
		}
		if id.ClusterID != own.ClusterID {
			return fmt.Errorf("peer %s is a node of cluster %s, not %s", id.NodeID, id.ClusterID, own.ClusterID)
		}
		return nil
	}
	return c, nil
}

// dataPathCurves are the key exchanges of data-path connections (see
// tunnelClientTLS).
var dataPathCurves = []tls.CurveID{tls.X25519}

// tunnelClientTLS is the client configuration for a tunnel to node nodeID:
// TLS 1.3, the node's certificate, the server must hold the certificate of
// exactly nodeID in this cluster, sessions resumed.
func (p *Plane) tunnelClientTLS(nodeID string) (*tls.Config, error) {
	if p.cfg.ClientTLS == nil {
		return nil, errors.New("no client TLS configuration")
	}
	base := p.cfg.ClientTLS()
	if base == nil {
		return nil, errors.New("no client TLS configuration")
	}
	if base.RootCAs == nil {
		return nil, errors.New("the client TLS configuration has no cluster root to verify servers with")
	}
	own, err := ownIdentity(base)
	if err != nil {
		return nil, err
	}
	c := base.Clone()
	c.MinVersion = tls.VersionTLS13
	// Node certificates carry the node ID as a DNS name: verifying the
	// chain against it proves the server is that node.
	c.ServerName = nodeID
	c.InsecureSkipVerify = false
	c.NextProtos = []string{TunnelALPN}
	c.ClientSessionCache = p.sessions
	// Every proxied connection is a (resumed) handshake, and a resumed
	// TLS 1.3 handshake still makes a key exchange: X25519 alone costs
	// about 0.25 ms of CPU less per connection than Go's default hybrid
	// X25519MLKEM768 (BENCHMARKS.md, section 9). The data path gives up the
	// post-quantum key share for that; the control plane keeps it.
	c.CurvePreferences = dataPathCurves
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := peerIdentity(cs)
		if err != nil {
			return err
		}
		if id.NodeID != nodeID || id.ClusterID != own.ClusterID {
			return fmt.Errorf("the data port answered as node %s of cluster %s, expected node %s of cluster %s", id.NodeID, id.ClusterID, nodeID, own.ClusterID)
		}
		return nil
	}
	return c, nil
}

// dialTunnel opens a tunnel to node nodeID at addr and sends h. It returns
// the connection, ready for raw bytes, once the node accepted the request.
func (p *Plane) dialTunnel(ctx context.Context, nodeID, addr string, h *swarmpb.TunnelHeader) (*tls.Conn, *swarmpb.TunnelReply, error) {
	cfg, err := p.tunnelClientTLS(nodeID)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel to node %s: %w", nodeID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, tunnelHandshakeTimeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: backendDialTimeout}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
	}
	c := nc.(*tls.Conn)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	var reply swarmpb.TunnelReply
	err = writeFrame(c, h)
	if err == nil {
		err = readFrame(c, &reply)
	}
	if !stop() && err != nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("tunnel to node %s at %s: %w", nodeID, addr, err)
	}
	c.SetDeadline(time.Time{})
	if !reply.GetOk() {
		c.Close()
		return nil, &reply, fmt.Errorf("node %s refused the tunnel: %s", nodeID, reply.GetError())
	}
	return c, &reply, nil
}

// serveTunnel accepts data-path connections until ln is closed.
func (p *Plane) serveTunnel(ln net.Listener) {
	defer p.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("data port: accept failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		select {
		case p.pending <- struct{}{}:
		default:
			p.log.Debug("data port: too many connections in their handshake; closing one", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handleTunnel(c)
		}()
	}
}

// handleTunnel serves one data-path connection: handshake, header,
// authorization, then the raw bytes.
// The caller took a p.pending slot; it is given back once the request is
// read.
func (p *Plane) handleTunnel(raw net.Conn) {
	released := false
	release := func() {
		if !released {
			released = true
			<-p.pending
		}
	}
	defer release()
	if !p.conns.add(raw) {
		raw.Close()
		return
	}
	defer p.conns.remove(raw)
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(tunnelHandshakeTimeout))
	c := tls.Server(raw, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return p.tunnelServerTLS()
	}})
	if err := c.HandshakeContext(p.ctx); err != nil {
		p.log.Debug("data port: handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	peer, err := peerIdentity(c.ConnectionState())
	if err != nil {
		return
	}
	var h swarmpb.TunnelHeader
	if err := readFrame(c, &h); err != nil {
		p.log.Debug("data port: bad header", "peer", peer.NodeID, "err", err)
		return
	}
	release()
	refuse := func(err error) {
		p.log.Debug("data port: request refused", "peer", peer.NodeID, "kind", h.GetKind().String(), "err", err)
		writeFrame(c, &swarmpb.TunnelReply{Error: err.Error()})
	}
	switch h.GetKind() {
	case swarmpb.TunnelHeader_KIND_CONNECT:
		target, err := p.authorizeConnect(peer.NodeID, &h)
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
		defer bc.Close()
		if err := writeFrame(c, &swarmpb.TunnelReply{Ok: true}); err != nil {
			return
		}
		raw.SetDeadline(time.Time{})
		join(c, bc, nil)
	case swarmpb.TunnelHeader_KIND_IMAGE:
		if p.cfg.Images == nil {
			refuse(errors.New("this node serves no images"))
			return
		}
		if err := validImageID(h.GetImageId()); err != nil {
			refuse(err)
			return
		}
		rc, err := p.cfg.Images.SaveImage(p.ctx, h.GetImageId())
		if err != nil {
			refuse(fmt.Errorf("image %s: %w", h.GetImageId(), err))
			return
		}
		defer rc.Close()
		if err := writeFrame(c, &swarmpb.TunnelReply{Ok: true}); err != nil {
			return
		}
		raw.SetDeadline(time.Time{})
		if _, err := io.Copy(c, rc); err != nil {
			p.log.Warn("data port: sending an image failed; the fetching node retries", "image", h.GetImageId(), "peer", peer.NodeID, "err", err)
			return
		}
		c.CloseWrite()
		// Wait for the client to finish reading (it closes), bounded.
		raw.SetReadDeadline(time.Now().Add(tunnelHandshakeTimeout))
		io.Copy(io.Discard, c)
	default:
		refuse(fmt.Errorf("unknown request kind %d", h.GetKind()))
	}
}

// authorizeConnect checks a KIND_CONNECT request from node peer against the
// latest view: the peer has a running task on the network, the task is this
// node's and attached to that network here. It returns the container
// address to dial.
func (p *Plane) authorizeConnect(peer string, h *swarmpb.TunnelHeader) (netip.AddrPort, error) {
	if h.GetPort() == 0 || h.GetPort() > 65535 {
		return netip.AddrPort{}, fmt.Errorf("invalid port %d", h.GetPort())
	}
	tb := p.table()
	if _, _, _, ok := tb.Network(h.GetNetworkId()); !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: network %q has no tasks on this node", errNotAuthorized, h.GetNetworkId())
	}
	if !tb.PeerOn(h.GetNetworkId(), peer) {
		return netip.AddrPort{}, fmt.Errorf("%w: node %s has no task on network %q", errNotAuthorized, peer, h.GetNetworkId())
	}
	ip, ok := tb.LocalTask(h.GetNetworkId(), h.GetTaskId())
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: task %q is not on network %q on this node", errNotAuthorized, h.GetTaskId(), h.GetNetworkId())
	}
	return netip.AddrPortFrom(ip, uint16(h.GetPort())), nil
}

// validImageID accepts only "sha256:" and 64 lower-case hex digits.
func validImageID(id string) error {
	hex, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return fmt.Errorf("invalid image ID %q: want sha256: and 64 hex digits", id)
	}
	return nil
}

// imageStream is a fetched image: closing it (or the fetch's context
// ending) closes the tunnel.
type imageStream struct {
	c    *tls.Conn
	stop func() bool
}

func (s *imageStream) Read(b []byte) (int, error) { return s.c.Read(b) }
func (s *imageStream) Close() error {
	s.stop()
	return s.c.Close()
}
