package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// probeEvent is one line of `loadgen probe` output.
type probeEvent struct {
	Event   string  `json:"event"`
	AtNs    int64   `json:"at_ns"`
	Answer  string  `json:"answer"`
	Err     string  `json:"err"`
	ProbeMs float64 `json:"probe_ms"`
	Probes  int     `json:"probes"`
	Failed  int     `json:"failed"`
	// FirstErr is the probe's first failure since it was first answered.
	FirstErr string `json:"first_err"`
}

func (e probeEvent) at() time.Time { return time.Unix(0, e.AtNs) }

// probe is a running `loadgen probe` in one node's client container.
type probe struct {
	node   string
	cancel context.CancelFunc
	events chan probeEvent
	done   chan error
}

func (b *bench) startProbe(s *setupState, node, until string) *probe {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	p := &probe{node: node, cancel: cancel, events: make(chan probeEvent, 4), done: make(chan error, 1)}
	cmd := exec.CommandContext(ctx, "docker", "exec", s.clients[node], "/loadgen", "probe", "-url", "http://"+srvName+"/",
		"-until", until, "-period", period.String(), "-timeout", "60s")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.done <- err
		return p
	}
	if err := cmd.Start(); err != nil {
		p.done <- err
		return p
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev probeEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				p.events <- ev
			}
		}
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("probe on %s: %v: %s", node, err, strings.TrimSpace(errb.String()))
		}
		p.done <- err
		close(p.events)
	}()
	return p
}

// next waits for the probe's next event of kind ev.
func (p *probe) next(ev string, timeout time.Duration) (probeEvent, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case e, ok := <-p.events:
			if !ok {
				err := <-p.done
				return probeEvent{}, fmt.Errorf("probe on %s ended before %q: %v", p.node, ev, err)
			}
			if e.Event == ev {
				return e, nil
			}
			if e.Event == "timeout" {
				return e, fmt.Errorf("probe on %s timed out waiting for %q (last: %s %s)", p.node, ev, e.Answer, e.Err)
			}
		case <-t.C:
			return probeEvent{}, fmt.Errorf("probe on %s: no %q within %v", p.node, ev, timeout)
		}
	}
}

// probeAll starts a probe on every node's client and waits until each has
// been answered once.
func (b *bench) probeAll(s *setupState, until string) ([]*probe, error) {
	var ps []*probe
	for _, n := range nodeNames {
		ps = append(ps, b.startProbe(s, n, until))
	}
	for _, p := range ps {
		if _, err := p.next("ready", 30*time.Second); err != nil {
			stopProbes(ps)
			return nil, err
		}
	}
	return ps, nil
}

func stopProbes(ps []*probe) {
	for _, p := range ps {
		p.cancel()
	}
}

