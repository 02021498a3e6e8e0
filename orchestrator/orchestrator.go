package orchestrator

import (
	"context"
	"errors"
	"github.com/raftswarm/raftswarm/internal/clock"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	swarmspec "github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
)

// Raft is where the loops write.
type Raft interface {
	Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error)
}

// Bounds on the orchestrator's work. A Raft entry is bounded by
// state.BatchLen. One reconciliation pass writes at most maxPassTasks
// tasks; what remains is done by the next pass, which follows at once.
const maxPassTasks = 10_000

// maxPassShutdowns bounds the tasks one pass shuts down when a service is
// scaled down (replicated.go): a pass's plan then holds up to this many
// task copies, written in entries bounded by state.BatchLen.
const maxPassShutdowns = 100_000

// lazyDelay is how long a change that only matters to the clean-up of
// tasks (one placed by the scheduler, a stopping task's progress toward its
// end) may wait before its service is reconciled: such changes come in one
// per Raft entry, and at 100,000 tasks reconciling the whole service for
// each made scaling down and placing quadratic in tasks.
const lazyDelay = 500 * time.Millisecond

// lazyPassShare bounds the share of the orchestrator's time that changes
// which may wait can take: they wait at least lazyPassShare times as long
// as the last pass took. A pass reads every task of the services it
// reconciles, so at 100,000 tasks a pass every lazyDelay through a create
// or a scale-down (one per scheduler or status entry) made the
// orchestrator's work grow with the tasks times the phase's length, itself
// growing with the tasks.
const lazyPassShare = 10

// Orchestrator reconciles services into tasks for one leadership term.
type Orchestrator struct {
	// observe, if set, receives each reconcile pass's duration (metrics).
	observe func(time.Duration)
	store   *state.Store
	raft    Raft
	log     *slog.Logger
	now     func() time.Time

	// stableAt records, per service, when its last rolling-update batch
	// finished; the update delay counts from there. It is term-local: a
	// new leader restarts the delay, which only ever slows an update.
	stableAt map[string]time.Time
	// failedSeen records when this term first saw each ended task whose
	// restart waits (restart.go).
	failedSeen map[string]time.Time
	// batched records services for which this term started an update
	// batch, so the delay separates batches but never delays the first.
	batched map[string]bool
	// resume names the service (or removed service) that used up the last
	// pass's budget: the next pass starts after it.
	resume string
	// capped records services whose replicas were clamped, to warn once.
	capped map[string]bool
	// follows records the services that wait on their tasks' progress
	// toward RUNNING (an update in progress or outdated tasks: the next
	// batch starts once the last one runs). For the others a task's
	// progress through ACCEPTED ... RUNNING changes no decision, so those
	// events do not make them dirty: at 100,000 tasks, reconciling the
	// whole service for every status write was the one step quadratic in
	// tasks. Recomputed for every service a pass reconciles.
	follows map[string]bool
	// lazy records services with changes that may wait (lazyEvent) until
	// lazyDue, set by the first of them; lazyWait is lazyDelay (tests
	// change it).
	lazy     map[string]bool
	lazyDue  time.Time
	lazyWait time.Duration
	// lastPass is how long the last reconcile pass took (lazyPassShare).
	lastPass time.Duration
	// usable holds the nodes that were up and not drained in the last
	// pass's view. A task placed on one of them changes nothing any pass
	// would do, so placements there wake nothing: a node that has gone
	// down or been drained since has an event of its own, which makes every
	// service dirty, and the pass it causes reads the placement too.
	usable map[string]bool
	// global records the global services seen by the passes: the only
	// ones a node that becomes usable again concerns.
	global map[string]bool
	// writeFailed: the last pass's writes failed (a conflict, mostly with
	// a status write); until one succeeds every task event wakes its
	// service at once, as the status write that conflicted is the cue to
	// try again.
	writeFailed bool
	// passLimit is maxPassTasks; tests lower it.
	passLimit int
	// planning, if set, is called while a pass plans, with the IDs it
	// reconciles (tests).
	planning func(items []string)
	// desiredPatches: Options.DesiredPatches.
	desiredPatches func() bool
}

