package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
)

// target is one way of reaching the server: from which node's client, at
// which URL.
type target struct {
	name string
	node string // client node
	url  string // GET url, or "lookup:NAME" for name lookups
}

// summary is the load generator's JSON (bench/discovery/loadgen Summary).
type summary struct {
	RPS       float64        `json:"rps"`
	Requests  int            `json:"requests"`
	Errors    int            `json:"errors"`
	P50ms     float64        `json:"p50_ms"`
	P90ms     float64        `json:"p90_ms"`
	P99ms     float64        `json:"p99_ms"`
	MaxMs     float64        `json:"max_ms"`
	ErrSample map[string]int `json:"err_sample"`
	FromNs    int64          `json:"from_ns"`
	ToNs      int64          `json:"to_ns"`
}

type runStat struct {
	target string
	summary
	cpu map[string]float64 // µs per request
}

var cpuCols = []string{"m1-daemon", "w1-daemon", "app", "dockerd", "machine"}

func (b *bench) targets(s *setupState) ([]target, error) {
	all := map[string]target{
		"direct":      {"direct", "m1", "http://" + s.srvIP + ":80/"},
		"name":        {"name", "m1", "http://" + srvName + "/"},
		"name-remote": {"name-remote", "w1", "http://" + srvName + "/"},
		"vip":         {"vip", "m1", "http://" + s.vip + ":80/"},
		"vip-remote":  {"vip-remote", "w1", "http://" + s.vip + ":80/"},
		// Lookups only (diagnostic): the service name, which Docker's
		// embedded DNS forwards to the node's responder, against the
		// server container's own name, which Docker answers itself.
		"lookup-name":   {"lookup-name", "m1", "lookup:" + srvName},
		"lookup-docker": {"lookup-docker", "m1", "lookup:" + s.srvName},
		"kernel-dnat":   {"kernel-dnat", "m1", "http://" + dnatAddr + ":80/"},
	}
	var ts []target
	for _, n := range strings.Split(*targetList, ",") {
		t, ok := all[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("unknown target %q: use direct, name, name-remote, vip, vip-remote, lookup-name, lookup-docker, kernel-dnat", n)
		}
		ts = append(ts, t)
	}
	if *kernelDNAT && !strings.Contains(*targetList, "kernel-dnat") {
		ts = append(ts, all["kernel-dnat"])
	}
	return ts, nil
}

