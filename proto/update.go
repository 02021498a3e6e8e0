package swarmpb

import "strings"

// Hand-written helpers for the update enums. The enums replaced string
// fields that state written by older versions (and older clients) still
// carry, so every reader goes through these accessors: they read the enum
// and fall back to the deprecated string when the enum is unspecified.
// Writers set both (NewUpdateStatus), so that older managers and clients
// keep reading the string. The strings below are the only place the
// text forms are spelled; they are also what the CLI prints.

var updateStateText = map[UpdateState]string{
	UpdateState_UPDATE_STATE_UPDATING:           "updating",
	UpdateState_UPDATE_STATE_PAUSED:             "paused",
	UpdateState_UPDATE_STATE_COMPLETED:          "completed",
	UpdateState_UPDATE_STATE_ROLLBACK_STARTED:   "rollback_started",
	UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:    "rollback_paused",
	UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED: "rollback_completed",
}

var failureActionText = map[UpdateFailureAction]string{
	UpdateFailureAction_UPDATE_FAILURE_ACTION_PAUSE:    "pause",
	UpdateFailureAction_UPDATE_FAILURE_ACTION_CONTINUE: "continue",
	UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK: "rollback",
}

var orderText = map[UpdateOrder]string{
	UpdateOrder_UPDATE_ORDER_STOP_FIRST:  "stop-first",
	UpdateOrder_UPDATE_ORDER_START_FIRST: "start-first",
}

func parse[E comparable](table map[E]string, s string) (E, bool) {
	for e, t := range table {
		if t == s {
			return e, true
		}
	}
	var zero E
	return zero, false
}

// Text is the state as users see it (service inspect, ps), the form the
// deprecated string field holds; "" for UNSPECIFIED.
func (x UpdateState) Text() string { return updateStateText[x] }

// Text is the failure action as users type and see it; "" for UNSPECIFIED.
func (x UpdateFailureAction) Text() string { return failureActionText[x] }

// Text is the order as users type and see it; "" for UNSPECIFIED.
func (x UpdateOrder) Text() string { return orderText[x] }

// ParseUpdateFailureAction reads the text form; ok is false for an unknown one.
func ParseUpdateFailureAction(s string) (UpdateFailureAction, bool) {
	return parse(failureActionText, s)
}

// ParseUpdateOrder reads the text form; ok is false for an unknown one.
func ParseUpdateOrder(s string) (UpdateOrder, bool) { return parse(orderText, s) }

// ParseUpdateState reads the text form; ok is false for an unknown one.
func ParseUpdateState(s string) (UpdateState, bool) { return parse(updateStateText, s) }

// NewUpdateStatus returns a status in state s, with the deprecated string
// field filled for older readers.
func NewUpdateStatus(s UpdateState) *UpdateStatus {
	return &UpdateStatus{UpdateState: s, State: s.Text()}
}

// Current is the update's state: the enum, or for a status written before
// the enum existed, the state its string names (UNSPECIFIED if none).
func (x *UpdateStatus) Current() UpdateState {
	if s := x.GetUpdateState(); s != UpdateState_UPDATE_STATE_UNSPECIFIED {
		return s
	}
	s, _ := ParseUpdateState(x.GetState())
	return s
}

// RollingBack reports a rollback started or paused, not yet completed.
func (x *UpdateStatus) RollingBack() bool {
	switch x.Current() {
	case UpdateState_UPDATE_STATE_ROLLBACK_STARTED, UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		return true
	}
	return false
}

// InProgress reports an update or rollback that has not finished or paused.
func (x *UpdateStatus) InProgress() bool {
	switch x.Current() {
	case UpdateState_UPDATE_STATE_UPDATING, UpdateState_UPDATE_STATE_ROLLBACK_STARTED:
		return true
	}
	return false
}

// Paused reports an update or rollback paused by its failure action.
func (x *UpdateStatus) Paused() bool {
	switch x.Current() {
	case UpdateState_UPDATE_STATE_PAUSED, UpdateState_UPDATE_STATE_ROLLBACK_PAUSED:
		return true
	}
	return false
}

// legacyFailureRollbackMessage starts the message that managers before the
// failure_rollback field wrote when the failure action rolled an update
// back; it is read only for statuses without the enum.
const legacyFailureRollbackMessage = "update rolled back"

// RolledBackOnFailure reports a rollback that the update's failure action
// started (the update failed), as opposed to one the user asked for.
func (x *UpdateStatus) RolledBackOnFailure() bool {
	if x.GetUpdateState() != UpdateState_UPDATE_STATE_UNSPECIFIED {
		return x.GetFailureRollback()
	}
	// Written by an older manager, which said so only in the message.
	m := x.GetMessage()
	return x.RollingBackOrDone() && strings.HasPrefix(m, legacyFailureRollbackMessage)
}

// RollingBackOrDone reports any rollback state: started, paused or completed.
func (x *UpdateStatus) RollingBackOrDone() bool {
	return x.RollingBack() || x.Current() == UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
}

// FailureActionValue is the failure action: the enum, or for a config
// written before it existed, what the deprecated string names.
func (x *UpdateConfig) FailureActionValue() UpdateFailureAction {
	if a := x.GetOnFailure(); a != UpdateFailureAction_UPDATE_FAILURE_ACTION_UNSPECIFIED {
		return a
	}
	a, _ := ParseUpdateFailureAction(x.GetFailureAction())
	return a
}

// OrderValue is the update order: the enum, or for a config written before
// it existed, what the deprecated string names.
func (x *UpdateConfig) OrderValue() UpdateOrder {
	if o := x.GetUpdateOrder(); o != UpdateOrder_UPDATE_ORDER_UNSPECIFIED {
		return o
	}
	o, _ := ParseUpdateOrder(x.GetOrder())
	return o
}

// FillDeprecated sets the deprecated strings from the enums where only the
// enums are given, for readers of older versions. Safe on nil.
func (x *UpdateConfig) FillDeprecated() {
	if x == nil {
		return
	}
	if x.FailureAction == "" {
		x.FailureAction = x.OnFailure.Text()
	}
	if x.Order == "" {
		x.Order = x.UpdateOrder.Text()
	}
}
