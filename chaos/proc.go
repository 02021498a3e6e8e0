package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/internal/clock"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Daemon is one managerd or workerd process running in its host's
// namespace. Its unix socket is a file, so clients in the root namespace
// reach it whatever the namespace's network filters say.
type Daemon struct {
	Host     *Host
	Binary   string // path of managerd or workerd
	StateDir string
	Socket   string
	LogPath  string
	Manager  bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	stops  []window // SIGSTOP to SIGCONT, for reading slow calls

	conn *grpc.ClientConn
}

// Addr is the address the daemon advertises and listens on.
func (d *Daemon) Addr() string { return d.Host.IP + ":2377" }

// Start runs the daemon in its namespace and waits until its socket answers.
func (d *Daemon) Start(ctx context.Context) error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== %s start\n", time.Now().Format(time.RFC3339Nano))
	// `ip netns exec` enters the namespace and execs the binary, so the pid
	// is the daemon's own and signals reach it directly.
	cmd := exec.Command("ip", "netns", "exec", d.Host.NS, d.Binary,
		"--state-dir", d.StateDir, "--socket", d.Socket, "--hostname", d.Host.Name,
		"--docker-host", "unix://"+filepath.Join(filepath.Dir(d.StateDir), "no-docker.sock"),
		"--heartbeat-period", "500ms", "--log-level", "info", "--engine", "fake")
	cmd.Env = append(os.Environ(), clock.EnvFile+"="+d.clockFile())
	cmd.Stdout, cmd.Stderr = logf, logf
	// A daemon must not outlive a bed that died without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", d.Host.Name, err)
	}
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.exited, d.paused = cmd, exited, false
	d.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	if d.conn == nil {
		conn, err := grpc.NewClient("unix:"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		d.conn = conn
	}
	return poll(ctx, 30*time.Second, func() error {
		select {
		case <-exited:
			return stop(fmt.Errorf("%s exited: %s", d.Host.Name, tail(d.LogPath, 5)))
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := d.Local().Info(cctx, &swarmpb.InfoRequest{})
		return err
	})
}

// clockFile holds the daemon's wall-clock offset (internal/clock).
func (d *Daemon) clockFile() string { return filepath.Join(filepath.Dir(d.StateDir), "clock-offset") }

// SetClockOffset jumps the daemon's wall clock by off from the real one
// (0: back to the real clock); the daemon reads it within 100 ms.
func (d *Daemon) SetClockOffset(off time.Duration) error {
	s := ""
	if off != 0 {
		s = off.String()
	}
	tmp := d.clockFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, d.clockFile())
}

// Control is the daemon's Control client over its socket.
func (d *Daemon) Control() swarmpb.ControlClient { return swarmpb.NewControlClient(d.conn) }

// Local is the daemon's Local client over its socket.
func (d *Daemon) Local() swarmpb.LocalClient { return swarmpb.NewLocalClient(d.conn) }

// Running reports whether the process runs (paused counts as running).
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Paused reports whether the process is stopped by Pause.
func (d *Daemon) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// Kill sends SIGKILL and waits for the process to go.
func (d *Daemon) Kill() error {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit within 10s of SIGKILL", d.Host.Name)
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (d *Daemon) Pause() error  { return d.signal(syscall.SIGSTOP, true) }
func (d *Daemon) Resume() error { return d.signal(syscall.SIGCONT, false) }

func (d *Daemon) signal(sig syscall.Signal, paused bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return fmt.Errorf("%s is not running", d.Host.Name)
	}
	d.paused = paused
	if paused {
		d.stops = append(d.stops, window{from: time.Now()})
	} else if n := len(d.stops); n > 0 && d.stops[n-1].to.IsZero() {
		d.stops[n-1].to = time.Now()
	}
	return d.cmd.Process.Signal(sig)
}

// window is a span of time; a zero to is still open.
type window struct{ from, to time.Time }

// StoppedDuring reports whether the daemon was SIGSTOPped at some time
// between from and to.
func (d *Daemon) StoppedDuring(from, to time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.stops {
		if w.from.Before(to) && (w.to.IsZero() || w.to.After(from)) {
			return true
		}
	}
	return false
}

// Close kills the process (a paused one too) and closes the client.
func (d *Daemon) Close() {
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = d.Kill()
	if d.conn != nil {
		_ = d.conn.Close()
	}
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

// stopErr ends a poll at once.
type stopErr struct{ error }

func stop(err error) error { return stopErr{err} }

// poll calls fn every 100 ms until it returns nil, returns a stop error,
// timeout passes or ctx ends; the error says what was last seen.
func poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if se, ok := err.(stopErr); ok {
			return se.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
