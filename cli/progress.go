package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	barWidth = 50
	// failuresBeforeGivingUp is how many failed/rejected tasks of the current
	// spec one slot may have before the wait reports the service as failing.
	failuresBeforeGivingUp = 3
	// emptyGlobalPolls is how many polls a global service may show no task at
	// all before it counts as converged with 0 tasks.
	emptyGlobalPolls = 5
)

// progressStates are the states a task goes through until it runs, in order;
// the bar fills up along them.
var progressStates = []swarmpb.TaskState{
	swarmpb.TaskState_TASK_STATE_NEW,
	swarmpb.TaskState_TASK_STATE_PENDING,
	swarmpb.TaskState_TASK_STATE_ASSIGNED,
	swarmpb.TaskState_TASK_STATE_ACCEPTED,
	swarmpb.TaskState_TASK_STATE_PREPARING,
	swarmpb.TaskState_TASK_STATE_STARTING,
	swarmpb.TaskState_TASK_STATE_RUNNING,
}

// stateWord is the lower-case name of a task state: "running", "failed".
func stateWord(s swarmpb.TaskState) string {
	name, ok := swarmpb.TaskState_name[int32(s)]
	if !ok {
		return fmt.Sprintf("state(%d)", s)
	}
	return strings.ToLower(strings.TrimPrefix(name, "TASK_STATE_"))
}

func progressBar(s swarmpb.TaskState) string {
	step := -1
	for i, ps := range progressStates {
		if ps == s {
			step = i
		}
	}
	if step < 0 {
		return strings.Repeat(" ", barWidth+1)
	}
	fill := barWidth * (step + 1) / len(progressStates)
	return strings.Repeat("=", fill) + ">" + strings.Repeat(" ", barWidth-fill)
}

// convergence is one evaluation of a service's tasks.
type convergence struct {
	running, desired int
	lines            []string
	converged        bool
	failure          string // why the service cannot converge
	lastErr          string // the most recent task error seen
}

func taskErr(t *swarmpb.Task) string {
	if e := t.GetStatus().GetErr(); e != "" {
		return e
	}
	return t.GetStatus().GetMessage()
}

// newer orders tasks newest first.
func newer(a, b *swarmpb.Task) bool {
	if ca, cb := a.GetMeta().GetCreatedAt(), b.GetMeta().GetCreatedAt(); ca != cb {
		return ca > cb
	}
	if ta, tb := a.GetStatus().GetTimestamp(), b.GetStatus().GetTimestamp(); ta != tb {
		return ta > tb
	}
	return a.GetId() > b.GetId()
}

func isFailed(s swarmpb.TaskState) bool {
	return s == swarmpb.TaskState_TASK_STATE_FAILED || s == swarmpb.TaskState_TASK_STATE_REJECTED
}

// evaluate computes how far svc is from running its current spec.
func evaluate(svc *swarmpb.Service, tasks []*swarmpb.Task, polls int) convergence {
	var c convergence
	global := svc.GetSpec().GetMode() == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	key := func(t *swarmpb.Task) string {
		if global {
			return t.GetNodeId()
		}
		return fmt.Sprintf("%020d", t.GetSlot())
	}
	// The newest task meant to run, per slot (or node).
	active := map[string]*swarmpb.Task{}
	failures := map[string]int{}
	var newestErr *swarmpb.Task
	for _, t := range tasks {
		if t.GetSpecVersion() != svc.GetSpecVersion() {
			continue
		}
		st := t.GetStatus().GetState()
		if isFailed(st) {
			failures[key(t)]++
			if taskErr(t) != "" && (newestErr == nil || newer(t, newestErr)) {
				newestErr = t
			}
			if st == swarmpb.TaskState_TASK_STATE_REJECTED && t.GetStatus().GetErr() != "" && c.failure == "" {
				c.failure = t.GetStatus().GetErr()
			}
		}
		if t.GetDesiredState() > swarmpb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		if cur, ok := active[key(t)]; !ok || newer(t, cur) {
			active[key(t)] = t
		}
	}
	if newestErr != nil {
		c.lastErr = taskErr(newestErr)
	}
	if c.failure == "" {
		for k, n := range failures {
			if n >= failuresBeforeGivingUp {
				c.failure = c.lastErr
				if c.failure == "" {
					c.failure = fmt.Sprintf("%d tasks of slot %s failed", n, strings.TrimLeft(k, "0"))
				}
				break
			}
		}
	}
	keys := make([]string, 0, len(active))
	for k := range active {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if active[k].GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING {
			c.running++
		}
	}
	if global {
		c.desired = len(keys)
		for _, k := range keys {
			st := active[k].GetStatus().GetState()
			c.lines = append(c.lines, fmt.Sprintf("%s: %-9s [%s]", shortID(k), stateWord(st), progressBar(st)))
		}
		c.converged = c.running == c.desired && (c.desired > 0 || polls >= emptyGlobalPolls)
	} else {
		c.desired = int(svc.GetSpec().GetReplicas())
		for i := 0; i < c.desired; i++ {
			if i < len(keys) {
				st := active[keys[i]].GetStatus().GetState()
				c.lines = append(c.lines, fmt.Sprintf("%d/%d: %-9s [%s]", i+1, c.desired, stateWord(st), progressBar(st)))
			} else {
				c.lines = append(c.lines, fmt.Sprintf("%d/%d:", i+1, c.desired))
			}
		}
		c.converged = c.running >= c.desired
	}
	if c.running > c.desired {
		c.running = c.desired
	}
	return c
}

