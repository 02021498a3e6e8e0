package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
)

// Kind is a kind of fault.
type Kind string

const (
	IsolateNode   Kind = "isolate-node"   // one node (any role) cut from all others
	IsolateLeader Kind = "isolate-leader" // the leader cut from the majority
	OneWay        Kind = "one-way"        // the leader's outbound packets dropped, inbound kept
	Halves        Kind = "halves"         // the nodes split into two groups
	Loss          Kind = "loss"           // 30% of every node's packets dropped at random
	Kill9         Kind = "kill9"          // SIGKILL a manager (the leader half the time), restart after the hold
	Pause         Kind = "pause"          // SIGSTOP a manager (the leader half the time), SIGCONT after the hold
	ClockJump     Kind = "clock-jump"     // one node's wall clock jumps 2-9 minutes forward or back, and back after the hold
)

// AllKinds are the faults a random schedule draws from.
var AllKinds = []Kind{IsolateNode, IsolateLeader, OneWay, Halves, Loss, Kill9, Pause, ClockJump}

// Step is one fault of a schedule. Pick chooses the target among the
// candidates the kind has when the step runs (which node leads then is the
// cluster's business, so a seed replays the kinds, picks and holds, not
// necessarily the same hostnames).
type Step struct {
	Kind Kind
	Pick int
	Hold time.Duration
}

// SlowCall is how long a successful call may take, elections and a leader
// wait included, before it counts as stalled. It leaves room for a loaded
// CI machine; the stalls of issue 9 #10 lasted until the client gave up.
const SlowCall = 8 * time.Second

func (s Step) String() string { return fmt.Sprintf("%s(pick %d, hold %v)", s.Kind, s.Pick, s.Hold) }

// Schedule draws n steps from seed, of every kind.
func Schedule(seed int64, n int) []Step { return ScheduleOf(seed, n, AllKinds) }

// ScheduleOf draws n steps of the given kinds from seed.
func ScheduleOf(seed int64, n int, kinds []Kind) []Step {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	steps := make([]Step, n)
	for i := range steps {
		steps[i] = Step{
			Kind: kinds[rng.IntN(len(kinds))],
			Pick: rng.IntN(1 << 16),
			Hold: time.Duration(4+rng.IntN(7)) * time.Second,
		}
	}
	return steps
}

// Config is one run.
type Config struct {
	Bin      string // directory holding managerd and workerd
	Dir      string // state, logs and sockets (keep it short: socket paths)
	Seed     int64
	Managers int
	Workers  int
	Steps    []Step // the fault schedule
	Clients  int
	Logf     func(format string, args ...any)
}

// Probe is one call made to a manager on the minority side of a partition.
type Probe struct {
	Step    Step
	Via     string
	Write   bool
	Elapsed time.Duration
	Err     string
	Down    bool // not a call: Via was seen not ready during a clock jump
}

// Refused reports whether the probe got the quorum error within 10 s.
func (p Probe) Refused() bool {
	return p.Err != "" && strings.Contains(p.Err, raft.ErrQuorumLost.Error()) && p.Elapsed <= 10*time.Second
}

// Result is what a run found.
type Result struct {
	Seed        int64
	Steps       []Step
	Faults      int
	Calls       int64
	Verdict     Verdict
	Probes      []Probe
	Convergence []time.Duration // from healing to healthy, per fault
	TaskConv    []time.Duration // from healing to every service's tasks and every routing table right, per fault
	Scales      int64           // acknowledged scale calls (made while faults held)
	Violations  []string        // linearizability, lost writes, no convergence, minority not refusing
	Conflicts   int             // node label writes refused "update out of sequence" (issue 9 #11, fixed)
	SlowOps     []string        // successful calls over SlowCall (issue 9 #10, fixed)
	StoppedOps  int             // successful calls over SlowCall through a daemon SIGSTOPped meanwhile (not counted as slow)
	Logs        string          // daemon log tails when the run found something
}

