package raft

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// TestBatchVersion: only a batch holding a status patch is written as
// payload version 2, so managers that read version 1 still apply the rest.
func TestBatchVersion(t *testing.T) {
	plain := state.Batch(state.Create(&swarmpb.Node{Id: "n1"}))
	patch := state.Batch(state.Create(&swarmpb.Node{Id: "n2"}),
		state.UpdateTaskStatus("t1", 1, &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}))
	for _, c := range []struct {
		b    *swarmpb.StoreBatch
		want uint32
	}{{plain, 1}, {patch, 2}} {
		data, err := EncodeBatch(c.b)
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := DecodeCommand(data)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Version != c.want || cmd.Version > storeBatchVersion {
			t.Errorf("batch of %d actions written as version %d, want %d (read up to %d)", len(c.b.Actions), cmd.Version, c.want, storeBatchVersion)
		}
	}
}
