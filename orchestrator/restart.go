package orchestrator

import (
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// failedEnd reports whether an ended task counts as a failure for the
// restart policy (COMPLETE is the only success).
func failedEnd(t *swarmpb.Task) bool {
	return ended(t) && t.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_COMPLETE
}

// restartDue decides what to do with the live task of a slot that ended:
// restart now, restart at a later time, or never (the slot then keeps its
// ended task, and the service shows fewer running replicas).
func (p *plan) restartDue(svc *swarmpb.Service, slot []*swarmpb.Task, t *swarmpb.Task) (now bool, at time.Time) {
	rp := svc.Spec.GetRestart()
	switch rp.GetCondition() {
	case swarmpb.RestartPolicy_CONDITION_NONE:
		return false, time.Time{}
	case swarmpb.RestartPolicy_CONDITION_ON_FAILURE:
		if !failedEnd(t) {
			return false, time.Time{}
		}
	}
	if max := rp.GetMaxAttempts(); max > 0 {
		window := time.Duration(rp.GetWindowNs())
		var attempts uint64
		for _, h := range slot {
			if !ended(h) || h.SpecVersion != svc.SpecVersion {
				continue
			}
			if window > 0 && p.now.Sub(statusTime(h)) > window {
				continue
			}
			attempts++
		}
		if attempts > max {
			return false, time.Time{}
		}
	}
	delay := time.Duration(rp.GetDelayNs())
	due := statusTime(t).Add(delay)
	// A status stamped by a clock ahead of this one (a leader whose clock
	// jumped or was wrong, before the leadership moved here) would hold
	// the restart back by the difference: never wait longer than the delay
	// from when this term first saw the task ended.
	if p.failedSeen != nil {
		seen, ok := p.failedSeen[t.Id]
		if !ok {
			seen = p.now
			p.failedSeen[t.Id] = seen
		}
		if latest := seen.Add(delay); due.After(latest) {
			due = latest
		}
	}
	if !p.now.Before(due) {
		delete(p.failedSeen, t.Id)
		return true, time.Time{}
	}
	return false, due
}

// maxFailedSeen bounds Orchestrator.failedSeen.
const maxFailedSeen = 100000
