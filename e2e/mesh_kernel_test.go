package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildWhoami builds ../integration/testdata/whoami (a task answering
// "client=ADDR proxy=SRC" on port 80) into a FROM-scratch image.
func buildWhoami(t *testing.T, leftovers *engineLeftovers) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "whoami"), "../integration/testdata/whoami")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build whoami: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY whoami /whoami\nENTRYPOINT [\"/whoami\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("raftswarm-test/whoami:perf-mesh-e2e-%d", time.Now().UnixNano())
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	leftovers.image(tag)
	return tag
}

func askWhoami(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

var meshPathLine = regexp.MustCompile(`(?m)^\s*Path:\s+(\S+)`)

// TestMeshKernelThroughTheCLI runs managerd with the default --mesh-path
// as root: it is on the kernel path, node inspect says so, and the
// published port answers through the node's nftables table. A kill -9
// leaves the table behind; the restarted daemon replaces it (the default)
// or removes it (with --mesh-path=userspace, then serving the port from
// its proxy, node inspect saying why).
func TestMeshKernelThroughTheCLI(t *testing.T) {
	binDir(t)
	needDocker(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (nftables)")
	}
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		t.Skip("no /usr/sbin/nft")
	}
	leftovers := newEngineLeftovers(t)
	img := buildWhoami(t, leftovers)
	c := newCluster(t)
	c.ipBase, c.nextIP = "127.0.7.", 21 // perf-mesh's loopback range
	m1IP := "127.0.7.21"                // addNode's next
	m1 := c.addNode("m1", "managerd", "", "--metrics-addr", net.JoinHostPort(m1IP, freePort(t, m1IP)))
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	ids := c.nodeIDs(m1, leftovers)
	table := "raftswarm_mesh_" + strings.ToLower(ids["m1"])[:12]

	path := func() (string, string) {
		out := c.ok(m1, "node", "inspect", "--pretty", "m1")
		m := meshPathLine.FindStringSubmatch(out)
		if m == nil {
			return "", out
		}
		return m[1], out
	}
	c.eventually(20*time.Second, "node inspect to show the kernel path", func() error {
		if p, out := path(); p != "kernel" {
			return fmt.Errorf("path %q in:\n%s", p, out)
		}
		return nil
	})

	port := freePort(t, m1.ip())
	c.ok(m1, "service", "create", "-d", "--name", "who", "-p", port+":80", img)
	addr := net.JoinHostPort(m1.ip(), port)
	c.eventually(90*time.Second, "the published port to answer through the kernel", func() error {
		out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "dnat to") {
			return fmt.Errorf("table %s: %v\n%s", table, err, out)
		}
		_, err = askWhoami(addr)
		return err
	})

	// The connections the kernel forwards are in the metrics, beside the
	// proxy's (path="userspace").
	for i := 0; i < 5; i++ {
		if _, err := askWhoami(addr); err != nil {
			t.Fatal(err)
		}
	}
	metrics := "http://" + m1.flag("--metrics-addr") + "/metrics"
	kernelSeries := fmt.Sprintf(`raftswarm_mesh_port_connections_total{path="kernel",port=%q,protocol="tcp",service="who"}`, port)
	c.eventually(20*time.Second, "the kernel path's connections in the metrics", func() error {
		v, err := metricValue(metrics, kernelSeries)
		if err != nil {
			return err
		}
		if v < 5 {
			return fmt.Errorf("%s = %v, want >= 5", kernelSeries, v)
		}
		return nil
	})

	m1.kill(t)
	if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err != nil {
		t.Fatalf("kill -9 removed the table (nothing left to test): %v %s", err, out)
	}
	// A mark in the stale table: gone once the restarted daemon has
	// replaced the table rather than kept it.
	if out, err := exec.Command("nft", "add", "chain", "ip", table, "stale_mark").CombinedOutput(); err != nil {
		t.Fatalf("marking the stale table: %v %s", err, out)
	}
	c.start(m1)
	c.eventually(60*time.Second, "the restarted daemon to replace its stale table and forward in the kernel", func() error {
		out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput()
		if err != nil || strings.Contains(string(out), "stale_mark") || !strings.Contains(string(out), "dnat to") {
			return fmt.Errorf("table %s: %v\n%s", table, err, out)
		}
		if p, out := path(); p != "kernel" {
			return fmt.Errorf("path %q in:\n%s", p, out)
		}
		_, err = askWhoami(addr)
		return err
	})

	m1.kill(t)
	m1.extra = append(m1.extra, "--mesh-path", "userspace")
	c.start(m1)
	c.eventually(30*time.Second, "the restarted daemon to remove its stale table and serve in user space", func() error {
		if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
			return fmt.Errorf("table %s still there:\n%s", table, out)
		}
		if p, out := path(); p != "userspace" || !strings.Contains(out, "--mesh-path=userspace") {
			return fmt.Errorf("path %q in:\n%s", p, out)
		}
		_, err := askWhoami(addr)
		return err
	})
}

// metricValue GETs a /metrics url and returns the value of one series,
// written as the text format writes it (labels sorted by name).
func metricValue(url, series string) (float64, error) {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no series %s at %s", series, url)
}
