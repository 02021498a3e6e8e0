package swarmpb

import "testing"

// State written before the enums existed carries only the strings; the
// accessors read them, and the enum wins when both are set.
func TestUpdateEnumsReadOldStrings(t *testing.T) {
	old := &UpdateStatus{State: "rollback_completed", Message: "update rolled back due to failure or early termination of task x"}
	if old.Current() != UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED || !old.RolledBackOnFailure() {
		t.Fatalf("old status read as %v, failure rollback %v", old.Current(), old.RolledBackOnFailure())
	}
	user := NewUpdateStatus(UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED)
	user.Message = "update rolled back by someone who writes messages like the manager"
	if user.State != "rollback_completed" || user.RolledBackOnFailure() {
		t.Fatalf("new status %+v: string %q, failure rollback %v", user, user.State, user.RolledBackOnFailure())
	}
	if (&UpdateStatus{}).Current() != UpdateState_UPDATE_STATE_UNSPECIFIED {
		t.Fatal("an empty status has a state")
	}
	for s := UpdateState_UPDATE_STATE_UPDATING; s <= UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED; s++ {
		if got, ok := ParseUpdateState(s.Text()); !ok || got != s {
			t.Errorf("state %v: text %q parses to %v", s, s.Text(), got)
		}
	}
	cfg := &UpdateConfig{FailureAction: "rollback", Order: "start-first"}
	if cfg.FailureActionValue() != UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK || cfg.OrderValue() != UpdateOrder_UPDATE_ORDER_START_FIRST {
		t.Fatalf("old config read as %v, %v", cfg.FailureActionValue(), cfg.OrderValue())
	}
	cfg.OnFailure, cfg.UpdateOrder = UpdateFailureAction_UPDATE_FAILURE_ACTION_PAUSE, UpdateOrder_UPDATE_ORDER_STOP_FIRST
	if cfg.FailureActionValue().Text() != "pause" || cfg.OrderValue().Text() != "stop-first" {
		t.Fatalf("enum config read as %v, %v", cfg.FailureActionValue(), cfg.OrderValue())
	}
	enumsOnly := &UpdateConfig{OnFailure: UpdateFailureAction_UPDATE_FAILURE_ACTION_CONTINUE}
	enumsOnly.FillDeprecated()
	if enumsOnly.FailureAction != "continue" || enumsOnly.Order != "" {
		t.Fatalf("deprecated strings filled as %q, %q", enumsOnly.FailureAction, enumsOnly.Order)
	}
	(*UpdateConfig)(nil).FillDeprecated()
}
