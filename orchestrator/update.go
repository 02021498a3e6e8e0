package orchestrator

import (
	"fmt"
	"sort"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// Update states, shortened.
const (
	updateUpdating          = swarmpb.UpdateState_UPDATE_STATE_UPDATING
	updatePaused            = swarmpb.UpdateState_UPDATE_STATE_PAUSED
	updateCompleted         = swarmpb.UpdateState_UPDATE_STATE_COMPLETED
	updateRollbackStarted   = swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
	updateRollbackPaused    = swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED
	updateRollbackCompleted = swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
)

// rollingUpdate replaces live tasks older than the service's spec_version
// a batch at a time, per the update (or rollback) config: parallelism
// tasks per batch, the next batch once the previous one runs and the
// delay has passed, stop-first or start-first, and the failure action
// when too many new tasks fail.
func (o *Orchestrator) rollingUpdate(p *plan, svc *swarmpb.Service, live map[uint64]*swarmpb.Task, replace func(*swarmpb.Task) *swarmpb.Task) {
	lives := make([]*swarmpb.Task, 0, len(live))
	for _, t := range live {
		lives = append(lives, t)
	}
	o.rollingUpdateTasks(p, svc, lives, replace)
}

func (o *Orchestrator) rollingUpdateTasks(p *plan, svc *swarmpb.Service, lives []*swarmpb.Task, replace func(*swarmpb.Task) *swarmpb.Task) {
	st := svc.GetUpdateStatus()
	rollingBack := st.RollingBack()
	cfg := svc.Spec.GetUpdate()
	if rollingBack {
		cfg = svc.Spec.GetRollback()
	}
	var outdated []*swarmpb.Task
	inflight := 0
	for _, t := range lives {
		t = p.current(t)
		switch {
		case t.GetMeta().GetVersion() != 0 && t.SpecVersion < svc.SpecVersion && active(t):
			outdated = append(outdated, t)
		case t.SpecVersion == svc.SpecVersion && !ended(t) && t.GetStatus().GetState() < swarmpb.TaskState_TASK_STATE_RUNNING:
			inflight++
		}
	}
	updating := st.InProgress()
	if !updating && len(outdated) == 0 {
		return
	}
	o.follows[svc.Id] = true // the next batch waits on this one's progress
	startedAt := time.Unix(0, st.GetStartedAt())
	if updating && st.GetStartedAt() == 0 {
		startedAt = p.now
		o.setUpdateStatus(p, svc, st.Current(), "", startedAt, time.Time{})
	}
	if st.Paused() {
		return
	}

	// Failures among the new version's tasks since the update started.
	var failed, total int
	var lastFailure *swarmpb.Task
	for _, t := range p.tx.TasksByService(svc.Id) {
		if t.SpecVersion != svc.SpecVersion {
			continue
		}
		total++
		if updateFailure(t) && !statusTime(t).Before(startedAt) {
			failed++
			// The latest failure (tasks come in no particular order).
			if lastFailure == nil || statusTime(t).After(statusTime(lastFailure)) ||
				(statusTime(t).Equal(statusTime(lastFailure)) && t.Id > lastFailure.Id) {
				lastFailure = t
			}
		}
	}
	if failed > 0 && float64(failed)/float64(max(total, 1)) > float64(cfg.GetMaxFailureRatio()) {
		switch {
		case cfg.FailureActionValue() == swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_CONTINUE:
		case cfg.FailureActionValue() == swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK && !rollingBack && svc.PreviousSpec != nil:
			// The store refuses a spec claiming another service's port;
			// retrying that write would stall every pass, so pause.
			if k, owner := p.tx.portTaken(svc.Id, svc.PreviousSpec); owner != nil {
				o.setUpdateStatus(p, svc, updatePaused, fmt.Sprintf("update paused due to failure or early termination of task %s; it cannot roll back: port %d/%s is already published by service %s",
					lastFailure.Id, k.Port, k.Protocol, owner.GetSpec().GetName()), startedAt, time.Time{})
				return
			}
			next := proto.Clone(svc).(*swarmpb.Service)
			next.Spec, next.PreviousSpec = next.PreviousSpec, next.Spec
			next.SpecVersion++
			next.UpdateStatus = swarmpb.NewUpdateStatus(updateRollbackStarted)
			next.UpdateStatus.StartedAt = p.now.UnixNano()
			next.UpdateStatus.FailureRollback = true
			next.UpdateStatus.Message = fmt.Sprintf("update rolled back due to failure or early termination of task %s", lastFailure.Id)
			p.updateService(next)
			delete(o.stableAt, svc.Id)
			return
		default:
			state := updatePaused
			if rollingBack {
				state = updateRollbackPaused
			}
			o.setUpdateStatus(p, svc, state, fmt.Sprintf("update paused due to failure or early termination of task %s", lastFailure.Id), startedAt, time.Time{})
			return
		}
	}
	// The next batch waits for this one to run. Parallelism 0 is one
	// batch of every task, split only by the plan's size: its parts do not
	// wait on each other (at 100,000 tasks, 20 parts of 5,000 each waited
	// for the one before to run, and the update took two minutes).
	if inflight > 0 && (cfg.GetParallelism() > 0 || len(outdated) == 0) {
		delete(o.stableAt, svc.Id)
		return
	}
	stable, ok := o.stableAt[svc.Id]
	if !ok {
		stable = p.now
		o.stableAt[svc.Id] = stable
	}
	if len(outdated) == 0 {
		// Watch the last batch for the monitor period before declaring
		// the update complete.
		if done := stable.Add(time.Duration(cfg.GetMonitorNs())); p.now.Before(done) {
			p.wakeAt(done)
			return
		}
		final := updateCompleted
		msg := "update completed"
		if rollingBack {
			final, msg = updateRollbackCompleted, "rollback completed"
			if st.RolledBackOnFailure() {
				msg = st.GetMessage() // keep why the update was rolled back
			}
		}
		o.setUpdateStatus(p, svc, final, msg, startedAt, p.now)
		delete(o.stableAt, svc.Id)
		return
	}
	if next := stable.Add(time.Duration(cfg.GetDelayNs())); cfg.GetParallelism() > 0 && p.now.Before(next) && inflightHadBatch(o, svc) {
		p.wakeAt(next)
		return
	}
	n := int(cfg.GetParallelism())
	if n <= 0 || n > len(outdated) {
		n = len(outdated)
	}
	// A batch takes two writes a task; what the plan has no room for
	// waits for the next batch (parallelism 0, "all at once", becomes
	// batches of the plan's size).
	if room := p.left() / 2; n > room {
		n = room
		p.more = true
		if n == 0 {
			return
		}
	}
	sort.Slice(outdated, func(i, j int) bool {
		if outdated[i].Slot != outdated[j].Slot {
			return outdated[i].Slot < outdated[j].Slot
		}
		return outdated[i].NodeId < outdated[j].NodeId
	})
	for _, old := range outdated[:n] {
		if cfg.OrderValue() != swarmpb.UpdateOrder_UPDATE_ORDER_START_FIRST {
			p.shutdown(old, "updating to a new spec")
		}
		replace(old)
	}
	delete(o.stableAt, svc.Id)
	o.batched[svc.Id] = true
}

// inflightHadBatch reports whether this term already started a batch for
// svc; the delay applies between batches, not before the first.
func inflightHadBatch(o *Orchestrator, svc *swarmpb.Service) bool { return o.batched[svc.Id] }

// setUpdateStatus records the update's new state. A rollback the failure
// action started stays marked as such through its pause and completion, so
// that the CLI reports the update as failed.
func (o *Orchestrator) setUpdateStatus(p *plan, svc *swarmpb.Service, state swarmpb.UpdateState, msg string, started, completed time.Time) {
	us := swarmpb.NewUpdateStatus(state)
	us.Message, us.StartedAt, us.CompletedAt = msg, started.UnixNano(), unixOrZero(completed)
	if old := svc.GetUpdateStatus(); old.RollingBack() && old.RolledBackOnFailure() && us.RollingBackOrDone() {
		us.FailureRollback = true
	}
	for _, s := range p.services {
		if s.Id == svc.Id {
			s.UpdateStatus = us
			return
		}
	}
	next := proto.Clone(svc).(*swarmpb.Service)
	next.UpdateStatus = us
	p.updateService(next)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// updateFailure reports a new task that failed on its own (it exited in
// error, or its engine refused it). A task orphaned because its node went
// down says nothing about the new version and must not pause or roll back
// an update: the orchestrator replaces it like any task on a lost node.
func updateFailure(t *swarmpb.Task) bool {
	switch t.GetStatus().GetState() {
	case swarmpb.TaskState_TASK_STATE_FAILED, swarmpb.TaskState_TASK_STATE_REJECTED:
		return true
	}
	return false
}
