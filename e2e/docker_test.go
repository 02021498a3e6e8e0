package e2e

// Helpers for the end-to-end tests whose services run real containers
// (discovery_test.go, stack_test.go): daemons that publish on their own
// loopback address, finding a service's task containers on the engine, and
// probing from inside them with the python image's `probe` command. Every
// container, network, volume, nft table and image the cluster leaves
// behind is removed when the test ends, even when it fails.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const dockerTimeout = 60 * time.Second // one docker CLI call

// needDocker skips the test unless the machine's Docker engine answers.
func needDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		t.Skipf("the Docker engine does not answer (docker info: %v)", err)
	}
}

// needCommand skips the test unless `swarmctl CMD --help` documents CMD
// (the feature has landed in this build). cobra answers --help of an
// unknown command with the root's help and status 0, so the usage line is
// what tells.
func needCommand(t *testing.T, bin string, cmd ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "swarmctl"), append(cmd, "--help")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "swarmctl "+strings.Join(cmd, " ")) {
		t.Skipf("swarmctl %s is not in this build (the feature has not landed): %v", strings.Join(cmd, " "), err)
	}
}

// daemonHasFlag says whether the daemon binary knows --flag.
func (c *cluster) daemonHasFlag(binary, flag string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, filepath.Join(c.bin, binary), "--help").CombinedOutput()
	return strings.Contains(string(out), "-"+flag)
}

// addNode starts a daemon like add, that publishes ports on its own
// loopback address (--ingress-addr, so nodes sharing the host do not clash),
// serves its data-plane tunnel on a free port there (--data-port, when the
// binary has it) and runs tasks on the engine at dockerHost ("" = the
// machine's).
func (c *cluster) addNode(name, binary, dockerHost string, extra ...string) *daemon {
	c.t.Helper()
	ip := fmt.Sprintf("%s%d", c.ipBase, c.nextIP)
	c.nextIP++
	dir := c.daemonDir(name)
	d := &daemon{
		name:     name,
		binary:   binary,
		stateDir: filepath.Join(dir, "state"),
		socket:   filepath.Join(c.sockDir, name+".sock"),
		addr:     net.JoinHostPort(ip, freePort(c.t, ip)),
		logPath:  filepath.Join(dir, name+".log"),
		extra:    []string{"--ingress-addr", ip},
	}
	if c.daemonHasFlag(binary, "data-port") {
		d.extra = append(d.extra, "--data-port", freePort(c.t, ip))
	}
	if dockerHost != "" {
		d.extra = append(d.extra, "--docker-host", dockerHost)
	}
	d.extra = append(d.extra, extra...)
	c.daemons[name] = d
	c.start(d)
	return d
}

// ip is the daemon's loopback address (its ingress address for addNode).
func (d *daemon) ip() string {
	host, _, _ := net.SplitHostPort(d.addr)
	return host
}

// engineLeftovers removes, at the end of a test, what the cluster made on
// Docker engines and in the kernel: containers and networks labelled with
// one of its node IDs, the nodes' nft tables, and the named volumes and
// images the test registered. Register it before newCluster, so that it
// runs after the daemons have stopped (cleanups run last-in first-out).
type engineLeftovers struct {
	mu      sync.Mutex
	nodeIDs map[string]string // node ID -> Docker host ("" = the machine's)
	volumes []string
	images  []string
}

func newEngineLeftovers(t *testing.T) *engineLeftovers {
	l := &engineLeftovers{nodeIDs: map[string]string{}}
	t.Cleanup(func() { l.remove(t) })
	return l
}

func (l *engineLeftovers) node(id, dockerHost string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodeIDs[id] = dockerHost
}

func (l *engineLeftovers) volume(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.volumes = append(l.volumes, name)
}

func (l *engineLeftovers) image(ref string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.images = append(l.images, ref)
}

