package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
)

// mux terminates TLS on the manager's port and routes each connection by
// its ALPN protocol: Raft connections to the Raft stream layer, everything
// else to gRPC. A Raft connection needs a manager certificate whose node
// the authorizer admits (still meant to be a manager, and a member of the
// Raft configuration), and is closed as soon as that stops being true.
type mux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	raft   *raft.StreamLayer
	grpc   *connListener
	authz  *api.Authorizer
	log    *slog.Logger
}

// serve accepts connections until the listener fails for good. A
// temporary error (out of file descriptors, a connection aborted before
// accept) is retried after a growing pause, as net/http does; any other
// error ends serving, and unless the listener was closed on purpose it is
// logged, since every gRPC and Raft connection to this manager stops with it.
func (m *mux) serve() {
	b := retry.NewBackoff(5*time.Millisecond, time.Second)
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				d := b.Next()
				m.log.Warn("accepting a connection failed; retrying", "addr", m.ln.Addr(), "in", d, "err", err)
				retry.Sleep(context.Background(), d)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				m.log.Debug("manager listener closed", "addr", m.ln.Addr())
			} else {
				m.log.Error("manager listener failed: no new gRPC or Raft connections until restart", "addr", m.ln.Addr(), "err", err)
			}
			m.grpc.Close()
			return
		}
		b.Reset()
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	tc := tls.Server(c, m.tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		m.log.Debug("tls handshake failed", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == ca.ALPNRaft {
		if len(st.VerifiedChains) == 0 {
			tc.Close()
			return
		}
		id, err := ca.IdentityFromCert(st.VerifiedChains[0][0])
		if err != nil || id.Role != swarmpb.NodeRole_NODE_ROLE_MANAGER {
			m.log.Warn("refused raft connection without a manager certificate", "remote", c.RemoteAddr())
			tc.Close()
			return
		}
		hc := &heldConn{Conn: tc}
		release, err := m.authz.Admit(id, api.ScopeRaft, func(why error) {
			m.log.Warn("closing raft connection: access revoked", "node", id.NodeID, "remote", c.RemoteAddr(), "reason", why)
			tc.Close()
		})
		if err != nil {
			m.log.Warn("refused raft connection", "node", id.NodeID, "remote", c.RemoteAddr(), "reason", err)
			tc.Close()
			return
		}
		hc.release = release
		m.raft.Handoff(hc)
		return
	}
	m.grpc.push(tc)
}

// heldConn releases its authorizer hold when the Raft transport closes it.
type heldConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *heldConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// connListener is a net.Listener fed by the mux, for grpc.Server.Serve.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
