package cli

import (
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The CLI decides that an update failed, was rolled back or paused from
// the status's state, not from its message; a status written by an older
// manager (strings only) still reads the same.
func TestUpdateOutcomeReadFromState(t *testing.T) {
	start := time.Now()
	status := func(s swarmpb.UpdateState, failure bool, msg string) *swarmpb.Service {
		us := swarmpb.NewUpdateStatus(s)
		us.StartedAt, us.FailureRollback, us.Message = start.UnixNano(), failure, msg
		return &swarmpb.Service{UpdateStatus: us}
	}
	if got := autoRollback(status(swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED, true, "why"), start); got != "why" {
		t.Errorf("failure rollback: %q", got)
	}
	if got := autoRollback(status(swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED, false, "update rolled back due to failure"), start); got != "" {
		t.Errorf("user rollback whose message looks like a failure: %q", got)
	}
	old := &swarmpb.Service{UpdateStatus: &swarmpb.UpdateStatus{State: "rollback_completed", StartedAt: start.UnixNano(),
		Message: "update rolled back due to failure or early termination of task x"}}
	if got := autoRollback(old, start); got == "" {
		t.Error("failure rollback written by an older manager not reported")
	}
	if got := pausedUpdate(status(swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_PAUSED, false, ""), start); got != "update rollback_paused" {
		t.Errorf("paused rollback: %q", got)
	}
	if !updateInFlight(status(swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED, false, "")) || updateInFlight(status(swarmpb.UpdateState_UPDATE_STATE_COMPLETED, false, "")) {
		t.Error("in-flight updates misread")
	}
}