// RunOrchestrator runs the orchestrator until ctx ends.
func RunOrchestrator(ctx context.Context, st *state.Store, r Raft, log *slog.Logger) error {
	return newOrchestrator(st, r, log).run(ctx)
}

// RunOrchestratorObserved is RunOrchestrator reporting the duration of
// each reconcile pass to observe (nil: none).
func RunOrchestratorObserved(ctx context.Context, st *state.Store, r Raft, log *slog.Logger, observe func(time.Duration)) error {
	return RunOrchestratorWith(ctx, st, r, log, Options{Observe: observe})
}

// Options are the orchestrator's optional collaborators.
type Options struct {
	// Observe, if set, receives each reconcile pass's duration.
	Observe func(time.Duration)
	// DesiredPatches reports whether every manager applies task
	// desired-state patches (state.UpdateTaskDesired; Raft store-batch
	// payload version 3). Asked once a pass; while it reports false (a
	// manager not yet upgraded), or if it is nil, the orchestrator writes
	// whole tasks, which every manager reads.
	DesiredPatches func() bool
}

// RunOrchestratorWith is RunOrchestrator with opts.
func RunOrchestratorWith(ctx context.Context, st *state.Store, r Raft, log *slog.Logger, opts Options) error {
	o := newOrchestrator(st, r, log)
	o.observe, o.desiredPatches = opts.Observe, opts.DesiredPatches
	return o.run(ctx)
}

// timedReconcile is reconcile, timed for metrics and for lazyWaitNow.
func (o *Orchestrator) timedReconcile(ctx context.Context, dirty map[string]bool) time.Time {
	start := time.Now()
	wake := o.reconcile(ctx, dirty)
	o.lastPass = time.Since(start)
	if o.observe != nil {
		o.observe(o.lastPass)
	}
	return wake
}

// lazyWaitNow is how long changes that may wait wait: lazyWait, or
// lazyPassShare times the last pass if that is longer.
func (o *Orchestrator) lazyWaitNow() time.Duration {
	return max(o.lazyWait, lazyPassShare*o.lastPass)
}

func newOrchestrator(st *state.Store, r Raft, log *slog.Logger) *Orchestrator {
	return &Orchestrator{store: st, raft: r, log: log, now: clock.Now, stableAt: map[string]time.Time{}, failedSeen: map[string]time.Time{},
		batched: map[string]bool{}, capped: map[string]bool{}, follows: map[string]bool{}, global: map[string]bool{}, passLimit: maxPassTasks,
		lazy: map[string]bool{}, lazyWait: lazyDelay}
}

func (o *Orchestrator) run(ctx context.Context) error {
	events, cancel := o.store.Watch()
	defer func() { cancel() }()
	wake := o.timedReconcile(ctx, nil)
	timer := time.NewTimer(time.Until(wake))
	defer timer.Stop()
	for {
		var dirty map[string]bool // service IDs; nil means all
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			if len(o.lazy) > 0 && o.now().Before(wake) {
				dirty = o.takeLazy() // only the waiting changes are due
			}
		case ev, ok := <-events:
			if !ok {
				cancel()
				events, cancel = o.store.Watch()
				break
			}
			dirty = map[string]bool{}
			o.markDirty(dirty, ev)
			// Take whatever else is queued, so a burst of events costs one
			// reconciliation.
		drain:
			for i := 0; i < 10000 && dirty != nil; i++ {
				select {
				case ev, ok := <-events:
					if !ok {
						break drain
					}
					o.markDirty(dirty, ev)
					if dirty["*"] {
						dirty = nil
					}
				default:
					break drain
				}
			}
			if dirty != nil && dirty["*"] {
				dirty = nil
			}
			if dirty != nil && len(o.lazy) > 0 && !o.now().Before(o.lazyDue) {
				for id := range o.takeLazy() {
					dirty[id] = true
				}
			}
			if dirty != nil && len(dirty) == 0 {
				// Nothing that changes a decision now; what may wait
				// is due at lazyDue.
				resetTimer(timer, o.nextWake(wake))
				continue
			}
		}
		if dirty == nil {
			clear(o.lazy) // a full pass sees every service
		} else {
			for id := range dirty {
				delete(o.lazy, id)
			}
		}
		prev := wake
		wake = o.timedReconcile(ctx, dirty)
		if dirty != nil && prev.After(o.now()) && prev.Before(wake) {
			// A partial pass knows only its services' timers (restart
			// delays, update monitors); keep the earlier one it did not see.
			wake = prev
		}
		resetTimer(timer, o.nextWake(wake))
	}
}

