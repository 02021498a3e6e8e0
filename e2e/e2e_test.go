// Package e2e runs the built managerd, workerd and swarmctl binaries as
// separate processes on loopback addresses and drives them only through
// swarmctl, the way an operator would.
//
// It needs RAFTSWARM_BIN, the directory holding the three binaries
// (`make test` sets it to bin/ after `make build`); without it the tests
// skip. Daemons use 127.0.0.21 and up with random high ports, so they do
// not clash with a running `make demo` (127.0.0.11-15:2377).
//
// The tests of services with real containers (containers_test.go,
// discovery_test.go, stack_test.go; helpers in docker_test.go) also need
// root and a Docker engine, and use the Debian-built images of
// deploy/images (built on demand, cached) and a second engine from
// internal/testdocker; they skip when the CLI lacks the feature they test.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	cmdTimeout = 30 * time.Second // each swarmctl invocation
	firstIP    = 21               // daemons live on 127.0.0.21, .22, ...
)

// binDir returns RAFTSWARM_BIN after checking it holds the binaries, or
// skips the test.
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RAFTSWARM_BIN")
	if dir == "" {
		t.Skip("RAFTSWARM_BIN is not set: run 'make test', or 'make build' and RAFTSWARM_BIN=$PWD/bin go test ./e2e/")
	}
	for _, b := range []string{"managerd", "workerd", "swarmctl"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Skipf("RAFTSWARM_BIN=%s has no executable %s: run 'make build'", dir, b)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// cluster is a set of daemons started by one test.
type cluster struct {
	t       *testing.T
	bin     string
	sockDir string
	daemons map[string]*daemon
	nextIP  int
	ipBase  string // "127.0.0." unless a test sets its own range
}

// daemon is one managerd or workerd process.
type daemon struct {
	name     string
	binary   string // managerd or workerd
	stateDir string
	socket   string
	addr     string // host:port it advertises and listens on
	logPath  string
	extra    []string // more daemon flags (--ingress-addr, --docker-host...)

	cmd    *exec.Cmd
	cancel context.CancelFunc
	exited chan struct{}
}

func newCluster(t *testing.T) *cluster {
	bin := binDir(t)
	// The probe also tells us the platform routes all of 127/8 to loopback.
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", firstIP)); err != nil {
		t.Skipf("cannot listen on 127.0.0.%d (needs Linux-style 127/8 loopback): %v", firstIP, err)
	} else {
		l.Close()
	}
	// Unix socket paths must stay under 108 bytes: t.TempDir() paths can be
	// long, so sockets go in a short directory of their own.
	sockDir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: bin, sockDir: sockDir, daemons: map[string]*daemon{}, nextIP: firstIP, ipBase: "127.0.0."}
	t.Cleanup(func() {
		for _, d := range c.daemons {
			d.stop()
		}
		if t.Failed() {
			for _, d := range c.daemons {
				d.dumpLog(t)
			}
		}
		if err := unmountBelow(sockDir); err != nil {
			t.Errorf("unmounting what the daemons left in %s: %v", sockDir, err)
		}
		os.RemoveAll(sockDir)
	})
	return c
}

// daemonDir makes the directory of a daemon's state and log. It lives
// under the cluster's own directory, removed by the cluster's cleanup after
// the logs of a failed test are printed (a t.TempDir, registered later, is
// removed first).
func (c *cluster) daemonDir(name string) string {
	c.t.Helper()
	dir := filepath.Join(c.sockDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	return dir
}

// freePort finds a port currently free on ip.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// add starts a new, inactive daemon on the next loopback address.
func (c *cluster) add(name, binary string) *daemon {
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
	}
	c.daemons[name] = d
	c.start(d)
	return d
}

