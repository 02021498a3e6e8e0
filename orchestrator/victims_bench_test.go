package orchestrator

import (
	"fmt"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// BenchmarkScaleDownVictims picks every victim of a scale to 0 of 100,000
// running tasks on 1,000 nodes (go test -run - -bench ScaleDownVictims).
func BenchmarkScaleDownVictims(b *testing.B) {
	live := make(map[uint64]*swarmpb.Task, 100_000)
	for s := uint64(1); s <= 100_000; s++ {
		live[s] = &swarmpb.Task{Slot: s, NodeId: fmt.Sprintf("node%04d", s%1000),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
	}
	for b.Loop() {
		perNode := make(map[string]int, 1000)
		for _, t := range live {
			perNode[t.NodeId]++
		}
		if n := len(scaleDownVictims(live, perNode, len(live))); n != len(live) {
			b.Fatalf("%d victims", n)
		}
	}
}
