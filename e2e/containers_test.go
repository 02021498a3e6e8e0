package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testdocker"
)

// TestContainersThroughTheCLI runs the Debian-built test images as services
// of a cluster whose nodes publish on their own loopback addresses, one of
// them on a second engine, with the features that exist without networks:
// it checks the harness the discovery and stack tests stand on (addNode,
// finding task containers per node and engine, probes from inside them,
// published ports on every node, cleanup of what the cluster leaves on the
// engines).
func TestContainersThroughTheCLI(t *testing.T) {
	binDir(t)
	needDocker(t)
	testdocker.Images(t, "redis", "python")

	leftovers := newEngineLeftovers(t) // runs after the daemons stop
	engine := testdocker.Start(t)
	engine.LoadImage(t, testdocker.Python)
	c := newCluster(t)
	m1 := c.addNode("m1", "managerd", "")
	w1 := c.addNode("w1", "workerd", "")
	w2 := c.addNode("w2", "workerd", engine.Host)
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	tok := c.joinToken(m1, "worker", false)
	c.join(w1, m1, tok)
	c.join(w2, m1, tok)
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": "", "w2": ""})
	ids := c.nodeIDs(m1, leftovers)
	nodes := map[string]string{ids["m1"]: "", ids["w1"]: "", ids["w2"]: engine.Host}

	// redis on the machine's engine, a python client on every node.
	c.ok(m1, "service", "create", "-d", "--name", "redis", "--constraint", "node.hostname==w1", testdocker.Redis)
	c.ok(m1, "service", "create", "-d", "--name", "client", "--mode", "global", testdocker.Python, "sleep", "infinity")
	redis := c.waitContainers("redis", nodes, 1, 90*time.Second)[0]
	if redis.nodeID != ids["w1"] {
		t.Fatalf("redis runs on node %s, want w1 (%s)", redis.nodeID, ids["w1"])
	}
	clients := c.waitContainers("client", nodes, 3, 2*time.Minute)
	onSecond := 0
	for _, cl := range clients {
		if cl.host == engine.Host {
			onSecond++
			if cl.nodeID != ids["w2"] {
				t.Errorf("container %s on the second engine belongs to node %s, want w2", cl.id, cl.nodeID)
			}
		}
	}
	if onSecond != 1 {
		t.Fatalf("%d client containers on the second engine, want w2's one", onSecond)
	}

	// Probes from inside: redis over the machine's bridge (no names yet:
	// its container address), a refused port, a name that does not resolve.
	ip, err := docker("", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", redis.id)
	if err != nil {
		t.Fatal(err)
	}
	ip = strings.TrimSpace(ip)
	for _, cl := range clients {
		if cl.host != "" {
			continue // the second engine's bridge does not reach the first's
		}
		cl := cl
		c.eventually(20*time.Second, "probe redis from "+cl.id, func() error {
			if out, err := probe(cl, "redis", ip); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if out, err := probe(cl, "tcp", ip, "6380", "2"); err == nil || out != "refused" {
			t.Errorf("probe tcp %s 6380: %q (%v), want refused", ip, out, err)
		}
		if addrs, err := resolve(cl, "no-such-name.invalid"); err != nil || len(addrs) != 0 {
			t.Errorf("resolve of an unknown name: %v (%v), want none", addrs, err)
		}
	}

	// A published port answers on every node's own address, whichever
	// engine runs the task.
	port := freePort(t, m1.ip())
	c.ok(m1, "service", "create", "-d", "--name", "web", "--constraint", "node.hostname==w2", "-p", port+":8080",
		testdocker.Python, "python3", "-m", "http.server", "8080")
	web := c.waitContainers("web", nodes, 1, 90*time.Second)[0]
	if web.host != engine.Host {
		t.Fatalf("web runs on %q, want the second engine", web.host)
	}
	for _, d := range []*daemon{m1, w1, w2} {
		u := "http://" + net.JoinHostPort(d.ip(), port) + "/"
		c.eventually(30*time.Second, "GET "+u, func() error { return httpOK(u) })
	}

	c.ok(m1, "service", "rm", "redis", "client", "web")
	c.eventually(60*time.Second, "every task container removed", func() error {
		for _, s := range []string{"redis", "client", "web"} {
			if got, err := containers(s, nodes); err != nil || len(got) != 0 {
				return fmt.Errorf("%s: %v (%v)", s, got, err)
			}
		}
		return nil
	})
}
