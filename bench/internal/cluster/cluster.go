// Package cluster starts managerd processes for the benchmarks under
// bench/: it builds the binaries, runs each daemon in its own process
// group on its own loopback address, and kills everything on Close.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Env is a temporary directory with freshly built binaries and the
// daemons started in it.
type Env struct {
	Dir     string
	BinDir  string
	mu      sync.Mutex
	daemons []*Daemon
}

// NewEnv creates a temp dir and builds managerd and swarmctl into it
// (or uses binDir when it is not empty).
func NewEnv(binDir string) (*Env, error) {
	dir, err := os.MkdirTemp("", "rsw-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, BinDir: binDir}
	if binDir == "" {
		e.BinDir = filepath.Join(dir, "bin")
		for _, name := range []string{"managerd", "swarmctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(e.BinDir, name), "./cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("build %s (run from the module root): %w", name, err)
			}
		}
	}
	return e, nil
}

// Daemon is one managerd process.
type Daemon struct {
	Name     string
	StateDir string
	Socket   string
	Addr     string // advertise host:port
	Args     []string
	LogPath  string
	// Binary and Env override the managerd binary and add environment
	// variables (used to run a profiling build of the same code).
	Binary string
	Env    []string
	// MaxRecvMsgSize bounds the replies the daemon's client accepts
	// (gRPC's 4 MiB when 0); a page of 10,000 tasks needs more.
	MaxRecvMsgSize int

	env  *Env
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
}

// Daemon declares a managerd (not started).
func (e *Env) Daemon(name, addr string, extra ...string) *Daemon {
	d := &Daemon{
		Name: name, Addr: addr, env: e,
		StateDir: filepath.Join(e.Dir, name),
		Socket:   filepath.Join(e.Dir, name+".sock"),
		LogPath:  filepath.Join(e.Dir, name+".log"),
		Args:     extra,
	}
	e.mu.Lock()
	e.daemons = append(e.daemons, d)
	e.mu.Unlock()
	return d
}

// Start launches the process and waits until its socket answers.
func (d *Daemon) Start() error {
	log, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"--state-dir", d.StateDir, "--socket", d.Socket, "--hostname", d.Name, "--log-level", "warn"}, d.Args...)
	bin := d.Binary
	if bin == "" {
		bin = filepath.Join(d.env.BinDir, "managerd")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if d.MaxRecvMsgSize > 0 {
			opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(d.MaxRecvMsgSize)))
		}
		c, err := grpc.NewClient("unix://"+d.Socket, opts...)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = swarmpb.NewLocalClient(c).Info(ctx, &swarmpb.InfoRequest{})
			cancel()
			if err == nil {
				d.mu.Lock()
				d.conn = c
				d.mu.Unlock()
				return nil
			}
			c.Close()
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited at start; see %s", d.Name, d.LogPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on %s: %v", d.Name, d.Socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the process ID, 0 when not running.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd, done, conn := d.cmd, d.done, d.conn
	d.cmd, d.conn = nil, nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	if conn != nil {
		conn.Close()
	}
}

// Terminate sends SIGTERM (a clean shutdown) and waits up to timeout
// before killing.
func (d *Daemon) Terminate(timeout time.Duration) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(timeout):
	}
	d.Kill()
}

// KillNoWait sends SIGKILL and returns at once; call Kill later to reap.
func (d *Daemon) KillNoWait() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("not running")
	}
	return syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
}

// Conn is the gRPC connection to the daemon's unix socket.
func (d *Daemon) Conn() *grpc.ClientConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// Control is a Control client over the daemon's unix socket.
func (d *Daemon) Control() swarmpb.ControlClient { return swarmpb.NewControlClient(d.Conn()) }

// Local is a Local client over the daemon's unix socket.
func (d *Daemon) Local() swarmpb.LocalClient { return swarmpb.NewLocalClient(d.Conn()) }

// Swarmctl runs swarmctl against the daemon and returns its stdout.
func (d *Daemon) Swarmctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(d.env.BinDir, "swarmctl"), append([]string{"-H", "unix://" + d.Socket}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("swarmctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Close kills every daemon and removes the temp dir.
func (e *Env) Close() {
	e.mu.Lock()
	ds := e.daemons
	e.mu.Unlock()
	// A clean shutdown, so that each daemon removes its routing-mesh
	// nftables table; killed only if it does not exit in time.
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.Terminate(10 * time.Second)
		}()
	}
	wg.Wait()
	os.RemoveAll(e.Dir)
}

// Stats summarises durations.
type Stats struct {
	N                        int
	Min, P50, P99, Max, Mean time.Duration
}

// Summarize computes order statistics (nearest-rank percentiles).
func Summarize(ds []time.Duration) Stats {
	if len(ds) == 0 {
		return Stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(s) {
			i = len(s) - 1
		}
		return s[i]
	}
	st := Stats{N: len(s), Min: s[0], Max: s[len(s)-1], Mean: sum / time.Duration(len(s)), P99: rank(0.99)}
	// The median of an even count is the mean of the two middle values.
	if len(s)%2 == 1 {
		st.P50 = s[len(s)/2]
	} else {
		st.P50 = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return st
}
