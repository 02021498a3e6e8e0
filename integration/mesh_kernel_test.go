package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/mesh"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// buildWhoamiImage builds testdata/whoami (answers "client=ADDR
// proxy=SRC") into a FROM-scratch image, removed when the test ends.
func buildWhoamiImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "whoami"), "./testdata/whoami")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build whoami: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY whoami /whoami\nENTRYPOINT [\"/whoami\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "raftswarm-test/whoami:perf-mesh-" + randomSuffix()
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = docker(t, "rmi", "-f", tag) })
	return tag
}

// whoami asks one connection and returns the client and proxy fields.
func whoami(dial func() (net.Conn, error)) (client, proxy string, err error) {
	c, err := dial()
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", err
	}
	return field(line, "client"), field(line, "proxy"), nil
}

// TestMeshKernelPath runs real containers on a 3-node cluster whose nodes
// forward published ports in the kernel (root): m1 on a veth address
// (10.207.x.1) so a client in another network namespace stands for a
// remote client, w1 and w2 on 127.0.7.x as in the demo. It checks that
// every node reports the kernel path and answers on its ingress address
// through its own nftables table, that a client from outside reaches m1's
// local task directly and the task sees the client's address, that a
// PROXY-protocol port carries the client's address to the task, and that
// a node's table goes with the node.
func TestMeshKernelPath(t *testing.T) {
	requireDocker(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (nftables, network namespace)")
	}
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		t.Skip("no /usr/sbin/nft")
	}
	img := buildWhoamiImage(t)

	id := randomSuffix()[:4]
	third, _ := strconv.ParseUint(id[:2], 16, 8)
	ns, hostIP, nsIP := testutil.VethNetns(t, id, int(third))

	c := testcluster.New(t, 1, 2, testcluster.Options{
		Docker:    true,
		IPs:       []string{hostIP, "127.0.7.11", "127.0.7.12"},
		Configure: func(_ string, cfg *node.Config) { cfg.MeshPath = agent.MeshPathAuto },
	})
	ctl := c.Control()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	testutil.Eventually(t, 30*time.Second, func() error {
		nodes, err := ctl.ListNodes(ctx, &swarmpb.ListNodesRequest{})
		if err != nil {
			return err
		}
		if len(nodes.Nodes) != 3 {
			return fmt.Errorf("%d nodes", len(nodes.Nodes))
		}
		for _, n := range nodes.Nodes {
			d := n.Node.GetDescription()
			if n.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY || d.GetEngineVersion() == "" {
				return fmt.Errorf("node %s not ready", d.GetHostname())
			}
			if d.GetMeshPath() != mesh.PathKernel {
				return fmt.Errorf("node %s reports mesh path %q (%s)", d.GetHostname(), d.GetMeshPath(), d.GetMeshPathReason())
			}
		}
		return nil
	})

	port, ppPort := freePort(t), freePort(t)
	for _, s := range []*swarmpb.ServiceSpec{
		{Name: "who-" + id, Mode: swarmpb.ServiceMode_SERVICE_MODE_GLOBAL,
			Container: &swarmpb.ContainerSpec{Image: img, StopGracePeriodNs: int64(2 * time.Second)},
			Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: port, PublishMode: "ingress"}}},
		{Name: "whopp-" + id, Mode: swarmpb.ServiceMode_SERVICE_MODE_GLOBAL,
			Container: &swarmpb.ContainerSpec{Image: img, StopGracePeriodNs: int64(2 * time.Second)},
			Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: ppPort, PublishMode: "ingress", ProxyProtocol: "v2"}}},
	} {
		resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Service.Id
		t.Cleanup(func() { removeService(t, c, id) })
	}

	// Every node answers on its ingress address, and its own table DNATs
	// the port to the three tasks.
	tables := map[string]string{}
	for _, m := range c.Members {
		tables[m.Name] = mesh.NFTTableName(m.NodeID())
	}
	testutil.Eventually(t, 90*time.Second, func() error {
		for _, m := range c.Members {
			out, err := exec.Command("nft", "list", "table", "ip", tables[m.Name]).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %v: %s", m.Name, err, out)
			}
			if n := strings.Count(string(out), "dnat to"); !strings.Contains(string(out), fmt.Sprintf("tcp dport %d ", port)) || n < 3 {
				return fmt.Errorf("%s's table has %d dnat rules for port %d:\n%s", m.Name, n, port, out)
			}
			for i := 0; i < 6; i++ {
				if _, _, err := whoami(func() (net.Conn, error) {
					return net.DialTimeout("tcp", net.JoinHostPort(m.Addr[:strings.LastIndex(m.Addr, ":")], strconv.Itoa(int(port))), 3*time.Second)
				}); err != nil {
					return fmt.Errorf("%s: %v", m.Name, err)
				}
			}
		}
		return nil
	})

	// A client from outside: m1's own task sees its address (kernel,
	// straight to the container); the tasks on the loopback nodes are
	// reached through the userspace proxy.
	ingress := net.JoinHostPort(hostIP, strconv.Itoa(int(port)))
	direct := 0
	for i := 0; i < 40 && direct == 0; i++ {
		client, _, err := whoami(func() (net.Conn, error) { return testutil.DialFromNetns(ns, ingress, 3*time.Second) })
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(client, nsIP+":") {
			direct++
		}
	}
	if direct == 0 {
		t.Fatalf("no answer from m1's task saw the client address %s in 40 connections", nsIP)
	}

	// PROXY protocol: the header carries the client's address to every
	// task, whichever node took the connection.
	testutil.Eventually(t, 60*time.Second, func() error {
		for _, m := range c.Members[1:] {
			addr := net.JoinHostPort(m.Addr[:strings.LastIndex(m.Addr, ":")], strconv.Itoa(int(ppPort)))
			_, proxy, err := whoami(func() (net.Conn, error) {
				d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.7.99")}}
				return d.Dial("tcp", addr)
			})
			if err != nil {
				return fmt.Errorf("%s: %v", m.Name, err)
			}
			if !strings.HasPrefix(proxy, "127.0.7.99:") {
				return fmt.Errorf("%s: PROXY header source %q, want 127.0.7.99", m.Name, proxy)
			}
		}
		return nil
	})

	// A stopped node takes its table with it.
	w2 := c.Members[2]
	w2.Stop()
	if out, err := exec.Command("nft", "list", "table", "ip", tables[w2.Name]).CombinedOutput(); err == nil {
		t.Fatalf("%s's table still there after it stopped:\n%s", w2.Name, out)
	}
}