// start runs d's binary on its state dir and waits until its socket answers.
func (c *cluster) start(d *daemon) {
	c.t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--state-dir", d.stateDir, "--socket", d.socket, "--hostname", d.name,
		"--heartbeat-period", "250ms", "--log-level", "debug"}, d.extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, d.binary), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// stop is a clean shutdown (SIGTERM), so that the daemon removes what
	// it set up on the host (its routing-mesh nftables table above all);
	// one that does not exit within WaitDelay is killed.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		c.t.Fatalf("start %s: %v", d.name, err)
	}
	d.cmd, d.cancel, d.exited = cmd, cancel, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}(d.exited)
	// An inactive daemon answers node ls with an error about not being in
	// a swarm; what matters here is that it answers at all.
	c.eventually(20*time.Second, d.name+" answering on its socket", func() error {
		select {
		case <-d.exited:
			return errStop{fmt.Errorf("%s exited: %s", d.name, tail(d.logPath, 5))}
		default:
		}
		r := c.swarmctl(d, "node", "ls")
		if strings.Contains(r.stderr, "cannot reach the raftswarm daemon") || strings.Contains(r.stderr, "did not answer") {
			return errors.New(r.stderr)
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to go.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", d.name, err)
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit after SIGKILL", d.name)
	}
	d.cancel()
}

func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	d.cancel() // SIGTERM (cmd.Cancel), SIGKILL after WaitDelay
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
	}
}

func (d *daemon) dumpLog(t *testing.T) {
	t.Logf("---- %s (%s) log, last lines:\n%s", d.name, d.addr, tail(d.logPath, 40))
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// result is the outcome of one swarmctl run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("swarmctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// swarmctl runs swarmctl against d's socket.
func (c *cluster) swarmctl(d *daemon, args ...string) result {
	return c.swarmctlIn(d, "", args...)
}

// swarmctlIn runs swarmctl against d's socket with stdin as its input.
func (c *cluster) swarmctlIn(d *daemon, stdin string, args ...string) result {
	return c.swarmctlWith(d, stdin, cmdTimeout, args...)
}

// swarmctlTimeout runs swarmctl against d's socket, killing it after timeout.
func (c *cluster) swarmctlTimeout(d *daemon, timeout time.Duration, args ...string) result {
	return c.swarmctlWith(d, "", timeout, args...)
}

func (c *cluster) swarmctlWith(d *daemon, stdin string, timeout time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"-H", "unix://" + d.socket}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "swarmctl"), full...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "SWARMCTL_HOST=") // only -H counts
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code = -1
		r.stderr += err.Error()
	}
	if ctx.Err() != nil {
		r.code = -1
		r.stderr += fmt.Sprintf(" (killed after %s)", timeout)
	}
	return r
}

// ok runs swarmctl and fails the test unless it succeeds.
func (c *cluster) ok(d *daemon, args ...string) string {
	c.t.Helper()
	r := c.swarmctl(d, args...)
	if r.code != 0 {
		c.t.Fatalf("on %s: %s", d.name, r)
	}
	return r.stdout
}

// fails runs swarmctl, expecting exit status 1 with exactly one line on
// stderr, "Error: ..." containing want.
func (c *cluster) fails(d *daemon, want string, args ...string) {
	c.t.Helper()
	r := c.swarmctl(d, args...)
	msg := strings.TrimRight(r.stderr, "\n")
	switch {
	case r.code != 1:
		c.t.Errorf("on %s, want exit 1: %s", d.name, r)
	case !strings.HasPrefix(msg, "Error: ") || strings.Contains(msg, "\n"):
		c.t.Errorf("on %s, want one 'Error: ...' line on stderr: %s", d.name, r)
	case !strings.Contains(strings.ToLower(msg), strings.ToLower(want)):
		c.t.Errorf("on %s, want the error to mention %q: %s", d.name, want, r)
	default:
		c.t.Logf("swarmctl %s -> %s", strings.Join(args, " "), msg)
	}
}

// errStop ends an eventually loop at once.
type errStop struct{ error }

