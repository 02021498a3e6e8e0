package orchestrator

import swarmpb "github.com/raftswarm/raftswarm/proto"

// The update states in the text form the tests write and compare: the
// deprecated string field, which managers still write beside the enum.
var (
	UpdateUpdating          = swarmpb.UpdateState_UPDATE_STATE_UPDATING.Text()
	UpdatePaused            = swarmpb.UpdateState_UPDATE_STATE_PAUSED.Text()
	UpdateCompleted         = swarmpb.UpdateState_UPDATE_STATE_COMPLETED.Text()
	UpdateRollbackCompleted = swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED.Text()
)