func (b *bench) overhead(s *setupState) error {
	targets, err := b.targets(s)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if t.name == "kernel-dnat" {
			if err := b.addKernelDNAT(s); err != nil {
				return err
			}
			break
		}
	}
	fmt.Printf("\n== overhead: server task on m1; clients on m1 (same node) and w1 (across nodes)\n")
	for _, t := range targets {
		fmt.Printf("  %-12s from %s's client: %s\n", t.name, t.node, t.url)
	}
	app := containerPid(s.srvTask.GetStatus().GetContainerId())
	g := &cpuGroups{pids: map[string]int{"m1-daemon": b.daemons[0].Pid(), "w1-daemon": b.daemons[1].Pid(), "app": app, "dockerd": pidByComm("dockerd")}}

	type key struct {
		c    int
		mode string
	}
	all := map[key][]runStat{}
	var keys []key
	for _, cs := range strings.Split(*conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(cs))
		if err != nil || c < 1 {
			return fmt.Errorf("bad -c %q", cs)
		}
		for _, mode := range strings.Split(*modes, ",") {
			mode = strings.TrimSpace(mode)
			if mode != "keepalive" && mode != "newconn" {
				return fmt.Errorf("bad mode %q", mode)
			}
			k := key{c, mode}
			keys = append(keys, k)
			fmt.Printf("\n-- %s, %d workers, %v per run (+%v warm-up), load avg %s\n", mode, c, *duration, *warmup, proccpu.LoadAvg())
			fmt.Printf("%-4s %-12s %9s %8s %8s %8s %8s %7s | CPU per request (µs): %s\n", "run", "target", "req/s", "p50", "p90", "p99", "max", "errors", strings.Join(cpuCols, " "))
			if *daemonProf != "" {
				b.signalDaemons(syscall.SIGUSR1)
			}
			for r := 1; r <= *runs; r++ {
				order := append([]target(nil), targets...)
				if r%2 == 0 {
					for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
						order[i], order[j] = order[j], order[i]
					}
				}
				for _, t := range order {
					if mode == "keepalive" && strings.HasPrefix(t.url, "lookup:") {
						continue // a lookup is the same in both modes: measured with newconn only
					}
					st, err := b.measure(g, s, t, c, mode == "keepalive")
					if err != nil {
						return err
					}
					all[k] = append(all[k], st)
					fmt.Printf("%-4d %-12s %9.0f %8s %8s %8s %8s %7d |", r, t.name, st.RPS, msf(st.P50ms), msf(st.P90ms), msf(st.P99ms), msf(st.MaxMs), st.Errors)
					for _, col := range cpuCols {
						fmt.Printf(" %s=%.0f", col, st.cpu[col])
					}
					fmt.Println()
					if len(st.ErrSample) > 0 {
						fmt.Printf("     errors: %v\n", st.ErrSample)
					}
				}
			}
			if *daemonProf != "" {
				b.signalDaemons(syscall.SIGUSR2)
				time.Sleep(500 * time.Millisecond) // let them write the profiles
				fmt.Printf("daemon CPU profiles of this group: %s-{m1,w1}.pprof.%d\n", *daemonProf, len(keys))
			}
		}
	}

	fmt.Printf("\n== overhead summary (median of %d runs each; ratio and added latency against direct; lookup-name against lookup-docker)\n\n", *runs)
	fmt.Println("| mode | workers | target | req/s | p50 | p99 | errors | ÷ direct | added p50 | added p99 |")
	fmt.Println("|------|--------:|--------|------:|----:|----:|-------:|------:|------:|------:|")
	for _, k := range keys {
		med := map[string]runStat{}
		for _, t := range targets {
			med[t.name] = median(pick(all[k], t.name))
		}
		for _, t := range targets {
			if len(pick(all[k], t.name)) == 0 {
				continue
			}
			m := med[t.name]
			// Lookups compare with a name Docker answers itself.
			base := "direct"
			if t.name == "lookup-name" {
				base = "lookup-docker"
			}
			ratio, a50, a99 := "", "", ""
			if d := med[base]; t.name != base && t.name != "lookup-docker" && len(pick(all[k], base)) > 0 {
				ratio = fmt.Sprintf("**%.2f**", m.RPS/d.RPS)
				a50 = fmt.Sprintf("%+.2f ms", m.P50ms-d.P50ms)
				a99 = fmt.Sprintf("%+.2f ms", m.P99ms-d.P99ms)
			}
			fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %d | %s | %s | %s |\n", k.mode, k.c, t.name, m.RPS, msf(m.P50ms), msf(m.P99ms), m.Errors, ratio, a50, a99)
		}
	}
	fmt.Println()
	fmt.Println("Per-run ratio to direct (runs in order):")
	for _, k := range keys {
		for _, t := range targets {
			base := "direct"
			if t.name == "lookup-name" {
				base = "lookup-docker"
			}
			if t.name == "direct" || t.name == "lookup-docker" {
				continue
			}
			d, m := pick(all[k], base), pick(all[k], t.name)
			if len(m) == 0 {
				continue
			}
			var rs []string
			for i := range min(len(d), len(m)) {
				rs = append(rs, fmt.Sprintf("%.2f", m[i].RPS/d[i].RPS))
			}
			fmt.Printf("  %s %d %s: %s\n", k.mode, k.c, t.name, strings.Join(rs, ", "))
		}
	}
	fmt.Println()
	fmt.Println("CPU per request (µs, median over runs), by process:")
	fmt.Println()
	fmt.Printf("| mode | workers | target | %s |\n", strings.Join(cpuCols, " | "))
	fmt.Printf("|------|--------:|--------|%s\n", strings.Repeat("------:|", len(cpuCols)))
	for _, k := range keys {
		for _, t := range targets {
			if len(pick(all[k], t.name)) == 0 {
				continue
			}
			fmt.Printf("| %s | %d | %s |", k.mode, k.c, t.name)
			for _, col := range cpuCols {
				var v []float64
				for _, st := range pick(all[k], t.name) {
					v = append(v, st.cpu[col])
				}
				sort.Float64s(v)
				fmt.Printf(" %.0f |", v[len(v)/2])
			}
			fmt.Println()
		}
	}
	return nil
}

