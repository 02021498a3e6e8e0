package node_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// A dashboard address that cannot be bound fails the daemon at start,
// naming the flag.
func TestDashboardBadAddr(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.6.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, addr := range []string{"nonsense", busy.Addr().String(), "127.0.6.1:70000"} {
		var stderr bytes.Buffer
		dir := t.TempDir()
		code := node.Main("managerd", []string{"--state-dir", dir, "--socket", filepath.Join(dir, "s.sock"),
			"--hostname", "h1", "--dashboard-addr", addr}, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), "Error: --dashboard-addr") {
			t.Errorf("--dashboard-addr %s: exit %d, stderr %q", addr, code, stderr.String())
		}
	}
}

// Off loopback the dashboard is HTTPS with the manager's certificate from
// the cluster's CA, and needs the token the managers keep in Raft; a
// rotation (from any manager) refuses the old token on every manager.
func TestDashboardTokenThroughRaft(t *testing.T) {
	c := testcluster.New(t, 2, 0, testcluster.Options{Configure: func(name string, cfg *node.Config) {
		// Not loopback: all addresses (the test connects through 127.0.0.1).
		cfg.DashboardAddr = "0.0.0.0:0"
	}})
	ctx := ctxT(t, time.Minute)
	rootPEM, err := os.ReadFile(filepath.Join(c.Get("m1").Dir, "certs", ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: ca.ManagerRole}}}
	t.Cleanup(client.CloseIdleConnections)
	url := func(m string) string {
		u := c.Get(m).Node.DashboardURL()
		if !strings.HasPrefix(u, "https://0.0.0.0:") {
			t.Fatalf("%s dashboard at %q, want https on all addresses", m, u)
		}
		return strings.Replace(u, "0.0.0.0", "127.0.0.1", 1)
	}
	status := func(m, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url(m)+"app.js", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", m, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := status("m1", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}

	ctl := c.Control()
	tok, err := ctl.GetDashboardToken(ctx, &swarmpb.GetDashboardTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := ctl.GetDashboardToken(ctx, &swarmpb.GetDashboardTokenRequest{})
	if err != nil || again.Token != tok.Token || !strings.HasPrefix(tok.Token, "SWDASH-1-") {
		t.Fatalf("token %q then %q (%v): want one stable token", tok.Token, again.Token, err)
	}
	for _, m := range []string{"m1", "m2"} { // the follower applies it a moment later
		testutil.Eventually(t, 10*time.Second, func() error {
			if code, body := status(m, tok.Token); code != 200 || !strings.Contains(body, "EventSource") {
				return &httpErr{m, code}
			}
			return nil
		})
	}
	// GetCluster never shows it.
	cl, err := ctl.GetCluster(ctx, &swarmpb.GetClusterRequest{})
	if err != nil || strings.Contains(cl.String(), tok.Token) {
		t.Errorf("GetCluster shows the dashboard token (%v)", err)
	}

	// Rotate through the follower's socket: relayed to the leader.
	rot, err := c.Get("m2").Control().GetDashboardToken(ctx, &swarmpb.GetDashboardTokenRequest{Rotate: true})
	if err != nil || rot.Token == tok.Token || rot.Token == "" {
		t.Fatalf("rotate: %q (%v)", rot.GetToken(), err)
	}
	for _, m := range []string{"m1", "m2"} {
		testutil.Eventually(t, 10*time.Second, func() error {
			if code, _ := status(m, tok.Token); code != 401 {
				return &httpErr{m + " old token", code}
			}
			if code, _ := status(m, rot.Token); code != 200 {
				return &httpErr{m + " new token", code}
			}
			return nil
		})
	}
}

type httpErr struct {
	what string
	code int
}

func (e *httpErr) Error() string { return e.what + ": HTTP " + http.StatusText(e.code) }