// eventually polls fn every 200 ms until it returns nil, failing the test
// with fn's last error once timeout has passed.
func (c *cluster) eventually(timeout time.Duration, what string, fn func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		var stop errStop
		if errors.As(err, &stop) {
			c.t.Fatalf("waiting for %s: %v", what, stop.error)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: not done within %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeRow is one line of `node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'`.
type nodeRow struct{ host, status, manager string }

func (c *cluster) nodes(d *daemon) (map[string]nodeRow, error) {
	r := c.swarmctl(d, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
	if r.code != 0 {
		return nil, errors.New(r.String())
	}
	rows := map[string]nodeRow{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("unexpected node ls line %q", line)
		}
		row := nodeRow{host: f[0], status: f[1]}
		if len(f) > 2 {
			row.manager = f[2]
		}
		rows[row.host] = row
	}
	return rows, nil
}

// expectNodes waits until node ls on d lists exactly want (hostname ->
// manager status, "" for workers), all Ready, with a single leader.
func (c *cluster) expectNodes(d *daemon, timeout time.Duration, want map[string]string) {
	c.t.Helper()
	c.eventually(timeout, fmt.Sprintf("node ls on %s to show %v", d.name, want), func() error {
		rows, err := c.nodes(d)
		if err != nil {
			return err
		}
		if len(rows) != len(want) {
			return fmt.Errorf("got %d nodes %v, want %d", len(rows), rows, len(want))
		}
		leaders := 0
		for host, ms := range want {
			row, found := rows[host]
			if !found {
				return fmt.Errorf("%s missing from %v", host, rows)
			}
			if row.status != "Ready" {
				return fmt.Errorf("%s is %s, want Ready", host, row.status)
			}
			if row.manager == "Leader" {
				leaders++
			}
			if ms == "Leader" || ms == "Reachable" {
				if row.manager != "Leader" && row.manager != "Reachable" {
					return fmt.Errorf("%s has manager status %q, want Leader or Reachable", host, row.manager)
				}
			} else if row.manager != ms {
				return fmt.Errorf("%s has manager status %q, want %q", host, row.manager, ms)
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders in %v, want 1", leaders, rows)
		}
		return nil
	})
}

func (c *cluster) leader(d *daemon) string {
	c.t.Helper()
	var name string
	c.eventually(20*time.Second, "a leader", func() error {
		rows, err := c.nodes(d)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.manager == "Leader" {
				name = r.host
				return nil
			}
		}
		return fmt.Errorf("no leader in %v", rows)
	})
	return name
}

func (c *cluster) joinToken(d *daemon, role string, rotate bool) string {
	c.t.Helper()
	args := []string{"join-token", "-q", role}
	if rotate {
		args = append(args, "--rotate")
	}
	tok := strings.TrimSpace(c.ok(d, args...))
	if !strings.HasPrefix(tok, "SWMTKN-1-") {
		c.t.Fatalf("join-token %s: unexpected token %q", role, tok)
	}
	return tok
}

func (c *cluster) join(d, via *daemon, token string) {
	c.t.Helper()
	c.ok(d, "join", "--token", token, "--advertise-addr", d.addr, via.addr)
}

// TestCluster walks one cluster through its life: formation, bad input,
// losing the leader, a manager restart and a token rotation.
func TestCluster(t *testing.T) {
	c := newCluster(t)
	m1 := c.add("m1", "managerd")
	m2 := c.add("m2", "managerd")
	m3 := c.add("m3", "managerd")
	w1 := c.add("w1", "workerd")
	w2 := c.add("w2", "workerd")

	// ---- formation
	out := c.ok(m1, "init", "--advertise-addr", m1.addr)
	if !strings.Contains(out, "Swarm initialized") {
		t.Fatalf("init output: %q", out)
	}
	managerTok := c.joinToken(m1, "manager", false)
	workerTok := c.joinToken(m1, "worker", false)
	if managerTok == workerTok {
		t.Fatal("manager and worker tokens are equal")
	}
	c.join(m2, m1, managerTok)
	c.join(m3, m1, managerTok)
	c.join(w1, m1, workerTok)
	c.join(w2, m1, workerTok)

	all := map[string]string{"m1": "Reachable", "m2": "Reachable", "m3": "Reachable", "w1": "", "w2": ""}
	for _, d := range []*daemon{m1, m2, m3} { // every manager sees the same
		c.expectNodes(d, 30*time.Second, all)
	}
	if got := c.ok(m1, "node", "ls"); !strings.Contains(got, "MANAGER STATUS") || strings.Count(got, "\n") != 6 {
		t.Errorf("node ls table:\n%s", got)
	}
	got := c.ok(m2, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if want := "m1 Ready\nm2 Ready\nm3 Ready\nw1 Ready\nw2 Ready\n"; got != want {
		t.Errorf("node ls --format: got %q, want %q", got, want)
	}

	// ---- bad input: one "Error: ..." line and exit status 1
	w3 := c.add("w3", "workerd") // a fresh daemon to try bad joins from
	c.fails(w3, "invalid join token", "join", "--token", "not-a-token", m1.addr)
	// The right shape and the right CA digest, but a secret no manager issued.
	forged := workerTok[:strings.LastIndex(workerTok, "-")+1] + strings.Repeat("0", 25)
	if forged == workerTok {
		t.Fatal("forged token equals the real one")
	}
	c.fails(w3, "invalid join token", "join", "--token", forged, "--advertise-addr", w3.addr, m1.addr)
	// A digest of some other CA: the node must refuse the manager's root CA.
	parts := strings.Split(workerTok, "-")
	parts[2] = strings.Repeat("1", len(parts[2]))
	c.fails(w3, "digest", "join", "--token", strings.Join(parts, "-"), "--advertise-addr", w3.addr, m1.addr)
	c.fails(m1, "not found", "node", "inspect", "no-such-node")
	c.fails(m1, "invalid availability", "node", "update", "--availability", "sideways", "w1")
	c.fails(m2, "already part of a swarm", "init", "--advertise-addr", m2.addr)
	c.fails(w1, "already part of a swarm", "join", "--token", workerTok, "--advertise-addr", w1.addr, m1.addr)
	// None of it may have changed the cluster.
	c.expectNodes(m1, 10*time.Second, all)
	w3.stop()

	// ---- the leader dies
	leaderName := c.leader(m1)
	leader := c.daemons[leaderName]
	var survivors []*daemon
	for _, d := range []*daemon{m1, m2, m3} {
		if d != leader {
			survivors = append(survivors, d)
		}
	}
	t.Logf("killing the leader %s", leaderName)
	leader.kill(t)
	c.eventually(30*time.Second, "a write through "+survivors[0].name+" after the leader died", func() error {
		r := c.swarmctl(survivors[0], "node", "update", "--label-add", "k=v", "w1")
		if r.code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	inspect := c.ok(survivors[1], "node", "inspect", "w1")
	if !strings.Contains(inspect, `"k"`) || !strings.Contains(inspect, `"v"`) {
		t.Errorf("label k=v not visible on %s:\n%s", survivors[1].name, inspect)
	}
	c.eventually(30*time.Second, leaderName+" shown as Unreachable", func() error {
		rows, err := c.nodes(survivors[1])
		if err != nil {
			return err
		}
		if r := rows[leaderName]; r.manager != "Unreachable" {
			return fmt.Errorf("%s is %+v, want manager status Unreachable", leaderName, r)
		}
		return nil
	})
	newLeader := c.leader(survivors[1])
	if newLeader == leaderName {
		t.Fatalf("%s still shown as leader after it was killed", leaderName)
	}

	// ---- the old leader comes back on its state dir and rejoins
	c.start(leader)
	c.eventually(30*time.Second, leaderName+" back as Reachable", func() error {
		rows, err := c.nodes(survivors[0])
		if err != nil {
			return err
		}
		if r := rows[leaderName]; r.status != "Ready" || r.manager != "Reachable" {
			return fmt.Errorf("%s is %+v, want Ready/Reachable", leaderName, r)
		}
		return nil
	})
	c.expectNodes(leader, 30*time.Second, all)
	t.Logf("after %s restarted:\n%s", leaderName, c.ok(leader, "node", "ls"))

	// ---- rotating the worker token retires the old one
	newTok := c.joinToken(leader, "worker", true)
	if newTok == workerTok {
		t.Fatal("join-token --rotate returned the old token")
	}
	if again := c.joinToken(m2, "worker", false); again != newTok {
		t.Errorf("after rotation m2 shows %q, want %q", again, newTok)
	}
	w4 := c.add("w4", "workerd")
	c.fails(w4, "invalid join token", "join", "--token", workerTok, "--advertise-addr", w4.addr, m1.addr)
	c.join(w4, m1, newTok)
	all["w4"] = ""
	c.expectNodes(m3, 30*time.Second, all)
}
