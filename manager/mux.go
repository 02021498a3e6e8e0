package manager

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
)

// mux terminates TLS on the manager's port and routes each connection by
// its ALPN protocol: Raft connections (manager certificates only) to the
// Raft stream layer, everything else to gRPC.
type mux struct {
	ln     net.Listener
	tlsCfg *tls.Config
	raft   *raft.StreamLayer
	grpc   *connListener
	log    *slog.Logger
}

func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			m.grpc.Close()
			return
		}
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
		m.raft.Handoff(tc)
		return
	}
	m.grpc.push(tc)
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
