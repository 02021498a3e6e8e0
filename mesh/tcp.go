package mesh

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/internal/retry"
)

type tcpPort struct {
	m   *Mesh
	key portKey
	c   *portCounters
	ln  *net.TCPListener
	bs  atomic.Pointer[backendSet]
	rr  atomic.Uint64
	// user, when set, is the subset of bs the kernel leaves to this
	// listener (tasks on other hosts); nil: all of bs.
	user atomic.Pointer[backendSet]
	// ppv2: send a PROXY protocol v2 header to the backend first.
	ppv2 atomic.Bool
}

func (p *tcpPort) setBackends(bs *backendSet) { p.bs.Store(bs) }
func (p *tcpPort) backends() *backendSet      { return p.bs.Load() }
func (p *tcpPort) close()                     { p.ln.Close() }

func (p *tcpPort) serve() {
	defer p.m.wg.Done()
	// Transient accept errors (e.g. EMFILE) back off like net/http does,
	// but stop at once if the mesh closes.
	b := retry.NewBackoff(5*time.Millisecond, time.Second)
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay := b.Next()
			p.m.log.Warn("accept failed", "port", p.key.String(), "err", err, "retry_in", delay)
			if !retry.Sleep(p.m.ctx, delay) {
				return
			}
			continue
		}
		b.Reset()
		p.m.wg.Add(1)
		go p.handle(c)
	}
}

// handle proxies one client connection.
func (p *tcpPort) handle(client *net.TCPConn) {
	m := p.m
	defer m.wg.Done()
	if !m.track(client) {
		client.Close()
		return
	}
	defer m.untrack(client)
	defer client.Close()

	bs := p.user.Load()
	if bs == nil {
		bs = p.bs.Load()
	}
	var server *net.TCPConn
	b := pick(bs, &p.rr, func(b *backend) error {
		d := net.Dialer{Timeout: time.Duration(m.dialTimeout.Load())}
		c, err := d.DialContext(m.ctx, "tcp", b.addr)
		if err != nil {
			m.log.Debug("backend dial failed", "port", p.key.String(), "backend", b.addr, "task", b.taskID, "err", err)
			return err
		}
		server = c.(*net.TCPConn)
		if p.ppv2.Load() {
			if err := writeProxyV2(server, client, time.Duration(m.dialTimeout.Load())); err != nil {
				server.Close()
				server = nil
				m.log.Debug("PROXY header not sent", "port", p.key.String(), "backend", b.addr, "err", err)
				return err
			}
		}
		return nil
	})
	if b == nil {
		// No backend listed or none reachable: close the client at once.
		m.refused.Add(1)
		p.c.refused.Add(1)
		return
	}
	if !m.track(server) {
		server.Close()
		return
	}
	defer m.untrack(server)
	defer server.Close()

	client.SetNoDelay(true)
	server.SetNoDelay(true)
	m.connStart(b.addr)
	p.c.conns.Add(1)
	defer m.connEnd(b.addr)

	done := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(done)
		p.c.bytesIn.Add(uint64(pipe(server, client)))
	}()
	p.c.bytesOut.Add(uint64(pipe(client, server)))
	<-done
}

// pipe copies src to dst until src ends. On a clean EOF it half-closes dst so
// the peer sees the end of the stream while the other direction goes on; on
// an error (reset, Close by the mesh) it closes both sides, which ends the
// other direction too. Between two *net.TCPConn io.Copy uses splice(2).
// It returns the bytes copied.
func pipe(dst, src *net.TCPConn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return n
	}
	dst.CloseWrite()
	return n
}
