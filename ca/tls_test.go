package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

type result struct {
	state tls.ConnectionState
	err   error
}

// handshake runs a TLS handshake over net.Pipe and returns both ends' results.
// In TLS 1.3 the server verifies the client certificate after the client has
// finished, so the client also does a read to observe a rejection.
func handshake(t *testing.T, server, client *tls.Config) (srv, cli result) {
	t.Helper()
	a, b := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer a.Close()
		s := tls.Server(a, server)
		srv.err = s.Handshake()
		srv.state = s.ConnectionState()
		if srv.err == nil {
			_, srv.err = s.Write([]byte{1})
		}
	}()
	c := tls.Client(b, client)
	cli.err = c.Handshake()
	if cli.err == nil {
		_, cli.err = c.Read(make([]byte, 1))
	}
	cli.state = c.ConnectionState()
	b.Close()
	wg.Wait()
	return srv, cli
}

func TestTLSHandshake(t *testing.T) {
	r := newRoot(t)
	manager := newCreds(t, r, "m1", mgr)
	workerC := newCreds(t, r, "w1", worker)

	// Worker dials a manager over Raft ALPN: both sides succeed and the
	// server sees the worker's verified identity.
	srv, cli := handshake(t, manager.ServerTLSConfig(), workerC.ClientTLSConfig(ALPNRaft))
	if srv.err != nil || cli.err != nil {
		t.Fatalf("server %v, client %v", srv.err, cli.err)
	}
	if srv.state.NegotiatedProtocol != ALPNRaft {
		t.Fatalf("ALPN %q", srv.state.NegotiatedProtocol)
	}
	if len(srv.state.VerifiedChains) == 0 {
		t.Fatal("client cert not verified")
	}
	id, err := IdentityFromCert(srv.state.VerifiedChains[0][0])
	if err != nil || id.NodeID != "w1" || id.Role != worker {
		t.Fatalf("peer identity %+v %v", id, err)
	}
	if got := cli.state.PeerCertificates[0].Subject.CommonName; got != "m1" {
		t.Fatalf("server cert CN %q", got)
	}

	// A worker-certified server is refused by clients (no ManagerRole SAN).
	_, cli = handshake(t, workerC.ServerTLSConfig(), manager.ClientTLSConfig("h2"))
	var hostErr x509.HostnameError
	if cli.err == nil || !errors.As(cli.err, &hostErr) {
		t.Fatalf("client accepted a worker server: %v", cli.err)
	}

	// Promote the worker live: its existing server config now serves a
	// manager certificate on new connections.
	mc, mk := issue(t, r, "w1", mgr)
	if err := workerC.Update(mc, mk); err != nil {
		t.Fatal(err)
	}
	srv, cli = handshake(t, workerC.ServerTLSConfig(), manager.ClientTLSConfig("h2"))
	if srv.err != nil || cli.err != nil {
		t.Fatalf("after promote: server %v, client %v", srv.err, cli.err)
	}

	// A client certificate from another cluster is rejected by the server.
	foreign := newCreds(t, newRoot(t), "x1", mgr)
	foreignClient := foreign.ClientTLSConfig("h2")
	foreignClient.RootCAs = manager.RootPool() // trusts our server, presents its own cert
	srv, _ = handshake(t, manager.ServerTLSConfig(), foreignClient)
	if srv.err == nil {
		t.Fatal("server accepted a client cert from another CA")
	}

	// No client certificate is allowed (CA service for joining nodes).
	srv, cli = handshake(t, manager.ServerTLSConfig(), BootstrapTLSConfig(nil))
	if srv.err != nil || cli.err != nil || len(srv.state.PeerCertificates) != 0 {
		t.Fatalf("bootstrap: server %v, client %v", srv.err, cli.err)
	}
	// Bootstrap with a pinned root refuses a worker server.
	_, cli = handshake(t, newCreds(t, r, "w2", worker).ServerTLSConfig(), BootstrapTLSConfig(r.Pool()))
	if cli.err == nil {
		t.Fatal("bootstrap client with root accepted a worker server")
	}
	_, cli = handshake(t, manager.ServerTLSConfig(), BootstrapTLSConfig(r.Pool()))
	if cli.err != nil {
		t.Fatalf("bootstrap client with root: %v", cli.err)
	}
}
