package ca

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// wrappedConn hides the *tls.Conn type so AlreadyTLS must use the
// ConnectionState interface, as it would behind a connection multiplexer.
type wrappedConn struct {
	net.Conn
	tc *tls.Conn
}

func (w wrappedConn) ConnectionState() tls.ConnectionState { return w.tc.ConnectionState() }

// tlsMuxListener mimics the node's multiplexed listener: it terminates TLS,
// and only hands connections that negotiated "h2" to gRPC.
type tlsMuxListener struct {
	net.Listener // a tls.NewListener
	wrap         bool
}

func (l tlsMuxListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
			tc.Close()
			continue
		}
		tc.SetDeadline(time.Time{})
		if l.wrap {
			return wrappedConn{Conn: tc, tc: tc}, nil
		}
		return tc, nil
	}
}

func TestGRPCAlreadyTLS(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := "tls.Conn"
		if wrap {
			name = "wrapped"
		}
		t.Run(name, func(t *testing.T) { testGRPCAlreadyTLS(t, wrap) })
	}
}

func testGRPCAlreadyTLS(t *testing.T, wrap bool) {
	r := newRoot(t)
	server := newCreds(t, r, "m1", mgr)

	var mu sync.Mutex
	var seen []Identity
	// Health Check requires a manager; every call records the caller.
	interceptor := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if id, err := PeerIdentity(ctx); err == nil {
			mu.Lock()
			seen = append(seen, id)
			mu.Unlock()
		}
		if _, err := RequireRole(ctx, swarmpb.NodeRole_NODE_ROLE_MANAGER); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := tlsMuxListener{Listener: tls.NewListener(raw, server.ServerTLSConfig()), wrap: wrap}
	gs := grpc.NewServer(grpc.Creds(AlreadyTLS()), grpc.UnaryInterceptor(interceptor))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(lis) }()
	defer func() { gs.Stop(); <-done }()

	call := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(raw.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	// Manager caller: allowed.
	if err := call(newCreds(t, r, "m2", mgr).ClientTLSConfig("h2")); err != nil {
		t.Fatalf("manager call: %v", err)
	}
	// Worker caller: PermissionDenied with the explanatory message.
	err = call(newCreds(t, r, "w1", worker).ClientTLSConfig("h2"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("worker call: %v", err)
	}
	want := "permission denied: this call needs a manager certificate; the caller presented a worker certificate"
	if msg := status.Convert(err).Message(); msg != want {
		t.Fatalf("worker message %q", msg)
	}
	// No certificate (joining node): Unauthenticated.
	if err := call(BootstrapTLSConfig(r.Pool())); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous call: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	wantSeen := []Identity{
		{NodeID: "m2", ClusterID: "cluster-1", Role: mgr},
		{NodeID: "w1", ClusterID: "cluster-1", Role: worker},
	}
	if len(seen) != len(wantSeen) || seen[0] != wantSeen[0] || seen[1] != wantSeen[1] {
		t.Fatalf("identities seen %+v", seen)
	}
}

func TestRequireRoleErrors(t *testing.T) {
	// No peer in the context at all.
	_, err := RequireRole(context.Background(), mgr)
	if !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("got %v", err)
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("code %v", status.Code(err))
	}
}

func TestAlreadyTLSRejectsPlainConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := AlreadyTLS().ServerHandshake(a); err == nil {
		t.Fatal("plain conn accepted")
	}
}