func resetTimer(t *time.Timer, at time.Time) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(time.Until(at))
}

// nextWake is when the loop must run without an event: at wake, or
// earlier when lazy changes fall due.
func (o *Orchestrator) nextWake(wake time.Time) time.Time {
	if len(o.lazy) > 0 && o.lazyDue.Before(wake) {
		return o.lazyDue
	}
	return wake
}

// takeLazy returns the services whose changes waited, and forgets them.
func (o *Orchestrator) takeLazy() map[string]bool {
	d := make(map[string]bool, len(o.lazy))
	for id := range o.lazy {
		d[id] = true
	}
	clear(o.lazy)
	return d
}

// markDirty records which services an event concerns; "*" means all
// (a node changed, or the cluster settings did).
func (o *Orchestrator) markDirty(d map[string]bool, ev state.Event) {
	switch {
	case ev.Service() != nil:
		d[ev.Service().Id] = true
	case ev.Task() != nil:
		t := ev.Task()
		if (ev.Kind == state.EventCreate || ev.Kind == state.EventDelete) && !o.follows[t.ServiceId] && !o.writeFailed {
			// Only the orchestrator creates and deletes tasks, and within
			// a term only this one: the pass that wrote it decided it. A
			// create of 100,000 tasks woke a pass per 10,000 of its own
			// creations on top of the passes that made them.
			return
		}
		if ev.Kind == state.EventUpdate && !o.follows[t.ServiceId] {
			switch {
			case onlyProgress(ev.Old, t):
				return
			case !o.writeFailed && placed(ev.Old, t) && o.usable[t.NodeId]:
				return
			case !o.writeFailed && lazyEvent(ev.Old, t):
				if len(o.lazy) == 0 {
					o.lazyDue = o.now().Add(o.lazyWaitNow())
				}
				o.lazy[t.ServiceId] = true
				return
			}
		}
		d[t.ServiceId] = true
	case ev.Node() != nil:
		old, _ := ev.Old.(*swarmpb.Node)
		n := ev.Node()
		switch {
		case old == nil || ev.Kind == state.EventDelete || old.Role != n.Role ||
			!mapsEqual(old.GetSpec().GetLabels(), n.GetSpec().GetLabels()):
			d["*"] = true
		case old.Status == n.Status && old.GetSpec().GetAvailability() == n.GetSpec().GetAvailability():
		case !usableNode(old) && usableNode(n):
			// Back up, or no longer drained: a replicated service's
			// decisions do not change (its tasks there were replaced or
			// are kept; new tasks are the scheduler's to place), so only
			// global services are reconciled. After nodes were found down
			// under load, each one's heartbeat coming back was a pass over
			// every task of every service.
			for id := range o.global {
				d[id] = true
			}
		default:
			d["*"] = true
		}
	case ev.Cluster() != nil:
		d["*"] = true
	}
}

