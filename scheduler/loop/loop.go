package loop

import (
	"context"
	"github.com/raftswarm/raftswarm/internal/clock"
	"log/slog"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/scheduler"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// needsPlacement reports a task waiting for the scheduler.
func needsPlacement(t *swarmpb.Task) bool {
	return t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() <= swarmpb.TaskState_TASK_STATE_PENDING
}

// Applier is what the loop needs from Raft: a way to propose a batch.
type Applier interface {
	Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error)
}

// failedEnd reports a task that ended other than by completing.
func failedEnd(t *swarmpb.Task) bool {
	st := t.GetStatus().GetState()
	return st > swarmpb.TaskState_TASK_STATE_RUNNING && st != swarmpb.TaskState_TASK_STATE_COMPLETE
}

// schedLoop keeps a Scheduler in step with the store and writes
// its placements. It is the single writer of assignments.
type schedLoop struct {
	// observePass, if set, receives each scheduling pass's duration (metrics).
	observePass func(time.Duration)
	store       *state.Store
	raft        Applier
	log         *slog.Logger
	sched       *scheduler.Scheduler
	pending     map[string]*swarmpb.Task
	// backlog holds the IDs of a round through more pending tasks than
	// one pass takes; each pass takes the next passLimit of them.
	backlog   []string
	passLimit int
}

// maxSchedulePass bounds the tasks one scheduling pass considers, so that
// the pass's copies and decisions stay bounded however many tasks wait
// (as many as a service's replicas when no node fits them).
const maxSchedulePass = 10_000

// Run runs the scheduling loop until ctx ends: the leader runs it for
// the length of its term. It is the single writer of assignments.
func Run(ctx context.Context, st *state.Store, r Applier, log *slog.Logger) error {
	return RunObserved(ctx, st, r, log, nil)
}

// RunObserved is Run reporting the duration of each scheduling pass that
// had tasks to place to observe (nil: none).
func RunObserved(ctx context.Context, st *state.Store, r Applier, log *slog.Logger, observe func(time.Duration)) error {
	l := &schedLoop{store: st, raft: r, log: log, passLimit: maxSchedulePass, observePass: observe}
	for ctx.Err() == nil {
		if err := l.runWatch(ctx); err != nil {
			return err
		}
	}
	return nil
}

// runWatch runs over one watch; it returns nil when the watch is closed by
// a snapshot restore, to be restarted from fresh state.
func (l *schedLoop) runWatch(ctx context.Context) error {
	l.sched = scheduler.New()
	l.pending = map[string]*swarmpb.Task{}
	l.backlog = nil
	events, cancel := l.store.ViewAndWatch(func(tx state.ReadTx) {
		for _, n := range tx.ListNodes() {
			l.sched.UpsertNode(n)
		}
		// Unordered: sorting every task would hold the lock far longer.
		for _, sid := range tx.TaskServiceIDs() {
			for _, t := range tx.TasksByServiceUnordered(sid) {
				l.observe(t)
			}
		}
	})
	defer cancel()
	l.schedule(ctx)
	again := time.NewTimer(time.Hour)
	if len(l.backlog) > 0 {
		again.Reset(0)
	}
	defer again.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-again.C:
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			l.apply(ev)
		drain:
			for i := 0; i < 20000; i++ {
				select {
				case ev, ok := <-events:
					if !ok {
						return nil
					}
					l.apply(ev)
				default:
					break drain
				}
			}
		}
		ok := l.schedule(ctx)
		switch {
		case !ok:
			again.Reset(200 * time.Millisecond)
		case len(l.backlog) > 0:
			again.Reset(0) // the rest of the round, after any events
		}
	}
}

func (l *schedLoop) observe(t *swarmpb.Task) {
	if needsPlacement(t) {
		l.pending[t.Id] = t
	} else {
		delete(l.pending, t.Id)
	}
	if t.NodeId != "" && t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_ASSIGNED {
		l.sched.AddTask(t) // also removes it when it no longer counts
	}
}

