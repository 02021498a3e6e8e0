package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

type updRun struct {
	order, from, to       string
	cmd, daemon           time.Duration
	state                 string
	reqs, failed          int
	failedPre, failedPost int
	p50, p99, pmax        time.Duration
	versions              map[string]int
	firstErrs             []string
	firstNew, lastOld     time.Duration // answers by version, since the command started
	cmdErr                error
}

func (b *bench) update() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	id, err := b.createService("rsw-bench-update", 7, port, imgV1)
	if err != nil {
		return err
	}
	addrs := ingressAddrs(port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	svc, err := b.m1.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
	cancel()
	if err != nil {
		return err
	}
	uc := svc.Service.GetSpec().GetUpdate()
	fmt.Printf("\n== rolling update: service %s, 7 replicas, published port %d, load %d req/s (new connection each, %d goroutines) round robin over %s\n",
		id, port, *updRate, *updWorkers, strings.Join(addrs, " "))
	fmt.Printf("spec defaults from `service create`: parallelism %d, delay %v, monitor %v, failure action %s, order %s; stop grace period %v\n",
		uc.GetParallelism(), time.Duration(uc.GetDelayNs()), time.Duration(uc.GetMonitorNs()), uc.GetFailureAction(), uc.GetOrder(),
		time.Duration(svc.Service.GetSpec().GetContainer().GetStopGracePeriodNs()))

	cur := "v1"
	var rs []updRun
	fmt.Printf("%-3s %-11s %-7s %9s %9s %-10s %6s %6s %10s %8s %8s %8s %9s %9s  %s\n", "run", "order", "image", "command", "daemon", "state", "reqs", "failed", "pre/post", "p50", "p99", "max", "1st new", "last old", "answers")
	for i := 0; i < 2*(*updRuns); i++ {
		order := []string{"stop-first", "start-first"}[(i+i/2)%2]
		next := map[string]string{"v1": "v2", "v2": "v1"}[cur]
		if _, err := b.waitRunning(id, 7, cur, port, 90*time.Second); err != nil {
			return err
		}
		r := b.updateOnce(id, addrs, order, cur, next)
		rs = append(rs, r)
		fmt.Printf("%-3d %-11s %-7s %9s %9s %-10s %6d %6d %10s %8s %8s %8s %9s %9s  %v\n", i+1, order, r.from+"→"+r.to,
			r.cmd.Round(time.Millisecond), r.daemon.Round(time.Millisecond), r.state, r.reqs, r.failed,
			fmt.Sprintf("%d/%d", r.failedPre, r.failedPost), us(r.p50), us(r.p99), us(r.pmax),
			r.firstNew.Round(time.Millisecond), r.lastOld.Round(time.Millisecond), r.versions)
		for _, e := range r.firstErrs {
			fmt.Printf("      %s\n", e)
		}
		if r.cmdErr != nil {
			fmt.Printf("      command failed: %v\n", r.cmdErr)
		}
		cur = next
	}

	fmt.Printf("\n== rolling update summary (7 replicas, parallelism 1, delay 0s, monitor %v)\n\n", time.Duration(uc.GetMonitorNs()))
	fmt.Println("| order | runs | command time (min / median / max) | daemon-side update (median) | requests during the command | failed |")
	fmt.Println("|-------|-----:|------|------:|------:|------:|")
	for _, order := range []string{"stop-first", "start-first"} {
		var cmds, ds []time.Duration
		reqs, failed := 0, 0
		for _, r := range rs {
			if r.order != order {
				continue
			}
			cmds = append(cmds, r.cmd)
			ds = append(ds, r.daemon)
			reqs += r.reqs
			failed += r.failed
		}
		sort.Slice(cmds, func(i, j int) bool { return cmds[i] < cmds[j] })
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("| %s | %d | %.2f / %.2f / %.2f s | %.2f s | %d | %d |\n", order, len(cmds),
			cmds[0].Seconds(), cmds[len(cmds)/2].Seconds(), cmds[len(cmds)-1].Seconds(), ds[len(ds)/2].Seconds(), reqs, failed)
	}
	b.removeService(id)
	return nil
}

func (b *bench) updateOnce(id string, addrs []string, order, from, to string) updRun {
	r := updRun{order: order, from: from, to: to, versions: map[string]int{}}
	l := startPaced(addrs, *updRate, *updWorkers)
	time.Sleep(time.Second)
	t0 := time.Since(l.start)
	_, r.cmdErr = b.m1.Swarmctl("service", "update", "--image", "raftswarm/demo:"+to,
		"--update-parallelism", "1", "--update-delay", "0s", "--update-order", order, id)
	t1 := time.Since(l.start)
	r.cmd = t1 - t0
	time.Sleep(2 * time.Second)
	recs := l.finish()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	svc, err := b.m1.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
	cancel()
	if err == nil {
		us := svc.Service.GetUpdateStatus()
		r.state = us.GetState()
		if us.GetCompletedAt() > 0 && us.GetStartedAt() > 0 {
			r.daemon = time.Duration(us.GetCompletedAt() - us.GetStartedAt())
		}
	}
	var lat []time.Duration
	for _, x := range recs {
		switch {
		case x.sent < t0:
			if x.err != "" {
				r.failedPre++
			}
			continue
		case x.sent > t1:
			if x.err != "" {
				r.failedPost++
			}
			continue
		}
		r.reqs++
		if x.err != "" {
			r.failed++
			if len(r.firstErrs) < 5 {
				r.firstErrs = append(r.firstErrs, fmt.Sprintf("+%v %s: %s", (x.sent-t0).Round(time.Millisecond), x.addr, x.err))
			}
			continue
		}
		r.versions[x.version]++
		if x.version == to && (r.firstNew == 0 || x.end-t0 < r.firstNew) {
			r.firstNew = x.end - t0
		}
		if x.version == from && x.end-t0 > r.lastOld {
			r.lastOld = x.end - t0
		}
		lat = append(lat, x.end-x.sent)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.p50, r.p99, r.pmax = pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1)
	return r
}
