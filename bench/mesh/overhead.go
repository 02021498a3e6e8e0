package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// inprocIP is where the -inproc mesh binds the published port.
const inprocIP = "127.0.0.74"

type target struct {
	name  string
	addrs []string
	// src maps an address of addrs to the local address the load
	// generator connects to it from (-client-ips); absent: the
	// kernel's choice (127.0.0.1 for every loopback address).
	src map[string]string
}

type runStat struct {
	target              string
	rps                 float64
	p50, p90, p99, pmax time.Duration
	ok, failed          int
	cpu                 map[string]time.Duration // per request
	errs                map[string]int
	net                 string // the host's TCP and conntrack counters that moved (netCounters)
}

var cpuCols = []string{"loadgen", "daemons", "docker-proxy", "app", "machine"}

func (b *bench) overhead() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	id, err := b.createService("rsw-bench-mesh", 3, port, imgV1)
	if err != nil {
		return err
	}
	ts, err := b.runningTasks(id)
	if err != nil {
		return err
	}
	direct := directAddrs(ts)
	ingress := ingressAddrs(port)
	fmt.Printf("\n== overhead: service %s, 3 replicas of %s, published port %d\n", id, imgV1, port)
	fmt.Printf("direct (task status host_ip:host_port): %s\n", strings.Join(direct, " "))
	fmt.Printf("mesh (ingress addresses):               %s\n", strings.Join(ingress, " "))

	hostPorts := map[string]bool{}
	var cids []string
	for _, t := range ts {
		cids = append(cids, t.GetStatus().GetContainerId())
		for _, p := range t.GetStatus().GetPorts() {
			hostPorts[strconv.Itoa(int(p.GetHostPort()))] = true
		}
	}
	var daemonPids []int
	for _, d := range b.daemons {
		daemonPids = append(daemonPids, d.Pid())
	}
	groups := &cpuGroups{names: []string{"daemons", "docker-proxy", "app"}, pids: map[string][]int{
		"daemons":      daemonPids,
		"docker-proxy": dockerProxyPids(hostPorts),
		"app":          containerPids(cids),
	}}
	fmt.Printf("processes: daemons %v, docker-proxy %v (userland proxy of the task ports), app %v\n",
		groups.pids["daemons"], groups.pids["docker-proxy"], groups.pids["app"])

	targets := []target{{name: "direct", addrs: direct}, {name: "mesh", addrs: ingress}}
	if len(clientIPs) > 0 {
		targets[0].src = map[string]string{}
		for _, a := range direct {
			targets[0].src[a] = clientIPs[0]
		}
		targets[1].src = map[string]string{}
		for i, a := range ingress {
			targets[1].src[a] = clientIPs[1+i]
		}
		fmt.Printf("client source addresses: direct from %s; mesh from %s (one per ingress address, in order)\n",
			clientIPs[0], strings.Join(clientIPs[1:], " "))
	} else {
		fmt.Println("client source addresses: the kernel's choice (127.0.0.1) for both targets")
	}
	if *inproc {
		m := mesh.New(inprocIP, nil)
		defer m.Close()
		var bes []*swarmpb.Backend
		for i, a := range direct {
			bes = append(bes, &swarmpb.Backend{TaskId: ts[i].GetId(), Addr: a})
		}
		if err := m.Update([]*swarmpb.ServiceEndpoint{{ServiceName: "inproc", Protocol: "tcp", PublishedPort: uint32(port), Backends: bes}}); err != nil {
			return err
		}
		targets = append(targets, target{name: "inproc-mesh", addrs: []string{fmt.Sprintf("%s:%d", inprocIP, port)}})
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

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
				if r%2 == 0 { // alternate which goes first
					for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
						order[i], order[j] = order[j], order[i]
					}
				}
				for _, t := range order {
					st := measure(groups, t, c, mode == "keepalive")
					all[k] = append(all[k], st)
					fmt.Printf("%-4d %-12s %9.0f %8s %8s %8s %8s %7d |", r, t.name, st.rps, us(st.p50), us(st.p90), us(st.p99), us(st.pmax), st.failed)
					for _, col := range cpuCols {
						fmt.Printf(" %s=%.0f", col, float64(st.cpu[col])/float64(time.Microsecond))
					}
					fmt.Println()
					if len(st.errs) > 0 {
						fmt.Printf("     errors: %v\n", st.errs)
					}
					fmt.Printf("     host counters: %s\n", st.net)
				}
			}
			if *daemonProf != "" {
				b.signalDaemons(syscall.SIGUSR2)
				time.Sleep(500 * time.Millisecond) // let them write the profiles
				fmt.Printf("daemon CPU profiles of this group: %s-{m1,w1,w2}.pprof.%d\n", *daemonProf, len(keys))
			}
		}
	}

	fmt.Printf("\n== overhead summary (median of %d runs each; ratio = mesh / direct)\n\n", *runs)
	fmt.Println("| mode | workers | target | req/s | p50 | p99 | errors | mesh/direct req/s | added p50 | added p99 |")
	fmt.Println("|------|--------:|--------|------:|----:|----:|-------:|------:|------:|------:|")
	for _, k := range keys {
		med := map[string]runStat{}
		for _, t := range targets {
			var rs []runStat
			for _, s := range all[k] {
				if s.target == t.name {
					rs = append(rs, s)
				}
			}
			med[t.name] = median(rs)
		}
		d := med["direct"]
		for _, t := range targets {
			m := med[t.name]
			ratio, a50, a99 := "", "", ""
			if t.name != "direct" {
				ratio = fmt.Sprintf("%.2f", m.rps/d.rps)
				a50 = fmt.Sprintf("%+.2f ms", float64(m.p50-d.p50)/1e6)
				a99 = fmt.Sprintf("%+.2f ms", float64(m.p99-d.p99)/1e6)
			}
			fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %d | %s | %s | %s |\n", k.mode, k.c, t.name, m.rps, ms(m.p50), ms(m.p99), m.failed, ratio, a50, a99)
		}
	}
	fmt.Println()
	fmt.Println("CPU per request (µs, median over runs), by process group:")
	fmt.Println()
	fmt.Printf("| mode | workers | target | %s |\n", strings.Join(cpuCols, " | "))
	fmt.Printf("|------|--------:|--------|%s\n", strings.Repeat("------:|", len(cpuCols)))
	for _, k := range keys {
		for _, t := range targets {
			fmt.Printf("| %s | %d | %s |", k.mode, k.c, t.name)
			for _, col := range cpuCols {
				var v []float64
				for _, s := range all[k] {
					if s.target == t.name {
						v = append(v, float64(s.cpu[col])/float64(time.Microsecond))
					}
				}
				sort.Float64s(v)
				fmt.Printf(" %.0f |", v[len(v)/2])
			}
			fmt.Println()
		}
	}
	b.removeService(id)
	return nil
}

