package node

import (
	"testing"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/api"
)

// The agent must not import api (the managers' server side), so it keeps
// its own copies of the dispatcher's wire values; they must not drift.
func TestAgentWireValuesMatchDispatcher(t *testing.T) {
	if agent.LeaderAddrKey != api.LeaderAddrKey {
		t.Errorf("agent.LeaderAddrKey = %q, api.LeaderAddrKey = %q", agent.LeaderAddrKey, api.LeaderAddrKey)
	}
	if agent.DefaultHeartbeatPeriod != api.DefaultHeartbeatPeriod {
		t.Errorf("agent.DefaultHeartbeatPeriod = %v, api.DefaultHeartbeatPeriod = %v", agent.DefaultHeartbeatPeriod, api.DefaultHeartbeatPeriod)
	}
}
