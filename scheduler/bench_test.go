package scheduler

import (
	"fmt"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// BenchmarkScheduler1kNodes100kTasks times placing 100,000 pending tasks of
// one service on 1,000 ready, active nodes: from the tasks being pending to
// every one of them assigned.
func BenchmarkScheduler1kNodes100kTasks(b *testing.B) {
	const nNodes, nTasks = 1000, 100_000
	nodes := make([]*swarmpb.Node, nNodes)
	for i := range nodes {
		nodes[i] = mkNode(fmt.Sprintf("node-%04d", i))
	}
	spec := &swarmpb.ServiceSpec{
		Name:      "bench",
		Container: &swarmpb.ContainerSpec{Image: "nginx:alpine"},
		Replicas:  nTasks,
		Placement: &swarmpb.Placement{},
	}
	pending := make([]*swarmpb.Task, nTasks)
	for i := range pending {
		pending[i] = &swarmpb.Task{
			Id:           fmt.Sprintf("task-%06d", i),
			ServiceId:    "svc-bench",
			ServiceName:  "bench",
			Slot:         uint64(i + 1),
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING},
			Spec:         spec,
			SpecVersion:  1,
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := New()
		for _, n := range nodes {
			s.UpsertNode(n)
		}
		b.StartTimer()

		ds := s.Schedule(pending, t0)
		placed := 0
		for _, d := range ds {
			if d.NodeID != "" {
				placed++
			}
		}
		if placed != nTasks {
			b.Fatalf("placed %d of %d tasks", placed, nTasks)
		}
	}
	b.ReportMetric(float64(nTasks)*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}