func measure(g *cpuGroups, t target, c int, keepAlive bool) runStat {
	before := make(chan cpuSample, 1)
	go func() {
		time.Sleep(*warmup)
		before <- g.sample()
	}()
	net0 := readNetCounters()
	res := closedLoop(t.addrs, t.src, c, keepAlive, *warmup, *duration)
	after := g.sample()
	net1 := readNetCounters()
	b := <-before
	n := float64(max(res.ok, 1))
	per := func(d time.Duration) time.Duration { return time.Duration(float64(d) / n) }
	st := runStat{
		target: t.name, rps: res.rps(), ok: res.ok, failed: res.failed, errs: res.errSample, net: net1.delta(net0),
		p50: pct(res.lat, 0.50), p90: pct(res.lat, 0.90), p99: pct(res.lat, 0.99), pmax: pct(res.lat, 1),
		cpu: map[string]time.Duration{
			"loadgen": per(after.self - b.self),
			"machine": per(after.machine - b.machine),
		},
	}
	for _, n := range g.names {
		st.cpu[n] = per(after.groups[n] - b.groups[n])
	}
	return st
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
	failed := 0
	for _, r := range rs {
		failed += r.failed
	}
	return runStat{
		target: rs[0].target,
		rps:    f(func(r runStat) float64 { return r.rps }),
		p50:    time.Duration(f(func(r runStat) float64 { return float64(r.p50) })),
		p99:    time.Duration(f(func(r runStat) float64 { return float64(r.p99) })),
		failed: failed, // total over runs
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// removeService removes a service and waits (bounded) until its
// containers are gone.
func (b *bench) removeService(id string) {
	if _, err := b.m1.Swarmctl("service", "rm", id); err != nil {
		fmt.Fprintln(os.Stderr, "service rm:", err)
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && len(containersOf("raftswarm.service.id", []string{id})) > 0 {
		time.Sleep(300 * time.Millisecond)
	}
	b.mu.Lock()
	for i, s := range b.services {
		if s == id {
			b.services = append(b.services[:i], b.services[i+1:]...)
			break
		}
	}
	b.mu.Unlock()
}
