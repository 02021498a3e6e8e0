package state

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// The builders below make the store batches that writers propose to Raft
// and the FSM hands to ApplyBatch. They live beside the store that applies
// them so that every writer (the control API, the orchestrator, the
// scheduling loop, the dispatcher, the node) builds batches from the one
// package every layer may import.

// Batch builds a store batch from actions.
func Batch(actions ...*swarmpb.StoreAction) *swarmpb.StoreBatch {
	return &swarmpb.StoreBatch{Actions: actions}
}

// Create, Update and Delete build the store actions of a batch. They panic
// on an object type the store does not hold: that is a programming error,
// not an input error.
func Create(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_CREATE, obj) }
func Update(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_UPDATE, obj) }
func Delete(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_DELETE, obj) }

// DeleteTask builds the action that deletes task id. It carries the ID
// alone: a delete is applied by ID (stage), and the event it makes holds
// the stored task, so the spec a whole task would carry (and every
// manager would decode) is left out. Reaping the history of a service
// scaled from 100,000 to 0 deletes 100,000 tasks.
func DeleteTask(id string) *swarmpb.StoreAction {
	return action(swarmpb.StoreAction_KIND_DELETE, &swarmpb.Task{Id: id})
}

// UpdateTaskStatus builds the action that sets the status of task id,
// stored at meta.version version, leaving the rest of the task as stored.
// It is a fraction of the size of Update with the whole task (which
// carries the service's spec again): agents' status reports are most of a
// large service's writes.
func UpdateTaskStatus(id string, version uint64, st *swarmpb.TaskStatus) *swarmpb.StoreAction {
	return &swarmpb.StoreAction{Kind: swarmpb.StoreAction_KIND_UPDATE,
		Target: &swarmpb.StoreAction_TaskStatus{TaskStatus: &swarmpb.TaskStatusPatch{TaskId: id, Version: version, Status: st}}}
}

// UpdateTaskDesired builds the action that raises the desired state of
// task id to desired and, if st is not nil, sets its status while the
// task is still on node nodeID (as read; "" for none), leaving the rest of
// the task as stored (stageTaskDesired: what no longer moves the task
// forward is skipped, never a conflict). The orchestrator's shutdowns and
// removals change only these.
func UpdateTaskDesired(id string, desired swarmpb.TaskState, st *swarmpb.TaskStatus, nodeID string) *swarmpb.StoreAction {
	return &swarmpb.StoreAction{Kind: swarmpb.StoreAction_KIND_UPDATE,
		Target: &swarmpb.StoreAction_TaskDesired{TaskDesired: &swarmpb.TaskDesiredPatch{TaskId: id, DesiredState: desired, Status: st, NodeId: nodeID}}}
}

// Bounds on one Raft entry written by the leader's loops: at most
// MaxBatchActions actions and about MaxBatchBytes (a 10,000-task service
// is five entries, not one of many megabytes; a spec with large labels,
// copied into every task, makes smaller ones).
const (
	MaxBatchActions = 2000
	MaxBatchBytes   = 4 << 20
)

// BatchLen is how many of acts go in the next Raft entry: at most
// MaxBatchActions, and no more than about MaxBatchBytes (always at least
// one).
func BatchLen(acts []*swarmpb.StoreAction) int {
	size := 0
	for i, a := range acts {
		if i == MaxBatchActions {
			return i
		}
		size += proto.Size(a)
		if size > MaxBatchBytes && i > 0 {
			return i
		}
	}
	return len(acts)
}

func action(kind swarmpb.StoreAction_Kind, obj any) *swarmpb.StoreAction {
	a := &swarmpb.StoreAction{Kind: kind}
	switch o := obj.(type) {
	case *swarmpb.Cluster:
		a.Target = &swarmpb.StoreAction_Cluster{Cluster: o}
	case *swarmpb.Node:
		a.Target = &swarmpb.StoreAction_Node{Node: o}
	case *swarmpb.Service:
		a.Target = &swarmpb.StoreAction_Service{Service: o}
	case *swarmpb.Task:
		a.Target = &swarmpb.StoreAction_Task{Task: o}
	case *swarmpb.Secret:
		a.Target = &swarmpb.StoreAction_Secret{Secret: o}
	case *swarmpb.Network:
		a.Target = &swarmpb.StoreAction_Network{Network: o}
	case *swarmpb.Config:
		a.Target = &swarmpb.StoreAction_Config{Config: o}
	default:
		panic(fmt.Sprintf("store action on unsupported type %T", obj))
	}
	return a
}