// Run forms a cluster, drives the workload through the schedule of faults,
// heals, and checks the history.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	logf := cfg.Logf
	res.Seed, res.Steps = cfg.Seed, cfg.Steps
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 1))
	c, err := NewCluster(ctx, rng, cfg.Bin, cfg.Dir, cfg.Managers, cfg.Workers, logf)
	if c != nil {
		defer func() {
			if err != nil || len(res.Violations) > 0 {
				res.Logs = c.DumpLogs(30)
			}
			if cerr := c.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	if err != nil {
		return res, err
	}
	if err := c.Form(ctx, 2); err != nil {
		return res, err
	}
	logf("cluster formed on %s.0/24: %d managers, %d workers", c.Net.subnet, cfg.Managers, cfg.Workers)

	hist := &History{}
	sc := &Scaler{c: c}
	defer func() { res.Scales = sc.Scales() }()
	w := NewWorkload(c, hist)
	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(wctx, cfg.Clients, 50*time.Millisecond, uint64(cfg.Seed)) })
	defer func() { stopWork(); wg.Wait() }()

	// The schedule's own timed holds are the only waits that are not polls.
	hold := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	if err := hold(2 * time.Second); err != nil {
		return res, err
	}
	converged := true
	for i, step := range cfg.Steps {
		logf("fault %d/%d: %s", i+1, len(cfg.Steps), step)
		// Services are scaled while the fault holds, not while the
		// convergence after it is timed.
		sctx, stopScale := context.WithCancel(ctx)
		var swg sync.WaitGroup
		swg.Go(func() { sc.Run(sctx, 2*time.Second, uint64(cfg.Seed)+uint64(i)) })
		probes, healedAt, err := c.inject(ctx, step, hold, logf)
		stopScale()
		swg.Wait()
		res.Probes = append(res.Probes, probes...)
		if err != nil {
			return res, fmt.Errorf("fault %s: %w", step, err)
		}
		res.Faults++
		leader, err := c.WaitHealthy(ctx, 60*time.Second)
		took := time.Since(healedAt)
		if err != nil {
			// No more faults; the history so far is still checked.
			res.Violations = append(res.Violations, fmt.Sprintf("after %s: %v", step, err))
			converged = false
			break
		}
		res.Convergence = append(res.Convergence, took)
		logf("healed: leader %s, healthy %v after healing", leader, took.Round(time.Millisecond))
		if err := c.WaitTasksConverged(ctx, 60*time.Second); err != nil {
			res.Violations = append(res.Violations, fmt.Sprintf("after %s: %v", step, err))
			converged = false
			break
		}
		took = time.Since(healedAt)
		res.TaskConv = append(res.TaskConv, took)
		logf("tasks and routing tables converged %v after healing", took.Round(time.Millisecond))
		if err := hold(time.Second); err != nil {
			return res, err
		}
	}
	stopWork()
	wg.Wait()

	final, err := w.FinalReads(ctx)
	switch {
	case err != nil && converged:
		res.Violations = append(res.Violations, fmt.Sprintf("final reads: %v", err))
	case err != nil:
		logf("final reads on the unconverged cluster: %v", err)
	}
	res.Calls = w.Calls()
	ops := hist.Ops()
	res.Verdict = Check(ops, final, 60*time.Second)
	for _, op := range ops {
		// Only node updates retry a conflict; a service update may still
		// be refused as out of sequence, by design.
		if op.Outcome == Failed && strings.HasPrefix(op.Key, "n/") && strings.Contains(op.Err, "out of sequence") {
			res.Conflicts++
		}
		// A refusal (the quorum error comes after the 4 s leader wait plus
		// the quorum ping, about 5 s) is not a stall; a call that succeeded
		// after SlowCall was stuck somewhere (issue 9 #10).
		// A call to the socket of a SIGSTOPped daemon waits for SIGCONT:
		// that is the fault, not a stall.
		if op.End.Sub(op.Start) > SlowCall && op.Outcome == OK {
			if d := c.byName[op.Via]; d != nil && d.StoppedDuring(op.Start, op.End) {
				res.StoppedOps++
			} else {
				res.SlowOps = append(res.SlowOps, op.String())
			}
		}
	}
	switch res.Verdict.Result {
	case porcupine.Illegal:
		res.Violations = append(res.Violations, fmt.Sprintf("history not linearizable on keys %v", res.Verdict.BadKeys))
		for _, k := range res.Verdict.BadKeys {
			for _, op := range ops {
				if op.Key == k && op.Outcome != Failed {
					logf("  %s", op)
				}
			}
		}
	case porcupine.Unknown:
		logf("linearizability check timed out (counted as not violated)")
	}
	for _, l := range res.Verdict.LostWrites {
		res.Violations = append(res.Violations, "lost acknowledged write: "+l)
	}
	for _, p := range res.Probes {
		if p.Down {
			res.Violations = append(res.Violations, fmt.Sprintf("during %s: %s", p.Step, p.Via))
			continue
		}
		if !p.Refused() {
			res.Violations = append(res.Violations, fmt.Sprintf("minority manager %s did not refuse within 10s during %s: write=%v after %v: %s",
				p.Via, p.Step, p.Write, p.Elapsed.Round(time.Millisecond), orOK(p.Err)))
		}
	}
	return res, nil
}

