// Command idle measures what an idle cluster costs: it starts 3 managers and
// 2 workers as real daemon processes (as `make demo` does, on 127.0.8.1-5),
// waits until all five nodes are Ready and the cluster has settled, and then
// reads each daemon's CPU time (utime+stime of /proc/PID/stat, all threads)
// and context switches (voluntary+involuntary, summed over
// /proc/PID/task/*/status: a proxy for wakeups) at the start and end of each
// window. Nothing else talks to the cluster during a window: the bench reads
// /proc only.
//
//	go run ./bench/idle [-window 60s] [-windows 1] [-settle 10s] [-cpuprofile DIR] [-heartbeat-period 1s] [-mesh-path auto]
//
// CPU is printed as a percentage of one core over the window, per daemon and
// for the five together. With -cpuprofile, every daemon runs inside this
// binary (bench/internal/daemonprof) and writes DIR/NAME.pprof.1 for the
// first window; profiling itself costs a little CPU, so the figures of a
// profiled run are not the ones to report.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/bench/internal/daemonprof"
	"github.com/raftswarm/raftswarm/raft"
)

// Environment of a re-exec'd daemon (-cpuprofile).
const (
	daemonModeEnv = "RSW_IDLEBENCH_DAEMON"  // managerd | workerd
	daemonProfEnv = "RSW_IDLEBENCH_PROFILE" // profile path
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports (the kernel converts to it whatever HZ is).
const clockTicks = 100

func main() {
	if role := os.Getenv(daemonModeEnv); role != "" {
		os.Exit(daemonprof.Main(role, os.Getenv(daemonProfEnv)))
	}
	window := flag.Duration("window", 60*time.Second, "length of one measurement window")
	windows := flag.Int("windows", 1, "number of consecutive windows")
	settle := flag.Duration("settle", 10*time.Second, "idle time after all nodes are Ready, before the first window")
	port := flag.Int("port", 24477, "manager port (each daemon has its own 127.0.8.x address)")
	binDir := flag.String("bin", "", "directory with prebuilt managerd and swarmctl (default: build them)")
	prof := flag.String("cpuprofile", "", "directory for one CPU profile per daemon over the first window")
	hb := flag.Duration("heartbeat-period", 0, "agents' base heartbeat period (the daemons' --heartbeat-period; 0: their default)")
	meshPath := flag.String("mesh-path", "", "the daemons' --mesh-path (auto: the kernel path where allowed; empty: their default)")
	flag.Parse()
	if *window <= 0 || *windows < 1 || *settle < 0 {
		fmt.Fprintln(os.Stderr, "Error: -window must be positive, -windows at least 1, -settle not negative")
		os.Exit(2)
	}

	env, err := cluster.NewEnv(*binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; env.Close(); os.Exit(130) }()

	code := 0
	var extra []string
	if *hb > 0 {
		extra = append(extra, "--heartbeat-period", hb.String())
	}
	if *meshPath != "" {
		extra = append(extra, "--mesh-path", *meshPath)
	}
	if err := run(env, *port, *window, *windows, *settle, *prof, extra); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	env.Close()
	os.Exit(code)
}

func run(env *cluster.Env, port int, window time.Duration, windows int, settle time.Duration, prof string, extra []string) error {
	t := raft.DefaultTimings()
	fmt.Printf("raft timings: heartbeat %v, election %v, leader lease %v, commit %v\n",
		t.HeartbeatTimeout, t.ElectionTimeout, t.LeaderLeaseTimeout, t.CommitTimeout)
	names := []string{"m1", "m2", "m3", "w1", "w2"}
	var ds []*cluster.Daemon
	// A clean shutdown, so that each daemon removes its kernel rules
	// (nftables tables, with -mesh-path auto); Close only kills.
	defer func() {
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Go(func() { d.Terminate(10 * time.Second) })
		}
		wg.Wait()
	}()
	for i, name := range names {
		ip := fmt.Sprintf("127.0.8.%d", i+1)
		d := env.Daemon(name, fmt.Sprintf("%s:%d", ip, port), append([]string{"--ingress-addr", ip}, extra...)...)
		if prof != "" {
			abs, err := filepath.Abs(prof)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(abs, 0o755); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			role := "managerd"
			if name[0] == 'w' {
				role = "workerd"
			}
			d.Binary = self
			d.Env = []string{daemonModeEnv + "=" + role, daemonProfEnv + "=" + filepath.Join(abs, name+".pprof")}
		}
		if err := d.Start(); err != nil {
			return err
		}
		ds = append(ds, d)
	}
	m1 := ds[0]
	if _, err := m1.Swarmctl("init", "--advertise-addr", m1.Addr); err != nil {
		return err
	}
	tokens := map[string]string{}
	for _, role := range []string{"manager", "worker"} {
		tok, err := m1.Swarmctl("join-token", "-q", role)
		if err != nil {
			return err
		}
		tokens[role] = strings.TrimSpace(tok)
	}
	for _, d := range ds[1:] {
		role := "manager"
		if d.Name[0] == 'w' {
			role = "worker"
		}
		if _, err := d.Swarmctl("join", "--token", tokens[role], "--advertise-addr", d.Addr, m1.Addr); err != nil {
			return err
		}
	}
	if err := waitReady(m1, len(ds), 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("cluster of 3 managers + 2 workers Ready; idle for %v before measuring\n", settle)
	time.Sleep(settle)

	leader := leaderName(m1)
	fmt.Printf("leader: %s\n", leader)
	// Elections before this point (a bootstrapping or joining manager
	// logs one) are not counted.
	logStart := make([]int64, len(ds))
	for i, d := range ds {
		if st, err := os.Stat(d.LogPath); err == nil {
			logStart[i] = st.Size()
		}
	}
	for w := 1; w <= windows; w++ {
		if prof != "" && w == 1 {
			signalAll(ds, syscall.SIGUSR1)
		}
		before, err := sample(ds)
		if err != nil {
			return err
		}
		start := time.Now()
		time.Sleep(window)
		after, err := sample(ds)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		if prof != "" && w == 1 {
			signalAll(ds, syscall.SIGUSR2)
			waitProfiles(ds, prof, 10*time.Second)
		}
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("\nwindow %d: %v, load average %s\n", w, elapsed.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:3], " "))
		fmt.Printf("%-4s %9s %10s %12s\n", "node", "cpu %", "cpu ms", "ctxsw/s")
		var totTicks, totSw int64
		for i, d := range ds {
			ticks := after[i].ticks - before[i].ticks
			sw := after[i].switches - before[i].switches
			totTicks += ticks
			totSw += sw
			fmt.Printf("%-4s %8.2f%% %10d %12.1f\n", d.Name, pct(ticks, elapsed), ticks*1000/clockTicks, float64(sw)/elapsed.Seconds())
		}
		fmt.Printf("%-4s %8.2f%% %10d %12.1f\n", "all", pct(totTicks, elapsed), totTicks*1000/clockTicks, float64(totSw)/elapsed.Seconds())
		// Asked after the window, so the question costs the window nothing.
		if now := leaderName(m1); now != leader {
			fmt.Printf("NOTE: the leader changed during this window (%s -> %s): an election is not idle\n", leader, now)
			leader = now
		}
	}
	for i, d := range ds {
		if n := countInFile(d.LogPath, logStart[i], "heartbeat timeout reached"); n > 0 {
			fmt.Printf("NOTE: %s timed out its leader %d time(s) while measuring\n", d.Name, n)
		}
	}
	if prof != "" {
		fmt.Printf("\nprofiles: %s/NAME.pprof.1 (go tool pprof -top FILE)\n", prof)
	}
	return nil
}