// onlyProgress reports an update that only moves an assigned task forward
// on its node, up to RUNNING: nothing else about it changed (node,
// desired state, spec version), and it did not end.
func onlyProgress(oldObj any, t *swarmpb.Task) bool {
	old, _ := oldObj.(*swarmpb.Task)
	if old == nil {
		return false
	}
	from, to := old.GetStatus().GetState(), t.GetStatus().GetState()
	return old.NodeId == t.NodeId && old.DesiredState == t.DesiredState && old.SpecVersion == t.SpecVersion &&
		from >= swarmpb.TaskState_TASK_STATE_ASSIGNED && to >= from && to <= swarmpb.TaskState_TASK_STATE_RUNNING
}

// lazyEvent reports an update that changes no decision but the clean-up
// of finished tasks (reapHistory, reapOrphans), which may wait: the
// scheduler placing a task (the task's node is up, or the node's own event
// makes every service dirty), a task asked to stop moving toward its end,
// or a task being asked to stop. A live task that ended is not one: its
// restart is due.
//
// Only the orchestrator writes a task's desired state, and within a term
// only this one (the term starts after every earlier entry is applied), so
// a task asked to stop is this orchestrator's own write: the pass that
// wrote it planned what it implies (the replacement is in the same pass).
// Counted as a change, the 100,000 shutdowns of a scale to 0 came back as
// 100,000 events, taken 10,000 at a time, each time a pass over every task.
func lazyEvent(oldObj any, t *swarmpb.Task) bool {
	old, _ := oldObj.(*swarmpb.Task)
	if old == nil || old.SpecVersion != t.SpecVersion || t.GetStatus().GetState() < old.GetStatus().GetState() {
		return false
	}
	if old.DesiredState != t.DesiredState {
		return old.NodeId == t.NodeId && t.DesiredState > old.DesiredState && t.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING
	}
	if old.NodeId != t.NodeId {
		return placed(old, t)
	}
	return t.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING
}

