package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
)

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "m"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{"h2", ca.ALPNRaft}}
}

// stallConn lets its first Write (the ClientHello) through and blocks the
// next ones until released: the server then holds its handshake open.
type stallConn struct {
	net.Conn
	mu      sync.Mutex
	writes  int
	release chan struct{}
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	n := c.writes
	c.mu.Unlock()
	if n > 1 {
		<-c.release
	}
	return c.Conn.Write(b)
}

// TestMuxRaftHandshakeBypassesAgentStorm: with every agent handshake slot
// held and more agents queued, a Raft handshake still completes at once,
// the queued agent completes only once a slot frees, and no more agent
// handshakes than the limit run at a time (without the limit, the storm
// of a leader loss starved the Raft vote handshakes: BENCHMARKS.md 14).
func TestMuxRaftHandshakeBypassesAgentStorm(t *testing.T) {
	const limit = 2
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := &mux{tlsCfg: selfSignedTLS(t), limits: newHandshakeLimits(limit, limit)}
	type result struct {
		proto string
		err   error
	}
	done := make(chan result, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc, err := m.handshake(c)
				r := result{err: err}
				if err == nil {
					r.proto = tc.ConnectionState().NegotiatedProtocol
				}
				done <- r
				c.Close()
			}()
		}
	}()
	client := func(proto string, stall chan struct{}) (*tls.Conn, error) {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		var c net.Conn = raw
		if stall != nil {
			c = &stallConn{Conn: raw, release: stall}
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return tc, tc.HandshakeContext(ctx)
	}

	// limit agents hold every slot: their servers wait for a Finished
	// that is not sent.
	stall := make(chan struct{})
	defer func() {
		select {
		case <-stall:
		default:
			close(stall)
		}
	}()
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() {
			if tc, err := client("h2", stall); err == nil {
				defer tc.Close()
			}
		})
	}
	waitFor(t, "agent slots all taken", func() bool { return len(m.limits.other) == limit })
	// One more agent queues for a slot.
	queued := make(chan error, 1)
	go func() {
		tc, err := client("h2", nil)
		if err == nil {
			tc.Close()
		}
		queued <- err
	}()
	waitFor(t, "an agent handshake queued", func() bool { return m.limits.waiting.Load() == 1 })

	// A Raft handshake goes through meanwhile.
	tc, err := client(ca.ALPNRaft, nil)
	if err != nil {
		t.Fatalf("raft handshake while agents hold every slot: %v", err)
	}
	tc.Close()
	if r := <-done; r.err != nil || r.proto != ca.ALPNRaft {
		t.Fatalf("server side of the raft handshake: proto %q, err %v", r.proto, r.err)
	}
	select {
	case err := <-queued:
		t.Fatalf("the queued agent's handshake ended (%v) while every slot was held", err)
	default:
	}
	if n := len(m.limits.other); n != limit {
		t.Fatalf("%d agent handshakes in progress, limit %d", n, limit)
	}

	// Freeing the slots lets the queued agent through.
	close(stall)
	wg.Wait()
	select {
	case err := <-queued:
		if err != nil {
			t.Fatalf("queued agent handshake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued agent handshake did not complete once slots were freed")
	}
	waitFor(t, "every slot given back", func() bool { return len(m.limits.other) == 0 && len(m.limits.raft) == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
