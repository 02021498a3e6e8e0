package testdocker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stateRoot holds one directory per engine. It is short on purpose: the
// engine's unix sockets live below it and a socket path must stay under
// 108 bytes.
const stateRoot = "/tmp/rstd"

// namePrefix starts the name of every engine, its bridge and its directory.
const namePrefix = "rstd"

const (
	startTimeout = 60 * time.Second // dockerd answering (a loaded machine is slow)
	stopTimeout  = 20 * time.Second // dockerd exiting after SIGTERM
	cmdTimeout   = 2 * time.Minute  // one docker CLI call
	loadTimeout  = 5 * time.Minute  // docker save | docker load of a large image
)

// Engine is a running second dockerd.
type Engine struct {
	// Name is unique among engines on the machine; it is also the name of
	// the engine's bridge interface and of its directory.
	Name string
	// Host is the engine's Docker URL, unix:///tmp/rstd/NAME/docker.sock:
	// what DOCKER_HOST, `docker -H` and the node daemons' --docker-host take.
	Host string
	// Bridge is the /24 of the engine's default bridge; Gateway, its first
	// address, is the bridge's own.
	Bridge  *net.IPNet
	Gateway net.IP
	// Pool is the /16 the engine takes the subnets of new networks from.
	Pool *net.IPNet

	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// Start runs a second dockerd for the test and waits until it answers; the
// test's cleanup stops it and removes everything it made. It skips the test
// when the machine cannot run one (not root, no dockerd, docker or ip).
func Start(t testing.TB) *Engine {
	t.Helper()
	if err := Usable(); err != nil {
		t.Skipf("no second Docker engine: %v", err)
	}
	if err := sweepStale(); err != nil {
		t.Logf("testdocker: removing engines left by killed tests: %v", err)
	}
	e, err := create()
	if err != nil {
		t.Fatalf("testdocker: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testdocker: %s log, last lines:\n%s", e.Name, tail(e.logPath, 30))
		}
		if err := e.Stop(); err != nil {
			t.Errorf("testdocker: stopping %s: %v", e.Name, err)
		}
	})
	if err := e.start(); err != nil {
		t.Fatalf("testdocker: %v", err)
	}
	return e
}