func pick(rs []runStat, name string) []runStat {
	var out []runStat
	for _, r := range rs {
		if r.target == name {
			out = append(out, r)
		}
	}
	return out
}

// measure runs the load generator once in the target's client container
// and samples the processes' CPU time every 50 ms meanwhile, to attribute
// the CPU used within the load generator's measured window.
func (b *bench) measure(g *cpuGroups, s *setupState, t target, c int, keepAlive bool) (runStat, error) {
	stop := make(chan struct{})
	var samples []cpuSample
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			samples = append(samples, g.sample())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	what := []string{"-url", t.url}
	if name, ok := strings.CutPrefix(t.url, "lookup:"); ok {
		what = []string{"-lookup", name}
	}
	out, err := b.exec(s.clients[t.node], *warmup+*duration+30*time.Second, append(append([]string{"load"}, what...), "-c", strconv.Itoa(c),
		"-keepalive="+strconv.FormatBool(keepAlive), "-d", duration.String(), "-warmup", warmup.String())...)
	close(stop)
	wg.Wait()
	if err != nil {
		return runStat{}, fmt.Errorf("%s: %w", t.name, err)
	}
	var sum summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		return runStat{}, fmt.Errorf("%s: load generator output %q: %w", t.name, out, err)
	}
	st := runStat{target: t.name, summary: sum, cpu: map[string]float64{}}
	from, to := nearest(samples, time.Unix(0, sum.FromNs)), nearest(samples, time.Unix(0, sum.ToNs))
	n := float64(max(sum.Requests, 1))
	if span := to.at.Sub(from.at); span > 0 {
		// Scale the sampled span to the window (samples are 50 ms apart).
		scale := float64(time.Duration(sum.ToNs-sum.FromNs)) / float64(span)
		for _, col := range cpuCols {
			var d time.Duration
			if col == "machine" {
				d = to.machine - from.machine
			} else {
				d = to.groups[col] - from.groups[col]
			}
			st.cpu[col] = float64(d) * scale / n / float64(time.Microsecond)
		}
	}
	return st, nil
}

// median picks, per figure, the median over runs.
func median(rs []runStat) runStat {
	if len(rs) == 0 {
		return runStat{}
	}
	f := func(get func(runStat) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 0 {
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[len(v)/2]
	}
	errs := 0
	for _, r := range rs {
		errs += r.Errors
	}
	m := runStat{target: rs[0].target}
	m.RPS = f(func(r runStat) float64 { return r.RPS })
	m.P50ms = f(func(r runStat) float64 { return r.P50ms })
	m.P99ms = f(func(r runStat) float64 { return r.P99ms })
	m.Errors = errs // total over runs
	return m
}

func msf(v float64) string { return fmt.Sprintf("%.2f ms", v) }

func containerPid(id string) int {
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return p
}

// cpuGroups samples the CPU time of named processes.
type cpuGroups struct {
	pids map[string]int
}

type cpuSample struct {
	at      time.Time
	machine time.Duration
	groups  map[string]time.Duration
}

func (g *cpuGroups) sample() cpuSample {
	s := cpuSample{at: time.Now(), machine: proccpu.MachineBusy(), groups: map[string]time.Duration{}}
	for n, p := range g.pids {
		s.groups[n] = proccpu.Process(p)
	}
	return s
}

// nearest is the sample taken closest to t.
func nearest(ss []cpuSample, t time.Time) cpuSample {
	var best cpuSample
	var bestD time.Duration = -1
	for _, s := range ss {
		d := s.at.Sub(t)
		if d < 0 {
			d = -d
		}
		if bestD < 0 || d < bestD {
			best, bestD = s, d
		}
	}
	return best
}

// pidByComm is the first process whose command name is comm (0: none).
// dockerd serves the containers' embedded DNS (127.0.0.11).
func pidByComm(comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	return 0
}