// progressPrinter draws the progress, in place on a terminal.
type progressPrinter struct {
	w        io.Writer
	terminal bool
	drawn    int      // lines drawn last time (terminal)
	last     []string // lines printed last time (plain)
}

func (p *progressPrinter) draw(lines []string) {
	if p.terminal {
		var b strings.Builder
		if p.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
		}
		for _, l := range lines {
			b.WriteString("\x1b[2K" + l + "\n")
		}
		for i := len(lines); i < p.drawn; i++ {
			b.WriteString("\x1b[2K\n")
		}
		if p.drawn > len(lines) {
			fmt.Fprintf(&b, "\x1b[%dA", p.drawn-len(lines))
		}
		p.drawn = len(lines)
		_, _ = io.WriteString(p.w, b.String())
		return
	}
	var b strings.Builder
	for i, l := range lines {
		if i >= len(p.last) || p.last[i] != l {
			b.WriteString(l + "\n")
		}
	}
	p.last = lines
	_, _ = io.WriteString(p.w, b.String())
}

func (a *app) isTerminal() bool {
	if a.opts.terminal != nil {
		return *a.opts.terminal
	}
	f, ok := a.stdout.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// waitConverged polls the service until the tasks of its current spec run,
// a task keeps failing, or timeout passes.
func (a *app) waitConverged(ctl swarmpb.ControlClient, id, name string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultWaitTimeout
	}
	start := time.Now()
	deadline := start.Add(timeout)
	p := &progressPrinter{w: a.stdout, terminal: a.isTerminal()}
	ticker := time.NewTicker(a.opts.pollInterval)
	defer ticker.Stop()
	var lastErr string
	verifying := false
	for polls := 0; ; polls++ {
		var svc *swarmpb.Service
		var tasks []*swarmpb.Task
		err := a.call(0, func(ctx context.Context) error {
			resp, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
			svc = resp.GetService()
			return err
		})
		if err == nil {
			err = a.call(0, func(ctx context.Context) error {
				var err error
				tasks, _, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Services: []string{id}})
				return err
			})
		}
		if err != nil {
			return err
		}
		c := evaluate(svc, tasks, polls)
		if c.lastErr != "" {
			lastErr = c.lastErr
		}
		if c.failure == "" {
			c.failure = pausedUpdate(svc, start)
		}
		lines := append([]string{fmt.Sprintf("overall progress: %d out of %d tasks", c.running, c.desired)}, c.lines...)
		p.draw(lines)
		switch {
		case c.failure != "":
			return fmt.Errorf("service %s did not converge: %s", name, c.failure)
		case c.converged && updateInFlight(svc):
			// Tasks run; the daemon still watches them for the update's
			// monitor period before calling the update complete.
			if !verifying {
				verifying = true
				fmt.Fprintf(a.stdout, "verify: Waiting %d seconds to verify that tasks are stable...\n", monitorSeconds(svc))
			}
		case c.converged:
			if msg := autoRollback(svc, start); msg != "" {
				return fmt.Errorf("service %s: %s", name, msg)
			}
			fmt.Fprintln(a.stdout, "verify: Service converged")
			return nil
		case !time.Now().Before(deadline):
			msg := fmt.Sprintf("timed out after %s with %d out of %d tasks running", timeout, c.running, c.desired)
			if lastErr != "" {
				msg = lastErr + " (" + msg + ")"
			}
			return fmt.Errorf("service %s did not converge: %s", name, msg)
		}
		<-ticker.C
	}
}

// pausedUpdate reports an update of svc started by this command that the
// daemon paused, or "".
func pausedUpdate(svc *swarmpb.Service, start time.Time) string {
	us := svc.GetUpdateStatus()
	if us.GetStartedAt() < start.Add(-time.Second).UnixNano() {
		return ""
	}
	if !us.Paused() {
		return ""
	}
	if m := us.GetMessage(); m != "" {
		return m
	}
	return "update " + us.Current().Text()
}

// updateInFlight reports a rolling update (or rollback) the daemon has
// not finished, typically in its monitor period.
func updateInFlight(svc *swarmpb.Service) bool {
	return svc.GetUpdateStatus().InProgress()
}

func monitorSeconds(svc *swarmpb.Service) int64 {
	cfg := svc.GetSpec().GetUpdate()
	if svc.GetUpdateStatus().Current() == swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED {
		cfg = svc.GetSpec().GetRollback()
	}
	return int64(time.Duration(cfg.GetMonitorNs()).Round(time.Second) / time.Second)
}

// autoRollback reports an update this command started that the daemon
// rolled back because new tasks failed.
func autoRollback(svc *swarmpb.Service, start time.Time) string {
	us := svc.GetUpdateStatus()
	if us.Current() != swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED || us.GetStartedAt() < start.Add(-time.Second).UnixNano() {
		return ""
	}
	if us.RolledBackOnFailure() {
		return us.GetMessage()
	}
	return ""
}