// Usable says why this machine cannot run a second engine, or nil.
func Usable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (dockerd, bridges)")
	}
	for _, bin := range []string{"dockerd", "docker", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("the machine's Docker engine does not answer: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// create picks a name and a free /16, makes the engine's directory and
// bridge. Concurrent test processes serialise on a lock file, so two never
// pick the same addresses.
func create() (*Engine, error) {
	if err := os.MkdirAll(stateRoot, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(stateRoot, ".lock"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer unlock()

	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := namePrefix + hex.EncodeToString(b[:]) // 10 chars: a valid interface name
	pool, err := freePool()
	if err != nil {
		return nil, err
	}
	gw := make(net.IP, 4)
	copy(gw, pool.IP.To4())
	gw[3] = 1
	e := &Engine{
		Name:    name,
		Bridge:  &net.IPNet{IP: pool.IP.To4(), Mask: net.CIDRMask(24, 32)},
		Gateway: gw,
		Pool:    pool,
		dir:     filepath.Join(stateRoot, name),
	}
	e.Host = "unix://" + filepath.Join(e.dir, "docker.sock")
	e.logPath = filepath.Join(e.dir, "dockerd.log")
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	files := map[string]string{
		"owner":       strconv.Itoa(os.Getpid()), // for sweepStale
		"pool":        pool.String(),
		"daemon.json": "{}\n", // an empty --config-file: not /etc/docker/daemon.json
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(e.dir, f), []byte(content), 0o600); err != nil {
			os.RemoveAll(e.dir)
			return nil, err
		}
	}
	for _, args := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("%s/24", gw), "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := run("ip", args...); err != nil {
			_, _ = run("ip", "link", "del", name)
			os.RemoveAll(e.dir)
			return nil, fmt.Errorf("creating bridge %s: ip %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	return e, nil
}

// start runs dockerd and waits until it answers.
func (e *Engine) start() error {
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	e.cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "exec"),
		"--pidfile", filepath.Join(e.dir, "docker.pid"),
		"-H", e.Host,
		"--config-file", filepath.Join(e.dir, "daemon.json"),
		"--bridge", e.Name, // never --bridge=none: see the package doc
		"--iptables=false",
		"--default-address-pool", "base="+e.Pool.String()+",size=24",
	)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// Its own process group: dockerd starts a containerd of its own, and
	// a last-resort SIGKILL must reach both.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting dockerd: %w", err)
	}
	e.exited = make(chan struct{})
	go func() {
		_ = e.cmd.Wait()
		logf.Close()
		close(e.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-e.exited:
			return fmt.Errorf("dockerd %s exited at start: %s", e.Name, tail(e.logPath, 10))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, "docker", "-H", e.Host, "version", "--format", "{{.Server.Version}}").Run()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd %s did not answer within %s: %s", e.Name, startTimeout, tail(e.logPath, 10))
		}
		select {
		case <-e.exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Docker runs the docker CLI against the engine and returns its stdout.
func (e *Engine) Docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", e.Host}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker -H %s %s: %v: %s", e.Host, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// MustDocker is Docker that fails the test on an error.
func (e *Engine) MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// LoadImage copies ref from the machine's engine into e, as a node would
// get an image without a registry: docker save | docker -H ... load.
func (e *Engine) LoadImage(t testing.TB, ref string) {
	t.Helper()
	if err := CopyImage("", e.Host, ref); err != nil {
		t.Fatalf("testdocker: %v", err)
	}
}

// CopyImage runs `docker save ref` against the engine at from and `docker
// load` against the one at to ("" is the machine's engine).
func CopyImage(from, to, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	save := exec.CommandContext(ctx, "docker", hostArgs(from, "save", ref)...)
	load := exec.CommandContext(ctx, "docker", hostArgs(to, "load", "-q")...)
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	var saveErr, loadOut bytes.Buffer
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := save.Start(); err != nil {
		return err
	}
	if err := load.Run(); err != nil {
		_ = save.Process.Kill()
		_ = save.Wait()
		return fmt.Errorf("docker load of %s: %v: %s", ref, err, strings.TrimSpace(loadOut.String()))
	}
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save %s: %v: %s", ref, err, strings.TrimSpace(saveErr.String()))
	}
	return nil
}

func hostArgs(host string, args ...string) []string {
	if host == "" {
		return args
	}
	return append([]string{"-H", host}, args...)
}

// Stop removes everything the engine made: its containers, networks and
// volumes, the dockerd process and its containerd, mounts below its
// directory, its bridges and the directory. It goes on after an error and
// returns the first. The test's cleanup calls it; calling it earlier (to
// take a node's engine away) is fine, later calls do nothing.
func (e *Engine) Stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.stop() })
	return e.stopErr
}

func (e *Engine) stop() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if e.cmd != nil {
		select {
		case <-e.exited:
		default:
			if ids, err := e.Docker("ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
				_, err = e.Docker(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
				keep(err)
			}
			_, err := e.Docker("network", "prune", "-f")
			keep(err)
			_, err = e.Docker("volume", "prune", "-f")
			keep(err)
		}
		keep(terminate(e.cmd.Process.Pid, e.exited))
	}
	keep(cleanupDir(e.dir, e.Name, e.Pool))
	return first
}

// terminate stops dockerd with SIGTERM (it stops its containerd), then
// kills its whole process group if it lingers.
func terminate(pid int, exited <-chan struct{}) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		_ = syscall.Kill(-pid, syscall.SIGKILL) // a containerd left behind
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-exited:
		return fmt.Errorf("dockerd (pid %d) did not stop within %s of SIGTERM; killed", pid, stopTimeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("dockerd (pid %d) survived SIGKILL", pid)
	}
}

