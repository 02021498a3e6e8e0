package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/daemonprof"
	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
)

// With -daemons the failover is timed from the managers' own logs, not
// from polling Info over their sockets (which a loaded manager answers
// late): the survivors log at Info, and the new leader's line
// "leadership acquired" carries the time it took office, to the
// millisecond. Raft's own warnings (heartbeat timeout, failed vote
// requests) show what the election waited on; -failover-log prints them.
var (
	managerLogLevel = flag.String("manager-log-level", "info", "with -daemons: the managerd processes' --log-level (info or debug for the exact election time from their logs)")
	keepLogs        = flag.String("keep-logs", "", "with -daemons: copy the managerd processes' whole logs into this directory at the end")
	daemonPprof     = flag.Int("daemon-pprof", 0, "with -daemons: serve each manager's metrics and pprof (--debug) on 127.0.0.1N:PORT, N its number (goroutine dumps while a phase runs)")
	failoverLog     = flag.Bool("failover-log", false, "with -daemons: print the survivors' log lines from the kill to the new leader")
	daemonProfile   = flag.String("daemon-profile", "", "with -daemons: run the managers as re-execs of this binary and write their CPU profiles over each create, rolling update, scale to 0 and failover (kill to all RUNNING) to PREFIX-mN.pprof.K, K counting those phases in order")
)

// Environment of a re-exec'd manager (-daemon-profile).
const (
	daemonModeEnv = "RSW_SCALEBENCH_DAEMON"
	daemonProfEnv = "RSW_SCALEBENCH_PROFILE"
)

func init() {
	if role := os.Getenv(daemonModeEnv); role != "" {
		os.Exit(daemonprof.Main(role, os.Getenv(daemonProfEnv)))
	}
}

// managerdArgs are the extra managerd arguments: the log level for the
// failover timing, and the userspace mesh, since the processes are
// SIGKILLed (the failover, the end of the run) and a kernel-path mesh
// would leave its nftables table behind each time (no ports are published
// here, so the path does not change the figures).
func managerdArgs() []string {
	return []string{"--log-level", *managerLogLevel, "--mesh-path", "userspace"}
}

// profileDaemon makes the daemon named name a re-exec of this binary
// profiling on signals, when -daemon-profile is set.
func profileDaemon(name string) (binary string, env []string) {
	if *daemonProfile == "" {
		return "", nil
	}
	self, err := os.Executable()
	if err != nil {
		fatalf("-daemon-profile: %v", err)
	}
	abs, err := filepath.Abs(fmt.Sprintf("%s-%s.pprof", *daemonProfile, name))
	if err != nil {
		fatalf("-daemon-profile: %v", err)
	}
	return self, []string{daemonModeEnv + "=managerd", daemonProfEnv + "=" + abs}
}

// signalSurvivors sends sig to every running manager (profile start/stop).
func (p *procs) signalSurvivors(sig syscall.Signal) {
	if *daemonProfile == "" {
		return
	}
	for _, d := range p.ds {
		if pid := d.Pid(); pid != 0 {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// electedAt reads the survivors' logs for the first "leadership acquired"
// at or after since: the manager and the time it took office.
func (p *procs) electedAt(since time.Time) (string, time.Time, bool) {
	var name string
	var at time.Time
	for _, d := range p.ds {
		if d.Pid() == 0 {
			continue
		}
		for _, l := range logLinesSince(d.LogPath, since) {
			if strings.Contains(l.msg, "leadership acquired") && (at.IsZero() || l.at.Before(at)) {
				name, at = d.Name, l.at
			}
		}
	}
	return name, at, !at.IsZero()
}

// printFailoverLog prints the survivors' lines between since and until,
// with their offset from since.
func (p *procs) printFailoverLog(since, until time.Time) {
	if !*failoverLog {
		return
	}
	for _, d := range p.ds {
		if d.Pid() == 0 {
			continue
		}
		n := 0
		for _, l := range logLinesSince(d.LogPath, since) {
			if l.at.After(until) {
				break
			}
			if n++; n > 40 {
				fmt.Printf("  %s: ... (more)\n", d.Name)
				break
			}
			fmt.Printf("  %s +%v: %s\n", d.Name, l.at.Sub(since).Round(time.Millisecond), l.msg)
		}
	}
}

type logLine struct {
	at  time.Time
	msg string
}

// logLinesSince parses a managerd log (slog text: time=... level=...
// msg=...) and returns its lines stamped at or after since.
func logLinesSince(path string, since time.Time) []logLine {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s := sc.Text()
		if !strings.HasPrefix(s, "time=") {
			continue
		}
		ts, rest, _ := strings.Cut(strings.TrimPrefix(s, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(since) {
			continue
		}
		if len(rest) > 240 {
			rest = rest[:240]
		}
		out = append(out, logLine{at: at, msg: rest})
	}
	return out
}

// phaseMeter measures one timed phase with -daemons: each manager's CPU
// and this process's over it (printed by the func it returns), and, with
// -daemon-profile, CPU profiles of every manager over the phase
// (PREFIX-mN.pprof.K, K counting the phases profiled in order, failovers
// included). Where the 2 cores of the machine went, by process.
func (b *bench) phaseMeter(what string) (done func()) {
	pr, ok := b.t.(*procs)
	if !ok {
		return func() {}
	}
	pr.signalSurvivors(syscall.SIGUSR1)
	pids := make([]int, len(pr.ds))
	cpu0 := make([]time.Duration, len(pr.ds))
	for i, d := range pr.ds {
		pids[i] = d.Pid()
		cpu0[i] = proccpu.Process(pids[i])
	}
	self0, busy0, t0 := proccpu.Process(os.Getpid()), proccpu.MachineBusy(), time.Now()
	return func() {
		pr.signalSurvivors(syscall.SIGUSR2)
		el := time.Since(t0).Seconds()
		leader, _ := pr.leader()
		var parts []string
		for i, d := range pr.ds {
			tag := d.Name
			if d.Name == leader {
				tag += "(leader)"
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", tag, (proccpu.Process(pids[i])-cpu0[i]).Seconds()/el))
		}
		fmt.Printf("  %s CPU over %.1f s (cores): %s, bench %.2f, machine busy %.2f\n", what, el, strings.Join(parts, ", "),
			(proccpu.Process(os.Getpid())-self0).Seconds()/el, (proccpu.MachineBusy()-busy0).Seconds()/el)
	}
}