func (l *schedLoop) apply(ev state.Event) {
	switch {
	case ev.Node() != nil:
		if ev.Kind == state.EventDelete {
			l.sched.RemoveNode(ev.Node().Id)
		} else {
			l.sched.UpsertNode(ev.Node())
		}
	case ev.Task() != nil:
		t := ev.Task()
		if ev.Kind == state.EventDelete {
			l.sched.RemoveTask(t)
			delete(l.pending, t.Id)
			return
		}
		if old, _ := ev.Old.(*swarmpb.Task); old != nil && !failedEnd(old) && failedEnd(t) && t.NodeId != "" {
			l.sched.NodeFailed(t.NodeId, t.ServiceId, time.Unix(0, t.Status.Timestamp))
		}
		l.observe(t)
	}
}

// pass returns the tasks to place now: every pending task, or when there
// are more than passLimit, the next passLimit of a round through them all
// (so no task waits more than a round, and a pass stays bounded).
func (l *schedLoop) pass() []*swarmpb.Task {
	if len(l.backlog) == 0 && len(l.pending) <= l.passLimit {
		tasks := make([]*swarmpb.Task, 0, len(l.pending))
		for _, t := range l.pending {
			tasks = append(tasks, t)
		}
		return tasks
	}
	if len(l.backlog) == 0 {
		l.backlog = make([]string, 0, len(l.pending))
		for id := range l.pending {
			l.backlog = append(l.backlog, id)
		}
	}
	tasks := make([]*swarmpb.Task, 0, l.passLimit)
	for len(tasks) < l.passLimit && len(l.backlog) > 0 {
		if t, ok := l.pending[l.backlog[0]]; ok {
			tasks = append(tasks, t)
		}
		l.backlog = l.backlog[1:]
	}
	if len(l.backlog) == 0 {
		l.backlog = nil
	}
	return tasks
}

// schedule places every pending task in one pass and writes the result in
// batches. It returns false when a write failed and should be retried.
func (l *schedLoop) schedule(ctx context.Context) bool {
	tasks := l.pass()
	if len(tasks) == 0 {
		return true
	}
	now := clock.Now()
	if l.observePass != nil {
		defer func() { l.observePass(time.Since(now)) }()
	}
	decisions := l.sched.Schedule(tasks, now)
	byID := make(map[string]*swarmpb.Task, len(tasks))
	for _, t := range tasks {
		byID[t.Id] = t
	}
	var acts []*swarmpb.StoreAction
	for _, d := range decisions {
		t := byID[d.TaskID]
		if d.NodeID == "" {
			if t.SchedulingMessage == d.Reason && t.Status.GetMessage() == d.Reason {
				continue
			}
			c := proto.Clone(t).(*swarmpb.Task)
			c.SchedulingMessage = d.Reason
			c.Status.Message = d.Reason
			c.Status.State = swarmpb.TaskState_TASK_STATE_PENDING
			acts = append(acts, state.Update(c))
			continue
		}
		c := proto.Clone(t).(*swarmpb.Task)
		c.NodeId = d.NodeID
		c.SchedulingMessage = ""
		c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED, Message: "scheduler assigned task to node", Timestamp: now.UnixNano()}
		acts = append(acts, state.Update(c))
	}
	ok := true
	for len(acts) > 0 {
		n := state.BatchLen(acts)
		if _, err := l.raft.Apply(ctx, state.Batch(acts[:n]...)); err != nil {
			// The batch was refused whole (usually a task changed since we
			// read it). Forget this pass's placements; the events bring
			// the fresh tasks back and the retry places them again.
			for _, a := range acts[:n] {
				if t := a.GetTask(); t.NodeId != "" && byID[t.Id].NodeId == "" {
					l.sched.RemoveTask(t)
				}
			}
			if ctx.Err() == nil {
				state.LogWriteFailure(l.log, "writing placements failed; retrying", err)
			}
			ok = false
		} else {
			// Written: the tasks come back through the watch with their
			// new versions; until then they must not be placed again.
			for _, a := range acts[:n] {
				delete(l.pending, a.GetTask().Id)
			}
		}
		acts = acts[n:]
	}
	return ok
}