// cleanupDir unmounts what is mounted below dir, deletes the bridge name
// and any other interface with an address in pool (networks the engine
// made), and removes dir.
func cleanupDir(dir, name string, pool *net.IPNet) error {
	var first error
	for _, m := range mountsBelow(dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && first == nil {
			first = fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	links := []string{name}
	if pool != nil {
		links = append(links, interfacesIn(pool)...)
	}
	for _, l := range links {
		if _, err := net.InterfaceByName(l); err != nil {
			continue
		}
		if out, err := run("ip", "link", "del", l); err != nil && first == nil {
			first = fmt.Errorf("ip link del %s: %v: %s", l, err, out)
		}
	}
	if err := os.RemoveAll(dir); err != nil && first == nil {
		first = err
	}
	return first
}

// sweepStale removes the engines of test processes that no longer run.
func sweepStale() error {
	entries, err := os.ReadDir(stateRoot)
	if err != nil {
		return nil // nothing started yet
	}
	unlock, err := lockFile(filepath.Join(stateRoot, ".lock"), 30*time.Second)
	if err != nil {
		return err
	}
	defer unlock()
	var first error
	for _, ent := range entries {
		if !ent.IsDir() || !strings.HasPrefix(ent.Name(), namePrefix) {
			continue
		}
		dir := filepath.Join(stateRoot, ent.Name())
		if pid := readPid(filepath.Join(dir, "owner")); pid > 0 && alive(pid) {
			continue
		}
		if pid := readPid(filepath.Join(dir, "docker.pid")); pid > 0 && alive(pid) {
			done := make(chan struct{})
			go func() { // not our child: poll until it is gone
				defer close(done)
				for i := 0; i < 200 && alive(pid); i++ {
					time.Sleep(100 * time.Millisecond)
				}
			}()
			_ = terminate(pid, done)
		}
		var pool *net.IPNet
		if b, err := os.ReadFile(filepath.Join(dir, "pool")); err == nil {
			_, pool, _ = net.ParseCIDR(strings.TrimSpace(string(b)))
		}
		if err := cleanupDir(dir, ent.Name(), pool); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// freePool returns a 10.X.0.0/16 (X in 200..249) that no address or route
// of the host overlaps, so neither the bridge nor the engine's networks
// clash with anything the host (or the first engine, or another test's
// engine) uses.
func freePool() (*net.IPNet, error) {
	used, err := hostPrefixes()
	if err != nil {
		return nil, err
	}
	var xs []int
	for x := 200; x < 250; x++ {
		xs = append(xs, x)
	}
	// Random order, so that concurrent machines' tests rarely collide on
	// routes added later.
	for i := len(xs) - 1; i > 0; i-- {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		j := int(n.Int64())
		xs[i], xs[j] = xs[j], xs[i]
	}
	for _, x := range xs {
		cand := &net.IPNet{IP: net.IPv4(10, byte(x), 0, 0).To4(), Mask: net.CIDRMask(16, 32)}
		clash := false
		for _, u := range used {
			if u.Contains(cand.IP) || cand.Contains(u.IP) {
				clash = true
				break
			}
		}
		if !clash {
			return cand, nil
		}
	}
	return nil, errors.New("no free 10.200-249.0.0/16 for a second engine: every one overlaps a route or address of the host")
}

// hostPrefixes lists the IPv4 prefixes of the host's routes (all tables;
// the default route excluded) and interface addresses.
func hostPrefixes() ([]*net.IPNet, error) {
	var out []*net.IPNet
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			out = append(out, n)
		}
	}
	routes, err := run("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, fmt.Errorf("ip route: %v: %s", err, routes)
	}
	sc := bufio.NewScanner(strings.NewReader(routes))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unreachable" || dst == "blackhole" || dst == "prohibit" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// interfacesIn names the interfaces with an IPv4 address inside pool.
func interfacesIn(pool *net.IPNet) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var names []string
	for _, i := range ifs {
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && pool.Contains(n.IP) {
				names = append(names, i.Name)
				break
			}
		}
	}
	return names
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lockFile takes an exclusive flock on path, waiting at most timeout.
func lockFile(path string, timeout time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// run runs a command with a timeout and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
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
