package raft

import (
	"errors"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// TestBatchVersion: only a batch holding a status patch is written as
// payload version 2, and only one holding a desired-state patch as 3, so
// managers that read an older version still apply the rest.
func TestBatchVersion(t *testing.T) {
	plain := state.Batch(state.Create(&swarmpb.Node{Id: "n1"}))
	patch := state.Batch(state.Create(&swarmpb.Node{Id: "n2"}),
		state.UpdateTaskStatus("t1", 1, &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}))
	desired := state.Batch(state.UpdateTaskStatus("t1", 1, &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}),
		state.UpdateTaskDesired("t2", swarmpb.TaskState_TASK_STATE_SHUTDOWN, nil, ""), state.Create(&swarmpb.Node{Id: "n3"}))
	for _, c := range []struct {
		b    *swarmpb.StoreBatch
		want uint32
	}{{plain, 1}, {patch, 2}, {desired, 3}} {
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

// TestMembersRead: a payload version is readable only once every Raft
// member's node reports it (or newer); a member not described yet, or an
// empty configuration, counts as old.
func TestMembersRead(t *testing.T) {
	st := state.New()
	node := func(id string, v uint32) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Node{Id: id, Description: &swarmpb.NodeDescription{StoreBatchVersion: v}})
	}
	if _, err := st.ApplyBatch(1, 1, state.Batch(node("m1", 3), node("m2", 2), node("m3", 3))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		members []string
		v       uint32
		want    bool
	}{
		{[]string{"m1", "m2"}, BatchVersionStatusPatch, true},
		{[]string{"m1", "m2"}, BatchVersionDesiredPatch, false},
		{[]string{"m1", "m3"}, BatchVersionDesiredPatch, true},
		{[]string{"m1", "m4"}, BatchVersionStatusPatch, false},
		{nil, BatchVersionStatusPatch, false},
	} {
		var ms []Member
		for _, id := range c.members {
			ms = append(ms, Member{ID: id})
		}
		var got bool
		st.View(func(tx state.ReadTx) { got = MembersRead(ms, tx, c.v) })
		if got != c.want {
			t.Errorf("members %v, version %d: %v, want %v", c.members, c.v, got, c.want)
		}
	}
}

// memberList is a configuration for ConfigurationReads.
type memberList struct {
	ids []string
	err error
}

func (l memberList) Members() ([]Member, error) {
	ms := make([]Member, 0, len(l.ids))
	for _, id := range l.ids {
		ms = append(ms, Member{ID: id})
	}
	return ms, l.err
}

// TestConfigurationReads: what the dispatcher (status patches) and the
// orchestrator (desired-state patches) ask before writing a kind of patch.
// It follows the configuration's members and the versions their nodes
// report, and a configuration that cannot be read counts as old.
func TestConfigurationReads(t *testing.T) {
	st := state.New()
	node := func(id string, v uint32) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Node{Id: id, Description: &swarmpb.NodeDescription{StoreBatchVersion: v}})
	}
	if _, err := st.ApplyBatch(1, 1, state.Batch(node("new1", StoreBatchVersion), node("new2", StoreBatchVersion), node("old", 2))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what    string
		members memberList
		v       uint32
		want    bool
	}{
		{"all upgraded", memberList{ids: []string{"new1", "new2"}}, BatchVersionDesiredPatch, true},
		{"one manager on version 2", memberList{ids: []string{"new1", "new2", "old"}}, BatchVersionDesiredPatch, false},
		{"one manager on version 2, status patches", memberList{ids: []string{"new1", "old"}}, BatchVersionStatusPatch, true},
		{"a member with no node yet", memberList{ids: []string{"new1", "joining"}}, BatchVersionStatusPatch, false},
		{"configuration unreadable", memberList{ids: []string{"new1"}, err: errors.New("raft is shutting down")}, BatchVersionStatusPatch, false},
		{"empty configuration", memberList{}, BatchVersionStatusPatch, false},
	} {
		if got := ConfigurationReads(c.members, st, c.v); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}