func orOK(s string) string {
	if s == "" {
		return "served (no error)"
	}
	return s
}

// inject applies one fault, holds it, heals it and returns when healing
// was done. Minority managers are probed while a partition holds.
func (c *Cluster) inject(ctx context.Context, step Step, hold func(time.Duration) error, logf func(string, ...any)) ([]Probe, time.Time, error) {
	t0 := time.Now()
	leader, err := c.Leader(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	logf("  leader %s (asked in %v)", leader.Host.Name, time.Since(t0).Round(time.Millisecond))
	var followers []*Daemon
	for _, d := range c.Managers() {
		if d != leader {
			followers = append(followers, d)
		}
	}
	pickManager := func() *Daemon {
		if step.Pick%2 == 0 {
			return leader
		}
		return followers[(step.Pick/2)%len(followers)]
	}
	var minority []*Daemon
	var heal func() error
	var watchDown bool
	// Every host is healed at once: one at a time, under load, a heal
	// leaves the network half-healed for seconds.
	healNet := func() error {
		return each(c.Daemons, func(d *Daemon) error { return d.Host.Heal() })
	}
	isolate := func(target *Daemon) error {
		var others []string
		for _, d := range c.Daemons {
			if d != target {
				others = append(others, d.Host.IP)
			}
		}
		logf("  isolating %s", target.Host.Name)
		return target.Host.Drop(others, others)
	}
	switch step.Kind {
	case IsolateNode:
		target := c.Daemons[step.Pick%len(c.Daemons)]
		err = isolate(target)
		if target.Manager {
			minority = []*Daemon{target}
		}
		heal = healNet
	case IsolateLeader:
		err = isolate(leader)
		minority = []*Daemon{leader}
		heal = healNet
	case OneWay:
		var others []string
		for _, d := range c.Daemons {
			if d != leader {
				others = append(others, d.Host.IP)
			}
		}
		logf("  dropping everything %s sends", leader.Host.Name)
		err = leader.Host.Drop(nil, others)
		heal = healNet
	case Halves:
		order := rand.New(rand.NewPCG(uint64(step.Pick), 2)).Perm(len(c.Daemons))
		half := len(c.Daemons) / 2
		var a, b []*Daemon
		for i, j := range order {
			if i < half {
				a = append(a, c.Daemons[j])
			} else {
				b = append(b, c.Daemons[j])
			}
		}
		ips := func(ds []*Daemon) (out []string) {
			for _, d := range ds {
				out = append(out, d.Host.IP)
			}
			return out
		}
		err = each(c.Daemons, func(d *Daemon) error {
			if slices.Contains(a, d) {
				return d.Host.Drop(ips(b), ips(b))
			}
			return d.Host.Drop(ips(a), ips(a))
		})
		logf("  split %v | %v", names(a), names(b))
		managers := func(ds []*Daemon) (out []*Daemon) {
			for _, d := range ds {
				if d.Manager {
					out = append(out, d)
				}
			}
			return out
		}
		need := len(c.Managers())/2 + 1
		if ma := managers(a); len(ma) < need {
			minority = ma
		}
		if mb := managers(b); len(mb) < need {
			minority = append(minority, mb...)
		}
		heal = healNet
	case Loss:
		logf("  30%% packet loss on every node")
		err = each(c.Daemons, func(d *Daemon) error { return d.Host.Lose(30) })
		heal = healNet
	case Kill9:
		target := pickManager()
		logf("  kill -9 %s", target.Host.Name)
		err = target.Kill()
		heal = func() error { return target.Start(ctx) }
	case Pause:
		target := pickManager()
		logf("  SIGSTOP %s", target.Host.Name)
		err = target.Pause()
		heal = target.Resume
	case ClockJump:
		target := c.Daemons[step.Pick%len(c.Daemons)]
		if step.Pick%3 == 0 {
			target = leader
		}
		off := time.Duration(2+(step.Pick/8)%8) * time.Minute
		if (step.Pick/2)%2 == 1 {
			off = -off
		}
		logf("  %s's clock jumps %v", target.Host.Name, off)
		err = target.SetClockOffset(off)
		heal = func() error { return target.SetClockOffset(0) }
		// No node may be marked Down (or a certificate refused, which
		// stops its heartbeats) while a clock is off.
		watchDown = true
	default:
		return nil, time.Time{}, fmt.Errorf("unknown fault kind %q", step.Kind)
	}
	if err != nil {
		_ = heal()
		return nil, time.Time{}, err
	}
	var probes []Probe
	var mu sync.Mutex
	var wg sync.WaitGroup
	if len(minority) > 0 {
		// Give the partition a second to take: calls already in flight
		// when it began may legitimately finish.
		if err := hold(time.Second); err != nil {
			_ = heal()
			return nil, time.Time{}, err
		}
		for _, d := range minority {
			for _, write := range []bool{false, true} {
				wg.Go(func() {
					p := probe(ctx, c, d, write)
					p.Step = step
					logf("  probe %s write=%v: %v %s", d.Host.Name, write, p.Elapsed.Round(time.Millisecond), orOK(p.Err))
					mu.Lock()
					probes = append(probes, p)
					mu.Unlock()
				})
			}
		}
	}
	var downs []string
	if watchDown {
		wctx, stopWatch := context.WithCancel(ctx)
		wg.Go(func() { downs = c.watchNotReady(wctx) })
		herr := hold(step.Hold)
		stopWatch()
		wg.Wait()
		for _, d := range downs {
			probes = append(probes, Probe{Step: step, Via: d, Down: true})
		}
		t1 := time.Now()
		if err := heal(); err != nil {
			return probes, time.Time{}, fmt.Errorf("heal: %w", err)
		}
		logf("  healed in %v", time.Since(t1).Round(time.Millisecond))
		return probes, time.Now(), herr
	}
	herr := hold(step.Hold)
	wg.Wait() // a probe may outlast the hold; the fault stays until it ends
	t1 := time.Now()
	if err := heal(); err != nil {
		return probes, time.Time{}, fmt.Errorf("heal: %w", err)
	}
	logf("  healed in %v", time.Since(t1).Round(time.Millisecond))
	return probes, time.Now(), herr
}

// probe makes one read or write through d's socket and times it.
func probe(ctx context.Context, c *Cluster, d *Daemon, write bool) Probe {
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	id := c.NodeIDs[d.Host.Name]
	start := time.Now()
	var err error
	if write {
		_, err = d.Control().UpdateNode(pctx, &swarmpb.UpdateNodeRequest{Node: id, LabelAdd: map[string]string{"probe": "minority"}})
	} else {
		_, err = d.Control().GetNode(pctx, &swarmpb.GetNodeRequest{Node: id})
	}
	p := Probe{Via: d.Host.Name, Write: write, Elapsed: time.Since(start)}
	if err != nil {
		p.Err = err.Error()
	}
	return p
}

// each runs fn on every daemon at once.
func each(ds []*Daemon, fn func(*Daemon) error) error {
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = fn(d) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func names(ds []*Daemon) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Host.Name)
	}
	return out
}

// Median and max of durations, for reports.
func MedianMax(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)-1]
}