// placed reports an update that places a task as the scheduler does: from
// no node to one, nothing else about it changed but its status, which
// moved forward and not past RUNNING.
func placed(oldObj any, t *swarmpb.Task) bool {
	old, _ := oldObj.(*swarmpb.Task)
	return old != nil && old.NodeId == "" && t.NodeId != "" && old.DesiredState == t.DesiredState &&
		old.SpecVersion == t.SpecVersion && t.GetStatus().GetState() >= old.GetStatus().GetState() &&
		t.GetStatus().GetState() <= swarmpb.TaskState_TASK_STATE_RUNNING
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// reconcile brings the given services (all when nil) to their desired
// state and returns when it next needs to run without an event. It reads
// under the store's lock only long enough to copy what it needs, plans
// without it, and writes at most passLimit tasks; if there was more to do
// it asks to run again at once.
func (o *Orchestrator) reconcile(ctx context.Context, dirty map[string]bool) time.Time {
	now := o.now()
	wake := now.Add(time.Minute)
	v := readView(o.store, dirty)
	o.usable = v.usableNodes(o.usable)
	if o.planning != nil {
		o.planning(v.items)
	}
	p := newPlan(v, now, o.passLimit)
	p.patches = o.desiredPatches != nil && o.desiredPatches()
	if len(o.failedSeen) > maxFailedSeen {
		clear(o.failedSeen) // bounded; a wait may start again from now
	}
	p.failedSeen = o.failedSeen
	resume := ""
	for _, id := range rotate(v.items, o.resume) {
		delete(o.follows, id) // set again by the update logic if it waits on tasks
		if svc := v.GetService(id); svc != nil {
			o.reconcileService(p, svc)
		} else {
			delete(o.global, id)
			p.reapOrphans(v.TasksByService(id))
		}
		if p.more && resume == "" {
			resume = id
		}
	}
	o.resume = resume
	changes, creates, fills := p.actions()
	if p.wake.Before(wake) {
		wake = p.wake
	}
	if p.more {
		wake = now
	}
	// Replacements are not written when a change was not: one may replace
	// a task whose shutdown was refused, and the next pass plans them
	// again from what was written. Fills (new slots) are written anyway:
	// they wait on nothing, and holding them back behind changes that
	// conflicted with agents' reports (tasks on nodes found down) stalled
	// a 100,000-task create for seconds at a time.
	changed := o.write(ctx, changes)
	filled := o.write(ctx, fills)
	o.writeFailed = !changed || !filled || !o.write(ctx, creates)
	if o.writeFailed {
		// Usually a conflict with an agent's status write: the event it
		// caused brings us back (writeFailed makes every event count),
		// and so does this timer.
		return now.Add(100 * time.Millisecond)
	}
	return wake
}

// writesInFlight bounds the entries one write has in Raft at once. Raft
// appends, replicates and syncs entries that wait together as one batch,
// and each is applied while the next is replicated: written one at a time,
// scaling 100,000 tasks to 0 (50 entries of 2,000 updates) took most of
// its time waiting on each entry in turn. Eight rather than four: on the
// scale benchmark's saturated machine the 100,000 shutdowns of a scale to
// 0 were written in 6.1-6.8 s against 9.4-9.7 s (two pairs of runs,
// alternated; BENCHMARKS.md section 14).
const writesInFlight = 8

// write writes acts in entries bounded by state.BatchLen, up to
// writesInFlight of them in Raft at once, and reports whether all of them
// were written. The entries of one write are independent (no task is in
// two of them), so their order does not matter. An entry refused for a
// conflict (a task changed since the pass read it, mostly an agent's
// status report) does not stop the others: each carries the versions it
// read and is refused on its own if it is stale too, so what is written
// is a part of the plan that still holds, and the next pass redoes only
// the rest. Stopping at the first conflict made a pass of 10,000 changes
// (tasks on nodes found down after a change of leader, with their agents
// still reporting) write almost nothing, pass after pass. Any other
// failure (the term ended, the write's outcome unknown) stops the write.
func (o *Orchestrator) write(ctx context.Context, acts []*swarmpb.StoreAction) bool {
	var entries [][]*swarmpb.StoreAction
	for len(acts) > 0 {
		n := state.BatchLen(acts)
		entries, acts = append(entries, acts[:n]), acts[n:]
	}
	errs := make([]error, len(entries))
	var stopped atomic.Bool // a failure other than a conflict
	slots := make(chan struct{}, writesInFlight)
	var wg sync.WaitGroup
	for i, e := range entries {
		slots <- struct{}{}
		if stopped.Load() {
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if _, err := o.raft.Apply(ctx, state.Batch(e...)); err != nil {
				errs[i] = err
				if !errors.Is(err, state.ErrConflict) {
					stopped.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	// One line for the write: what stopped it, else the first conflict.
	var failed error
	for _, err := range errs {
		if err != nil && (failed == nil || errors.Is(failed, state.ErrConflict) && !errors.Is(err, state.ErrConflict)) {
			failed = err
		}
	}
	if failed != nil && ctx.Err() == nil {
		state.LogWriteFailure(o.log, "orchestrator write failed; reconciling again", failed)
	}
	return failed == nil
}

// replicas is the replica count to run: the spec's, clamped to the
// absolute cap, so that a spec stored before the API enforced the cap (or
// written around it) cannot grow the store without bound.
func (o *Orchestrator) replicas(svc *swarmpb.Service) uint64 {
	n := svc.GetSpec().GetReplicas()
	if n <= swarmspec.MaxReplicasLimit {
		return n
	}
	if !o.capped[svc.Id] {
		o.capped[svc.Id] = true
		o.log.Warn("service asks for more replicas than any cluster may run; running the maximum",
			"service", svc.GetSpec().GetName(), "replicas", n, "max", swarmspec.MaxReplicasLimit)
	}
	return swarmspec.MaxReplicasLimit
}

func (o *Orchestrator) reconcileService(p *plan, svc *swarmpb.Service) {
	if svc.Spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
		o.global[svc.Id] = true
		o.reconcileGlobal(p, svc)
	} else {
		delete(o.global, svc.Id)
		o.reconcileReplicated(p, svc)
	}
}
