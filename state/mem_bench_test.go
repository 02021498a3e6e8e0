package state

import (
	"fmt"
	"runtime"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// fsmApply applies b the way the Raft FSM does: from its wire form, so the
// store keeps what proto.Unmarshal made, not the proposer's objects.
func fsmApply(tb testing.TB, s *Store, b *swarmpb.StoreBatch) {
	tb.Helper()
	data, err := proto.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	var got swarmpb.StoreBatch
	if err := proto.Unmarshal(data, &got); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.ApplyDecodedBatch(s.Index()+1, 1, &got); err != nil {
		tb.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStoreMemory100kTasks is one replica's store after a 100,000-task
// service is created, placed and reported RUNNING, each step applied from
// the wire in entries of MaxBatchActions: the heap it holds per task.
func BenchmarkStoreMemory100kTasks(b *testing.B) {
	const n = 100_000
	svcSpec := &swarmpb.ServiceSpec{
		Name: "scale", Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}, Replicas: n,
		Restart: &swarmpb.RestartPolicy{}, Update: &swarmpb.UpdateConfig{}, Rollback: &swarmpb.UpdateConfig{},
		Resources: &swarmpb.ResourceRequirements{}, Placement: &swarmpb.Placement{},
	}
	for b.Loop() {
		before := heapInUse()
		s := New()
		svc := &swarmpb.Service{Id: "svc-0001", Spec: svcSpec, SpecVersion: 1}
		fsmApply(b, s, Batch(Create(svc)))
		for i := 0; i < n; i += MaxBatchActions {
			var acts []*swarmpb.StoreAction
			for j := i; j < i+MaxBatchActions && j < n; j++ {
				acts = append(acts, Create(&swarmpb.Task{
					Id: fmt.Sprintf("%025d", j), ServiceId: svc.Id, ServiceName: "scale", Slot: uint64(j + 1),
					DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
					Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING, Message: "pending task scheduling", Timestamp: 1},
					Spec:         svcSpec, SpecVersion: 1, Meta: &swarmpb.Meta{CreatedAt: 1},
				}))
			}
			fsmApply(b, s, Batch(acts...))
		}
		for _, st := range []swarmpb.TaskState{swarmpb.TaskState_TASK_STATE_ASSIGNED, swarmpb.TaskState_TASK_STATE_RUNNING} {
			var ids []string
			s.View(func(tx ReadTx) {
				for _, t := range tx.ListTasks() {
					ids = append(ids, t.GetId())
				}
			})
			for i := 0; i < n; i += MaxBatchActions {
				var acts []*swarmpb.StoreAction
				s.View(func(tx ReadTx) {
					for _, id := range ids[i:min(i+MaxBatchActions, n)] {
						t := proto.Clone(tx.GetTask(id)).(*swarmpb.Task)
						t.NodeId = fmt.Sprintf("node-%022d", len(id)%1000)
						t.Status = &swarmpb.TaskStatus{State: st, Timestamp: 2, ContainerId: "c" + id}
						acts = append(acts, Update(t))
					}
				})
				fsmApply(b, s, Batch(acts...))
			}
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "heapB/task")
		runtime.KeepAlive(s)
	}
}

// BenchmarkStatusEntry applies one Raft entry of MaxBatchActions status
// reports from the wire, on a store of 100,000 tasks: as whole tasks (as
// written before status patches) and as patches (state.UpdateTaskStatus).
func BenchmarkStatusEntry(b *testing.B) {
	const n = 100_000
	spec := &swarmpb.ServiceSpec{Name: "scale", Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}, Replicas: n,
		Restart: &swarmpb.RestartPolicy{}, Update: &swarmpb.UpdateConfig{}, Rollback: &swarmpb.UpdateConfig{}}
	for _, mode := range []string{"task", "patch"} {
		b.Run(mode, func(b *testing.B) {
			s := New()
			svc := &swarmpb.Service{Id: "svc-0001", Spec: spec, SpecVersion: 1}
			fsmApply(b, s, Batch(Create(svc)))
			for i := 0; i < n; i += MaxBatchActions {
				var acts []*swarmpb.StoreAction
				for j := i; j < i+MaxBatchActions; j++ {
					acts = append(acts, Create(&swarmpb.Task{Id: fmt.Sprintf("%025d", j), ServiceId: svc.Id, ServiceName: "scale",
						Slot: uint64(j + 1), NodeId: fmt.Sprintf("%025d", j%1000), DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
						Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED}, Spec: spec, SpecVersion: 1}))
				}
				fsmApply(b, s, Batch(acts...))
			}
			b.ReportAllocs()
			round, bytes := 0, 0
			for b.Loop() {
				b.StopTimer()
				var acts []*swarmpb.StoreAction
				s.View(func(tx ReadTx) {
					for j := range MaxBatchActions {
						t := tx.GetTask(fmt.Sprintf("%025d", (round*MaxBatchActions+j)%n))
						st := &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, ContainerId: "c" + t.Id, Timestamp: int64(round)}
						if mode == "patch" {
							acts = append(acts, UpdateTaskStatus(t.Id, t.GetMeta().GetVersion(), st))
							continue
						}
						c := proto.Clone(t).(*swarmpb.Task)
						c.Status = st
						acts = append(acts, Update(c))
					}
				})
				data, err := proto.Marshal(Batch(acts...))
				if err != nil {
					b.Fatal(err)
				}
				bytes = len(data)
				round++
				b.StartTimer()
				var got swarmpb.StoreBatch
				if err := proto.Unmarshal(data, &got); err != nil {
					b.Fatal(err)
				}
				if _, err := s.ApplyDecodedBatch(s.Index()+1, 1, &got); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bytes), "entry-bytes")
		})
	}
}
