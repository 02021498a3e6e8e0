package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testdocker"
)

// TestDiscoveryThroughTheCLI drives issue 10 the way an operator would, on
// one cluster (a manager and three workers on the machine's engine; a
// fourth worker on a second engine at the end): services on a network reach
// each other by name from every node wherever the backend runs, follow it
// when it moves, are refused at once when it has no task, stay isolated
// from other networks, list their tasks under tasks.NAME, keep their
// published ports, and survive a node daemon's restart.
func TestDiscoveryThroughTheCLI(t *testing.T) {
	bin := binDir(t)
	needDocker(t)
	needCommand(t, bin, "network")
	testdocker.Images(t, "redis", "python")

	leftovers := newEngineLeftovers(t) // runs after the daemons stop
	c := newCluster(t)
	m1 := c.addNode("m1", "managerd", "")
	w1 := c.addNode("w1", "workerd", "")
	w2 := c.addNode("w2", "workerd", "")
	w3 := c.addNode("w3", "workerd", "")
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	tok := c.joinToken(m1, "worker", false)
	for _, w := range []*daemon{w1, w2, w3} {
		c.join(w, m1, tok)
	}
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": "", "w2": "", "w3": ""})
	ids := c.nodeIDs(m1, leftovers)
	nodes := map[string]string{} // node ID -> engine, for containers()
	nameOf := map[string]string{}
	for name, id := range ids {
		nodes[id] = ""
		nameOf[id] = name
	}

	// ---- networks and bad input
	c.ok(m1, "network", "create", "appnet")
	c.ok(m1, "network", "create", "--driver", "overlay", "net2")
	c.fails(m1, "appnet", "network", "create", "appnet") // a duplicate name
	c.fails(m1, "nosuch", "service", "create", "-d", "--name", "bad", "--network", "nosuch", testdocker.Python)
	if out := c.ok(m1, "network", "ls"); !strings.Contains(out, "appnet") || !strings.Contains(out, "net2") {
		t.Fatalf("network ls:\n%s", out)
	}

	// ---- redis on one node, a client on every node
	c.ok(m1, "service", "create", "-d", "--name", "redis", "--network", "appnet", testdocker.Redis)
	c.ok(m1, "service", "create", "-d", "--name", "client", "--mode", "global", "--network", "appnet",
		testdocker.Python, "sleep", "infinity")
	redis := c.waitContainers("redis", nodes, 1, 90*time.Second)[0]
	clients := c.waitContainers("client", nodes, 4, 90*time.Second)
	t.Logf("redis runs on %s", nameOf[redis.nodeID])
	reachAll := func(what string, cs []taskContainer, name string) {
		t.Helper()
		for _, cl := range cs {
			cl := cl
			c.eventually(20*time.Second, fmt.Sprintf("%s: client on %s reaching %s", what, nameOf[cl.nodeID], name), func() error {
				out, err := probe(cl, "redis", name)
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
	}
	reachAll("first placement", clients, "redis")
	if inspect := c.ok(m1, "service", "inspect", "redis"); !strings.Contains(inspect, "appnet") && !strings.Contains(inspect, networkID(t, c, m1, "appnet")) {
		t.Errorf("service inspect redis does not show its network:\n%s", inspect)
	}
	if inspect := c.ok(m1, "network", "inspect", "appnet"); !strings.Contains(inspect, "redis") {
		t.Errorf("network inspect appnet does not name the attached service redis:\n%s", inspect)
	}
	vips, err := resolve(clients[0], "redis")
	if err != nil || len(vips) != 1 {
		t.Fatalf("redis resolves to %v (%v), want one virtual address", vips, err)
	}
	vip := vips[0]

	// ---- redis moves: drain its node, the same name reaches it again
	from := nameOf[redis.nodeID]
	c.ok(m1, "node", "update", "--availability", "drain", from)
	c.eventually(60*time.Second, "redis rescheduled off "+from, func() error {
		got, err := containers("redis", nodes)
		if err != nil {
			return err
		}
		if len(got) != 1 || got[0].nodeID == redis.nodeID {
			return fmt.Errorf("redis containers %v", got)
		}
		redis = got[0]
		return nil
	})
	t.Logf("redis moved from %s to %s", from, nameOf[redis.nodeID])
	clients = c.waitContainers("client", nodes, 3, 60*time.Second) // none on the drained node
	reachAll("after the move", clients, "redis")
	c.ok(m1, "node", "update", "--availability", "active", from)
	clients = c.waitContainers("client", nodes, 4, 60*time.Second)

	// ---- tasks.NAME lists every task, each reachable
	c.ok(m1, "service", "scale", "redis=3")
	c.waitContainers("redis", nodes, 3, 60*time.Second)
	c.eventually(20*time.Second, "tasks.redis listing 3 addresses", func() error {
		addrs, err := resolve(clients[0], "tasks.redis")
		if err != nil {
			return err
		}
		if len(addrs) != 3 {
			return fmt.Errorf("tasks.redis resolves to %v", addrs)
		}
		for _, a := range addrs {
			if out, err := probe(clients[0], "tcp", a, "6379"); err != nil || out != "ok" {
				return fmt.Errorf("task address %s: %s (%v)", a, out, err)
			}
		}
		return nil
	})

	// ---- scaled to 0: refused at once, never a hang
	c.ok(m1, "service", "scale", "redis=0")
	c.waitContainers("redis", nodes, 0, 60*time.Second)
	for _, cl := range clients {
		cl := cl
		c.eventually(10*time.Second, "redis refused from "+nameOf[cl.nodeID], func() error {
			start := time.Now()
			out, _ := probe(cl, "tcp", "redis", "6379", "5")
			switch {
			case out == "timeout":
				return errStop{fmt.Errorf("connecting to redis with no task timed out after %s, want refused at once", time.Since(start))}
			case out == "refused" || out == "reset":
				return nil
			}
			return fmt.Errorf("probe tcp redis 6379: %q", out)
		})
	}
	c.ok(m1, "service", "scale", "redis=1")
	c.waitContainers("redis", nodes, 1, 60*time.Second)
	reachAll("scaled back", clients, "redis")

	// ---- isolation: a service on net2 neither resolves nor reaches redis
	c.ok(m1, "service", "create", "-d", "--name", "other", "--network", "net2", testdocker.Python, "sleep", "infinity")
	other := c.waitContainers("other", nodes, 1, 60*time.Second)[0]
	if addrs, err := resolve(other, "redis"); err != nil || len(addrs) != 0 {
		t.Errorf("from net2, redis resolves to %v (%v), want no answer", addrs, err)
	}
	if out, _ := probe(other, "tcp", vip, "6379", "2"); out == "ok" {
		t.Errorf("from net2, redis's virtual address %s on appnet answers", vip)
	}
	// --network-add attaches it, --network-rm detaches it again.
	c.ok(m1, "service", "update", "--network-add", "appnet", "other")
	c.eventually(60*time.Second, "other reaching redis once on appnet", func() error {
		cs, err := containers("other", nodes)
		if err != nil || len(cs) != 1 {
			return fmt.Errorf("other containers %v (%v)", cs, err)
		}
		other = cs[0]
		if out, err := probe(other, "redis", "redis"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	c.ok(m1, "service", "update", "--network-rm", "appnet", "other")
	c.eventually(60*time.Second, "other no longer resolving redis", func() error {
		cs, err := containers("other", nodes)
		if err != nil || len(cs) != 1 {
			return fmt.Errorf("other containers %v (%v)", cs, err)
		}
		if addrs, err := resolve(cs[0], "redis"); err != nil || len(addrs) != 0 {
			return fmt.Errorf("redis resolves to %v (%v)", addrs, err)
		}
		return nil
	})

	// ---- an alias names a service on a network
	c.ok(m1, "service", "create", "-d", "--name", "kv", "--network", "name=appnet,alias=cache", testdocker.Redis)
	c.waitContainers("kv", nodes, 1, 60*time.Second)
	reachAll("alias", clients[:1], "cache")
	c.fails(m1, "cache", "service", "create", "-d", "--name", "cache", "--network", "appnet", testdocker.Redis)

	// ---- a published port of a service on a network, through the mesh
	port := freePort(t, m1.ip())
	c.ok(m1, "service", "create", "-d", "--name", "web", "--network", "appnet", "-p", port+":8080",
		testdocker.Python, "python3", "-m", "http.server", "8080")
	c.waitContainers("web", nodes, 1, 60*time.Second)
	for _, d := range []*daemon{m1, w1, w2, w3} {
		url := "http://" + net.JoinHostPort(d.ip(), port) + "/"
		c.eventually(30*time.Second, "GET "+url, func() error { return httpOK(url) })
	}
	c.eventually(20*time.Second, "web by name from a client", func() error {
		if out, err := probe(clients[0], "http", "http://web:8080/"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// ---- a node daemon restarts: names keep working there
	var restarted *daemon
	for _, d := range []*daemon{w1, w2, w3} {
		if ids[d.name] != redis.nodeID {
			restarted = d
			break
		}
	}
	restarted.kill(t)
	c.start(restarted)
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": "", "w2": "", "w3": ""})
	clients = c.waitContainers("client", nodes, 4, 60*time.Second)
	reachAll("after restarting "+restarted.name, clients, "redis")

	// ---- removing a network in use is refused, naming the services
	c.fails(m1, "redis", "network", "rm", "appnet")

	// ---- a node on a second engine reaches a service on the first
	engine := testdocker.Start(t)
	engine.LoadImage(t, testdocker.Python)
	w4 := c.addNode("w4", "workerd", engine.Host)
	c.join(w4, m1, tok)
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": "", "w2": "", "w3": "", "w4": ""})
	ids = c.nodeIDs(m1, leftovers)
	nodes[ids["w4"]] = engine.Host
	nameOf[ids["w4"]] = "w4"
	clients = c.waitContainers("client", nodes, 5, 120*time.Second)
	for _, cl := range clients {
		if cl.host == engine.Host {
			reachAll("from the second engine", []taskContainer{cl}, "redis")
		}
	}

	// ---- the end: services go, then the network can go, and nothing is left
	for _, s := range []string{"client", "other", "kv", "web", "redis"} {
		c.ok(m1, "service", "rm", s)
	}
	c.eventually(60*time.Second, "appnet removable once unused", func() error {
		if r := c.swarmctl(m1, "network", "rm", "appnet"); r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	c.ok(m1, "network", "rm", "net2")
	c.eventually(60*time.Second, "no Docker network of the cluster left on the engines", func() error {
		for id, host := range nodes {
			out, err := docker(host, "network", "ls", "-q", "--filter", "label=raftswarm.node.id="+id)
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				detail, _ := docker(host, append([]string{"network", "inspect", "--format", "{{.Name}} containers={{len .Containers}}"}, strings.Fields(out)...)...)
				return fmt.Errorf("node %s still has networks: %s", nameOf[id], strings.Join(strings.Fields(detail), " "))
			}
		}
		return nil
	})
}

// networkID returns the ID network inspect shows for name ("" when it
// shows none).
func networkID(t *testing.T, c *cluster, d *daemon, name string) string {
	t.Helper()
	r := c.swarmctl(d, "network", "inspect", "--format", "{{.ID}}", name)
	if r.code != 0 {
		return "\x00" // matches nothing
	}
	return strings.TrimSpace(r.stdout)
}

func httpOK(url string) error {
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
