package raft

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// fuzzBase is the state every fuzzed entry is applied to, written at
// index 1, so that updates and deletes can find objects.
func fuzzBase() *swarmpb.StoreBatch {
	return &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{
		{Target: &swarmpb.StoreAction_Cluster{Cluster: &swarmpb.Cluster{Id: "c", Settings: &swarmpb.ClusterSettings{MaxReplicas: 10}}}},
		{Target: &swarmpb.StoreAction_Node{Node: &swarmpb.Node{Id: "n", Spec: &swarmpb.NodeSpec{Labels: map[string]string{"a": "b"}}}}},
		{Target: &swarmpb.StoreAction_Service{Service: &swarmpb.Service{Id: "s", Spec: &swarmpb.ServiceSpec{Name: "web", Replicas: 1}}}},
		{Target: &swarmpb.StoreAction_Task{Task: &swarmpb.Task{Id: "t", ServiceId: "s", NodeId: "n"}}},
	}}
}

func mustEncode(tb testing.TB, b *swarmpb.StoreBatch) []byte {
	data, err := EncodeBatch(b)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// replayFuzz applies the base state and then data twice (indexes 2 and 3,
// so that a create can be followed by an update of what it made) on a fresh
// store, and returns the outcomes and the final state. A refused entry must
// leave the state as it was.
func replayFuzz(tb testing.TB, base, data []byte) (string, *swarmpb.Snapshot) {
	st := state.New()
	f := newFSM(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	at := time.Unix(1700000000, 0)
	out := ""
	for i, d := range [][]byte{base, data, data} {
		idx := uint64(i + 1)
		before := st.Snapshot()
		res, ok := f.Apply(&hraft.Log{Index: idx, Type: hraft.LogCommand, Data: d, AppendedAt: at}).(applyResult)
		if !ok || res.index != idx {
			tb.Fatalf("Apply at %d returned %#v", idx, res)
		}
		if i == 0 && res.err != nil {
			tb.Fatalf("base batch: %v", res.err)
		}
		if res.err != nil {
			// A refused entry changes nothing but the applied index.
			after := st.Snapshot()
			before.Index, after.Index = 0, 0
			if !proto.Equal(before, after) {
				tb.Fatalf("entry %d was refused (%v) but changed the state", idx, res.err)
			}
		}
		out += fmt.Sprintf("%d: %v\n", idx, res.err)
		if got := st.Index(); got != idx {
			tb.Fatalf("store index %d after applying entry %d", got, idx)
		}
	}
	return out, st.Snapshot()
}

// FuzzFSMApply feeds arbitrary bytes to the FSM as committed log entries.
// It must never panic, must always consume the index, and two replicas must
// end in the same state with the same outcome: garbage is refused the same
// way everywhere.
func FuzzFSMApply(f *testing.F) {
	base := mustEncode(f, fuzzBase())
	svc := &swarmpb.Service{Id: "s2", Spec: &swarmpb.ServiceSpec{Name: "api", Labels: map[string]string{"k": "v"}}}
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(mustEncode(f, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{{Target: &swarmpb.StoreAction_Service{Service: svc}}}}))
	f.Add(mustEncode(f, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{
		{Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_Service{Service: &swarmpb.Service{Id: "s", Meta: &swarmpb.Meta{Version: 1}, Spec: &swarmpb.ServiceSpec{Name: "renamed"}}}},
		{Kind: swarmpb.StoreAction_KIND_CREATE, Target: &swarmpb.StoreAction_Service{Service: &swarmpb.Service{Id: "s3", Spec: &swarmpb.ServiceSpec{Name: "web"}}}},
		{Kind: swarmpb.StoreAction_KIND_DELETE, Target: &swarmpb.StoreAction_Task{Task: &swarmpb.Task{Id: "t"}}},
		{Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_Node{Node: &swarmpb.Node{Id: "n", Meta: &swarmpb.Meta{Version: 1}}}},
	}}))
	f.Add(mustEncode(f, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{{Kind: 7, Target: &swarmpb.StoreAction_Secret{Secret: &swarmpb.Secret{Id: "x"}}}, {}}}))
	unknown, _ := proto.Marshal(&swarmpb.Command{Type: 99, Version: 1, Payload: []byte("x")})
	f.Add(unknown)
	f.Add(mustEncode(f, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{
		{Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_TaskStatus{TaskStatus: &swarmpb.TaskStatusPatch{TaskId: "t", Version: 1,
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}}},
	}}))
	f.Add(mustEncode(f, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{
		{Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_TaskDesired{TaskDesired: &swarmpb.TaskDesiredPatch{TaskId: "t",
			DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ORPHANED}}}},
	}}))
	newer, _ := proto.Marshal(&swarmpb.Command{Type: swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH, Version: storeBatchVersion + 1, Payload: []byte("x")})
	f.Add(newer)
	badPayload, _ := proto.Marshal(&swarmpb.Command{Type: swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH, Version: 1, Payload: []byte{0xff, 0x01}})
	f.Add(badPayload)
	f.Fuzz(func(t *testing.T, data []byte) {
		out1, snap1 := replayFuzz(t, base, data)
		out2, snap2 := replayFuzz(t, base, data)
		if out1 != out2 {
			t.Fatalf("outcomes differ between replicas:\n%s\n%s", out1, out2)
		}
		if !proto.Equal(snap1, snap2) {
			t.Fatalf("states differ between replicas")
		}
	})
}