// waitMet collects every probe's "met" event.
func waitMet(ps []*probe, timeout time.Duration) ([]probeEvent, error) {
	defer stopProbes(ps)
	var evs []probeEvent
	for _, p := range ps {
		e, err := p.next("met", timeout)
		if err != nil {
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}

type moveResult struct {
	from, to            string
	toRunning           time.Duration // update -> new task RUNNING (its status timestamp)
	first, all          time.Duration // update -> first / every node answered by the new task
	runningToAll        time.Duration
	failedProbes        int // probes without an answer during the move (all nodes)
	firstErr            string
	maxFailedProbeMs    float64
	refuseMs, refuseMax float64 // scale 0: duration of the refusing probe
}

func (b *bench) propagation(s *setupState) error {
	fmt.Printf("\n== propagation: probes every %v on both nodes' clients (new connection and lookup per probe), load avg %s\n", *period, proccpu.LoadAvg())
	var mv []moveResult
	for i := 0; i < *moves; i++ {
		r, err := b.move(s)
		if err != nil {
			return fmt.Errorf("move %d: %w", i+1, err)
		}
		fmt.Printf("move %d %s->%s: new task running after %v; first node answered by it %v, every node %v after the update (%v after it ran); %d failed probes (first: %s)\n",
			i+1, r.from, r.to, ms(r.toRunning), ms(r.first), ms(r.all), ms(r.runningToAll), r.failedProbes, r.firstErr)
		mv = append(mv, r)
	}
	var sc []moveResult
	for i := 0; i < *moves; i++ {
		r, err := b.scaleZero(s)
		if err != nil {
			return fmt.Errorf("scale to 0, repetition %d: %w", i+1, err)
		}
		fmt.Printf("scale 0 #%d: first node refused %v, every node %v after the command; the refused probe took %.2f ms (max over nodes %.2f ms); %d failed probes before (first: %s)\n",
			i+1, ms(r.first), ms(r.all), r.refuseMs, r.refuseMax, r.failedProbes, r.firstErr)
		sc = append(sc, r)
	}
	med := func(rs []moveResult, f func(moveResult) time.Duration) (time.Duration, time.Duration) {
		var v []time.Duration
		for _, r := range rs {
			v = append(v, f(r))
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		if len(v) == 0 {
			return 0, 0
		}
		return v[len(v)/2], v[len(v)-1]
	}
	fmt.Printf("\n== propagation summary (%d repetitions each; median / max)\n\n", *moves)
	fmt.Println("| event | update → new task RUNNING | → first node answered | → every node answered | RUNNING → every node |")
	fmt.Println("|-------|------:|------:|------:|------:|")
	a1, b1 := med(mv, func(r moveResult) time.Duration { return r.toRunning })
	a2, b2 := med(mv, func(r moveResult) time.Duration { return r.first })
	a3, b3 := med(mv, func(r moveResult) time.Duration { return r.all })
	a4, b4 := med(mv, func(r moveResult) time.Duration { return r.runningToAll })
	fmt.Printf("| task moved to the other node | %s / %s | %s / %s | %s / %s | %s / %s |\n", ms(a1), ms(b1), ms(a2), ms(b2), ms(a3), ms(b3), ms(a4), ms(b4))
	c2, d2 := med(sc, func(r moveResult) time.Duration { return r.first })
	c3, d3 := med(sc, func(r moveResult) time.Duration { return r.all })
	fmt.Printf("| scale 0 (until refused) | | %s / %s | %s / %s | |\n", ms(c2), ms(d2), ms(c3), ms(d3))
	var rm []float64
	for _, r := range sc {
		rm = append(rm, r.refuseMax)
	}
	sort.Float64s(rm)
	if len(rm) > 0 {
		fmt.Printf("\nrefused probes took at most %.2f ms (median of the per-repetition max %.2f ms): refused at once, no hang\n", rm[len(rm)-1], rm[len(rm)/2])
	}
	return nil
}

// move moves the server's one task to the other node by changing its
// constraint, and times until both clients are answered by the new task.
func (b *bench) move(s *setupState) (moveResult, error) {
	old := s.srvTask
	from := b.nodeName(old.GetNodeId())
	to := nodeNames[0]
	if from == to {
		to = nodeNames[1]
	}
	ps, err := b.probeAll(s, "answer-not=task="+old.GetId())
	if err != nil {
		return moveResult{}, err
	}
	t0 := time.Now()
	if _, err := b.m1.Swarmctl("service", "update", "--detach", "--constraint-rm", "node.hostname=="+from, "--constraint-add", "node.hostname=="+to, srvName); err != nil {
		stopProbes(ps)
		return moveResult{}, err
	}
	evs, err := waitMet(ps, 60*time.Second)
	if err != nil {
		return moveResult{}, err
	}
	nt, err := b.waitTask(s.srvID, to, old.GetId())
	if err != nil {
		return moveResult{}, err
	}
	s.srvTask = nt
	r := moveResult{from: from, to: to, toRunning: time.Unix(0, nt.GetStatus().GetTimestamp()).Sub(t0)}
	r.first, r.all = spread(evs, t0)
	r.runningToAll = r.all - r.toRunning
	for _, e := range evs {
		r.failedProbes += e.Failed
		if r.firstErr == "" {
			r.firstErr = e.FirstErr
		}
	}
	return r, nil
}

// scaleZero scales the server to 0 and times until both clients are
// refused, then scales it back to 1 and waits until both are answered.
func (b *bench) scaleZero(s *setupState) (moveResult, error) {
	ps, err := b.probeAll(s, "refused")
	if err != nil {
		return moveResult{}, err
	}
	t0 := time.Now()
	if _, err := b.m1.Swarmctl("service", "scale", "--detach", srvName+"=0"); err != nil {
		stopProbes(ps)
		return moveResult{}, err
	}
	evs, err := waitMet(ps, 60*time.Second)
	if err != nil {
		return moveResult{}, err
	}
	r := moveResult{}
	r.first, r.all = spread(evs, t0)
	for i, e := range evs {
		r.failedProbes += e.Failed
		if r.firstErr == "" {
			r.firstErr = e.FirstErr
		}
		r.refuseMax = max(r.refuseMax, e.ProbeMs)
		if i == 0 || e.ProbeMs < r.refuseMs {
			r.refuseMs = e.ProbeMs
		}
	}
	if _, err := b.m1.Swarmctl("service", "scale", "--detach", srvName+"=1"); err != nil {
		return r, err
	}
	nt, err := b.waitTask(s.srvID, "", "")
	if err != nil {
		return r, err
	}
	s.srvTask = nt
	ps, err = b.probeAll(s, "answer")
	if err != nil {
		return r, fmt.Errorf("after scaling back to 1: %w", err)
	}
	stopProbes(ps)
	return r, nil
}

// waitTask waits for one running task of the service, on node (any when
// empty), other than notID.
func (b *bench) waitTask(svc, node, notID string) (*swarmpb.Task, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ts, err := b.runningTasks(svc)
		if err == nil && len(ts) == 1 && ts[0].GetId() != notID && (node == "" || b.nodeName(ts[0].GetNodeId()) == node) {
			return ts[0], nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no new running task of %s on %q after 60s (last error %v)", svc, node, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spread is the time from t0 to the first and to the last event.
func spread(evs []probeEvent, t0 time.Time) (first, last time.Duration) {
	for i, e := range evs {
		d := e.at().Sub(t0)
		if i == 0 || d < first {
			first = d
		}
		if d > last {
			last = d
		}
	}
	return first, last
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
