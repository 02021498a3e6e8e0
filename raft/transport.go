package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// StreamLayer carries Raft over the manager's single TLS port. The port's
// listener terminates TLS, sees the ALPN protocol the client asked for, and
// hands Raft connections (already authenticated as coming from a manager) to
// Handoff; gRPC connections go elsewhere. Outgoing connections dial TLS with
// the node's certificate and the Raft ALPN protocol.
type StreamLayer struct {
	addr   net.Addr
	tlsCfg func() *tls.Config

	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

// NewStreamLayer returns a stream layer advertising addr. tlsCfg is called
// for every dial so that a renewed certificate is used at once.
func NewStreamLayer(addr net.Addr, tlsCfg func() *tls.Config) *StreamLayer {
	return &StreamLayer{addr: addr, tlsCfg: tlsCfg, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Handoff gives an accepted Raft connection to the transport. It closes the
// connection if the layer is closed or nobody accepts within a few seconds.
func (s *StreamLayer) Handoff(c net.Conn) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case s.conns <- c:
	case <-s.closed:
		c.Close()
	case <-t.C:
		c.Close()
	}
}

// Accept implements net.Listener for raft.NetworkTransport.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; it does not close the shared port.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Addr is the advertised Raft address.
func (s *StreamLayer) Addr() net.Addr { return s.addr }

// Dial opens a TLS connection to another manager's port asking for Raft.
func (s *StreamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-s.closed:
		return nil, errors.New("raft stream layer closed")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}, Config: s.tlsCfg()}
	return d.DialContext(ctx, "tcp", string(address))
}
