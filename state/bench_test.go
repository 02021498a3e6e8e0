package state

import (
	"fmt"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func tasksBatch(n int, kind swarmpb.StoreAction_Kind, mutate func(*swarmpb.Task)) *swarmpb.StoreBatch {
	b := &swarmpb.StoreBatch{Actions: make([]*swarmpb.StoreAction, 0, n)}
	for i := range n {
		t := &swarmpb.Task{
			Id:           fmt.Sprintf("task-%06d", i),
			ServiceId:    fmt.Sprintf("svc-%03d", i%100),
			ServiceName:  fmt.Sprintf("name-%03d", i%100),
			Slot:         uint64(i/100 + 1),
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING},
			Spec:         &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "nginx:latest", Env: []string{"A=B"}}},
		}
		if mutate != nil {
			mutate(t)
		}
		b.Actions = append(b.Actions, &swarmpb.StoreAction{Kind: kind, Target: &swarmpb.StoreAction_Task{Task: t}})
	}
	return b
}

// BenchmarkApplyBatch10kTasks creates 10,000 tasks in one batch, with one
// watcher attached as in a running manager.
func BenchmarkApplyBatch10kTasks(b *testing.B) {
	batch := tasksBatch(10_000, swarmpb.StoreAction_KIND_CREATE, nil)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s := New()
		_, cancel := s.Watch()
		b.StartTimer()
		if _, err := s.ApplyBatch(1, 1, batch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cancel()
		b.StartTimer()
	}
}

// BenchmarkApplyBatch10kTaskAssignments is the scheduler's pattern: assign
// 10,000 pending tasks to nodes in one batch, on a store of 100,000 tasks.
func BenchmarkApplyBatch10kTaskAssignments(b *testing.B) {
	s := New()
	for i := range 10 {
		bt := tasksBatch(10_000, swarmpb.StoreAction_KIND_CREATE, nil)
		for _, a := range bt.Actions {
			a.GetTask().Id = fmt.Sprintf("%d-%s", i, a.GetTask().Id)
		}
		if _, err := s.ApplyBatch(uint64(i+1), 1, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		idx := s.Index()
		assign := tasksBatch(10_000, swarmpb.StoreAction_KIND_UPDATE, func(t *swarmpb.Task) {
			t.Id = "0-" + t.Id
			t.NodeId = fmt.Sprintf("node-%d-%d", round, t.Slot%50)
			t.Meta = &swarmpb.Meta{Version: map[bool]uint64{true: 1, false: idx}[round == 1]}
		})
		b.StartTimer()
		if _, err := s.ApplyBatch(idx+1, 1, assign); err != nil {
			b.Fatal(err)
		}
	}
}
