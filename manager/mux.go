package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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
	limits *handshakeLimits // nil: handshakes unlimited
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
	tc, err := m.handshake(c)
	if err != nil {
		m.log.Debug("tls handshake failed", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
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

// handshakeTimeout bounds a TLS handshake, the wait for a slot included.
const handshakeTimeout = 10 * time.Second

// handshakeLimits bounds the TLS handshakes in progress at once on a
// manager's port, separately for Raft and for everything else (agents,
// clients, joins).
//
// Without it a storm of agent handshakes starves the Raft ones: when a
// leader dies, every node of the cluster (1,000 in the scale bench)
// reconnects to the surviving managers at once, and each server handshake
// (key exchange, signature, client chain verification) costs a few
// milliseconds of CPU. Go runs them all at once, so the one handshake of a
// Raft vote request gets a thousandth of the CPU and the election waits
// for the storm to pass (measured: several seconds, BENCHMARKS.md section
// 14). With the limit, agents queue before the costly part of their
// handshake (the ClientHello is read, nothing computed) and a Raft
// handshake only competes with a few of them. Raft handshakes have a
// limit of their own, so a client that merely offers the Raft protocol
// gains nothing over an agent beyond that small separate queue.
type handshakeLimits struct {
	raft  chan struct{}
	other chan struct{}
	// waiting counts the handshakes queued for a slot (for tests).
	waiting atomic.Int64
}

// newHandshakeLimits allows other non-Raft handshakes at once and raft
// Raft ones.
func newHandshakeLimits(other, raft int) *handshakeLimits {
	return &handshakeLimits{raft: make(chan struct{}, raft), other: make(chan struct{}, other)}
}

// defaultHandshakeLimits: a slot is held for the whole handshake, most of
// which is spent waiting for the client's second flight (its own key
// exchange, verification and signature: milliseconds on a loaded client
// host), so the limit is well above the cores. 8 slots on 2 cores held a
// storm of 1,000 agent handshakes to about 8 per client round trip and
// delayed the nodes' return to a new leader by seconds; 32 per core
// still keeps the runnable handshakes to a few dozen rather than
// thousands.
func defaultHandshakeLimits() *handshakeLimits {
	return newHandshakeLimits(max(64, 32*runtime.GOMAXPROCS(0)), 16)
}

// acquire takes a slot for a handshake offering protos, waiting until one
// frees or ctx ends; it returns the function that gives the slot back.
func (l *handshakeLimits) acquire(ctx context.Context, protos []string) (func(), error) {
	sem := l.other
	if slices.Contains(protos, ca.ALPNRaft) {
		sem = l.raft
	}
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	default:
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no TLS handshake slot free within %v (a reconnection storm?): %w", handshakeTimeout, ctx.Err())
	}
}

// handshake runs the server side of c's TLS handshake, within the mux's
// handshake limits (none when m.limits is nil).
func (m *mux) handshake(c net.Conn) (*tls.Conn, error) {
	cfg := m.tlsCfg
	release := func() {}
	if m.limits != nil {
		// The slot is taken once the ClientHello names the protocol, and
		// given back when the handshake ends, whatever its outcome.
		// GetConfigForClient runs on this goroutine, inside HandshakeContext.
		cfg = m.tlsCfg.Clone()
		inner := cfg.GetConfigForClient
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			r, err := m.limits.acquire(hello.Context(), hello.SupportedProtos)
			if err != nil {
				return nil, err
			}
			release = r
			if inner != nil {
				return inner(hello)
			}
			return nil, nil
		}
	}
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.HandshakeContext(ctx)
	release()
	if err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
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