func (l *engineLeftovers) remove(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, host := range l.nodeIDs {
		filter := "label=raftswarm.node.id=" + id
		if out, err := docker(host, "ps", "-aq", "--filter", filter); err == nil && strings.TrimSpace(out) != "" {
			if _, err := docker(host, append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if out, err := docker(host, "network", "ls", "-q", "--filter", filter); err == nil && strings.TrimSpace(out) != "" {
			if _, err := docker(host, append([]string{"network", "rm"}, strings.Fields(out)...)...); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if len(id) >= 12 {
			// The data plane's per-node table (left in place when a daemon
			// stops, so running tasks keep their names).
			// And the routing mesh's, which a daemon killed with -9 leaves.
			for _, table := range []string{"raftswarm_" + id[:12], "raftswarm_mesh_" + id[:12]} {
				if exec.Command("nft", "list", "table", "ip", table).Run() == nil {
					if out, err := exec.Command("nft", "delete", "table", "ip", table).CombinedOutput(); err != nil {
						t.Errorf("cleanup: nft delete table ip %s: %v: %s", table, err, out)
					}
				}
			}
		}
	}
	for _, v := range l.volumes {
		if _, err := docker("", "volume", "inspect", v); err == nil {
			if _, err := docker("", "volume", "rm", "-f", v); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	for _, img := range l.images {
		if _, err := docker("", "image", "inspect", img); err == nil {
			if _, err := docker("", "rmi", "-f", img); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

// docker runs the docker CLI against host ("" = the machine's engine) and
// returns its stdout.
func docker(host string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	if host != "" {
		args = append([]string{"-H", host}, args...)
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// nodeIDs maps the cluster's hostnames to node IDs, as node ls shows them,
// and registers every ID (and its engine) with leftovers.
func (c *cluster) nodeIDs(d *daemon, leftovers *engineLeftovers) map[string]string {
	c.t.Helper()
	ids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(c.ok(d, "node", "ls", "--format", "{{.ID}} {{.Hostname}}")), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			c.t.Fatalf("unexpected node ls line %q", line)
		}
		ids[f[1]] = f[0]
		host := ""
		if n, ok := c.daemons[f[1]]; ok {
			for i, a := range n.extra {
				if a == "--docker-host" && i+1 < len(n.extra) {
					host = n.extra[i+1]
				}
			}
		}
		leftovers.node(f[0], host)
	}
	return ids
}

// taskContainer is a running container of a service's task.
type taskContainer struct {
	id     string // container ID
	nodeID string
	host   string // its Docker engine ("" = the machine's)
}

// containers lists the running task containers of service on the given
// nodes (node ID -> Docker host). Only containers of these nodes count:
// other tests may run services of the same name on the same engine.
func containers(service string, nodes map[string]string) ([]taskContainer, error) {
	hosts := map[string]bool{}
	for _, h := range nodes {
		hosts[h] = true
	}
	var out []taskContainer
	for h := range hosts {
		lines, err := docker(h, "ps", "--filter", "label=raftswarm.service.name="+service, "--filter", "status=running",
			"--format", `{{.ID}} {{.Label "raftswarm.node.id"}}`)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(strings.TrimSpace(lines), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			if host, ok := nodes[f[1]]; ok && host == h {
				out = append(out, taskContainer{id: f[0], nodeID: f[1], host: h})
			}
		}
	}
	return out, nil
}

// waitContainers waits until service has exactly n running containers on
// the nodes and returns them.
func (c *cluster) waitContainers(service string, nodes map[string]string, n int, timeout time.Duration) []taskContainer {
	c.t.Helper()
	var got []taskContainer
	c.eventually(timeout, fmt.Sprintf("%d running containers of %s", n, service), func() error {
		var err error
		if got, err = containers(service, nodes); err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d running", len(got))
		}
		return nil
	})
	return got
}

// probe runs the python image's probe command in a container: `probe
// resolve NAME`, `probe tcp HOST PORT [TIMEOUT]`, `probe redis HOST`,
// `probe http URL`. Each check is bounded inside the container; the docker
// exec itself is bounded by dockerTimeout.
func probe(tc taskContainer, args ...string) (string, error) {
	out, err := docker(tc.host, append([]string{"exec", tc.id, "probe"}, args...)...)
	return strings.TrimSpace(out), err
}

// resolve returns the addresses name resolves to in the container (none
// and no error when it does not resolve).
func resolve(tc taskContainer, name string) ([]string, error) {
	out, err := probe(tc, "resolve", name)
	if strings.HasPrefix(out, "unresolved") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return strings.Fields(out), nil
}

// randomSuffix is 6 hex characters: names of stacks and the like that
// must not clash with another test's on the shared engine.
func randomSuffix(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// copyDir copies the regular files of src (not recursively) into a new
// temporary directory and returns it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// repoDir is the repository root (the e2e tests run in e2e/).
func repoDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "deploy", "examples")); err != nil {
		t.Fatalf("not run from the repository's e2e directory: %v", err)
	}
	return dir
}

// errNotYet marks a poll that should go on.
var errNotYet = errors.New("not yet")
