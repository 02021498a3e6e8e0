package node

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func testNodeCreds(t *testing.T, root *ca.RootCA, nodeID string, role swarmpb.NodeRole) *ca.Creds {
	t.Helper()
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := root.IssueNodeCert(csrPEM, nodeID, "cluster1", role)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.NewCreds(root.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dataTLS(t *testing.T, creds *ca.Creds) agent.Config {
	t.Helper()
	n := &Node{creds: creds, cfg: Config{DataPort: 4790}}
	var cfg agent.Config
	n.dataPlaneConfig(&cfg)
	if cfg.DataPort != 4790 || cfg.DataServerTLS == nil || cfg.DataClientTLS == nil {
		t.Fatalf("data plane config %+v", cfg)
	}
	return cfg
}

// handshake runs a TLS handshake between the configs over a pipe and
// returns the client's error (the server's if the client's is nil).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(a, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; make the server answer once.
			_, err = s.Write([]byte("x"))
		}
		if err != nil {
			a.Close()
		}
		srvErr <- err
	}()
	c := tls.Client(b, client)
	err := c.Handshake()
	if err == nil {
		buf := make([]byte, 1)
		_, err = c.Read(buf)
		if err == nil && c.ConnectionState().Version != tls.VersionTLS13 {
			t.Errorf("negotiated TLS version %x, want 1.3", c.ConnectionState().Version)
		}
	}
	b.Close()
	if serr := <-srvErr; err == nil {
		err = serr
	}
	return err
}

// The data path is mutual TLS 1.3 between nodes of one cluster: a worker
// reaches a worker when it names the node it dials; another node's name,
// no client certificate, or another cluster's certificate fail.
func TestDataPlaneTLS(t *testing.T) {
	root, err := ca.NewRootCA()
	if err != nil {
		t.Fatal(err)
	}
	w1 := dataTLS(t, testNodeCreds(t, root, "node1", swarmpb.NodeRole_NODE_ROLE_WORKER))
	w2 := dataTLS(t, testNodeCreds(t, root, "node2", swarmpb.NodeRole_NODE_ROLE_WORKER))
	m3 := dataTLS(t, testNodeCreds(t, root, "node3", swarmpb.NodeRole_NODE_ROLE_MANAGER))

	named := func(cfg agent.Config, node string) *tls.Config {
		c := cfg.DataClientTLS()
		c.ServerName = node
		return c
	}
	if err := handshake(t, w2.DataServerTLS(), named(w1, "node2")); err != nil {
		t.Fatalf("worker to worker: %v", err)
	}
	if err := handshake(t, m3.DataServerTLS(), named(w1, "node3")); err != nil {
		t.Fatalf("worker to manager: %v", err)
	}
	if err := handshake(t, w1.DataServerTLS(), named(m3, "node1")); err != nil {
		t.Fatalf("manager to worker: %v", err)
	}
	if err := handshake(t, w2.DataServerTLS(), named(w1, "node3")); err == nil {
		t.Fatal("node2 passed for node3")
	}
	noCert := named(w1, "node2")
	noCert.GetClientCertificate = nil
	if err := handshake(t, w2.DataServerTLS(), noCert); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	other, err := ca.NewRootCA()
	if err != nil {
		t.Fatal(err)
	}
	stranger := dataTLS(t, testNodeCreds(t, other, "node9", swarmpb.NodeRole_NODE_ROLE_WORKER))
	if err := handshake(t, w2.DataServerTLS(), named(stranger, "node2")); err == nil {
		t.Fatal("another cluster's node was accepted")
	}
	// Without a ServerName the client refuses to proceed rather than
	// accept any node.
	if err := handshake(t, w2.DataServerTLS(), w1.DataClientTLS()); err == nil {
		t.Fatal("handshake without a server name succeeded")
	}
}

func TestDataPortFlag(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main("workerd", []string{"--data-port", "70000"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--data-port") {
		t.Fatalf("Main with a bad --data-port = %d, %q", code, stderr.String())
	}
}

func TestMeshPathFlag(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main("workerd", []string{"--mesh-path", "ipvs"}, &stderr); code != 2 || !strings.Contains(stderr.String(), `invalid mesh path "ipvs": use auto or userspace`) {
		t.Fatalf("Main with a bad --mesh-path = %d, %q", code, stderr.String())
	}
}
