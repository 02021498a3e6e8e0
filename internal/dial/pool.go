package dial

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// Pool caches client connections by address. Connections present the
// node's current certificate on every handshake, so a renewed certificate
// needs no new pool.
type Pool struct {
	creds *ca.Creds
	src   net.IP // local address to dial from, nil for the kernel's choice
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPool returns a pool dialing with creds.
func NewPool(creds *ca.Creds) *Pool {
	return &Pool{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// NewPoolFrom returns a pool dialing with creds from the local address src
// (see SourceIP); nil lets the kernel choose.
func NewPoolFrom(creds *ca.Creds, src net.IP) *Pool {
	return &Pool{creds: creds, src: src, conns: map[string]*grpc.ClientConn{}}
}

// Conn returns the connection to addr, creating it lazily.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return nil, fmt.Errorf("connection pool closed")
	}
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	opts := append(DialOptions(p.src),
		grpc.WithTransportCredentials(credentials.NewTLS(p.creds.ClientTLSConfig("h2"))),
		grpc.WithConnectParams(ManagerConnectParams))
	c, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to manager %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// ManagerConnectParams keeps reconnecting to a manager at least every
// second. gRPC's default backoff grows to 120 s: after a spell of packet
// loss a node could wait seconds to reconnect to the new leader and be
// marked Down by it (the chaos bed's seed 802582551 at a 500 ms heartbeat
// period). There are few managers; a reconnect attempt a second is cheap.
var ManagerConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 3 * time.Second,
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Ping implements raft.Pinger.
func (p *Pool) Ping(ctx context.Context, addr string) error {
	c, err := p.Conn(addr)
	if err != nil {
		return err
	}
	_, err = swarmpb.NewRaftMembershipClient(c).Ping(ctx, &swarmpb.PingRequest{})
	return err
}

// Reset closes every connection, so that later calls handshake again:
// after a certificate renewal the peer must see the new identity, and an
// established connection keeps the one it was opened with.
func (p *Pool) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
}