func pct(ticks int64, d time.Duration) float64 {
	return 100 * float64(ticks) / clockTicks / d.Seconds()
}

func signalAll(ds []*cluster.Daemon, s syscall.Signal) {
	for _, d := range ds {
		if pid := d.Pid(); pid != 0 {
			_ = syscall.Kill(pid, s)
		}
	}
}

// waitProfiles waits (bounded) until every daemon has written its profile:
// the daemons are killed at exit, and a profile still being written would
// be lost. A file is taken as complete once its size has stayed the same,
// above zero, for 300 ms.
func waitProfiles(ds []*cluster.Daemon, dir string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, d := range ds {
		var last int64 = -1
		for time.Now().Before(deadline) {
			time.Sleep(300 * time.Millisecond)
			st, err := os.Stat(filepath.Join(dir, d.Name+".pprof.1"))
			if err == nil && st.Size() > 0 && st.Size() == last {
				break
			}
			if err == nil {
				last = st.Size()
			}
		}
	}
}

// leaderName asks `node ls` which node leads ("?" when it cannot tell).
func leaderName(m *cluster.Daemon) string {
	out, err := m.Swarmctl("node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "Leader" {
			return f[0]
		}
	}
	return "?"
}

// countInFile counts s in the file from offset on.
func countInFile(path string, offset int64, s string) int {
	b, err := os.ReadFile(path)
	if err != nil || offset > int64(len(b)) {
		return 0
	}
	return strings.Count(string(b[offset:]), s)
}

// waitReady polls `node ls` until n nodes are Ready.
func waitReady(m *cluster.Daemon, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := m.Swarmctl("node", "ls", "--format", "{{.Status}}")
		ready := strings.Count(out, "Ready")
		if err == nil && ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready after %v (last error: %v)", ready, n, timeout, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

type usage struct{ ticks, switches int64 }

func sample(ds []*cluster.Daemon) ([]usage, error) {
	out := make([]usage, len(ds))
	for i, d := range ds {
		pid := d.Pid()
		if pid == 0 {
			return nil, fmt.Errorf("%s is not running (see %s)", d.Name, d.LogPath)
		}
		u, err := read(pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		out[i] = u
	}
	return out, nil
}

// read returns utime+stime of the process (all its threads, fields 14 and
// 15 of /proc/PID/stat) and the context switches of all its threads.
func read(pid int) (usage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return usage{}, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return usage{}, errors.New("short /proc/PID/stat")
	}
	// f[0] is field 3 (state), so field 14 (utime) is f[11].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return usage{}, err
	}
	u := usage{ticks: ut + st}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		s, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended
		}
		for _, line := range strings.Split(string(s), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				u.switches += n
			}
		}
	}
	return u, nil
}
