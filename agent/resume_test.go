package agent

import (
	"fmt"
	"slices"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// A resumed full set is the tasks held from the last session, updated by
// what the new leader sent; a plain one replaces them.
func TestSessionResumeRebuildsFullSet(t *testing.T) {
	task := func(id string, v uint64) *swarmpb.Task { return &swarmpb.Task{Id: id, Meta: &swarmpb.Meta{Version: v}} }
	ids := func(ts []*swarmpb.Task) string {
		var out []string
		for _, t := range ts {
			out = append(out, fmt.Sprintf("%s@%d", t.Id, t.Meta.Version))
		}
		slices.Sort(out)
		return fmt.Sprint(out)
	}
	ta := &taskAgent{}
	if got := ids(ta.fullSet(&swarmpb.SessionMessage{Tasks: []*swarmpb.Task{task("a", 1), task("b", 1), task("c", 1)}})); got != "[a@1 b@1 c@1]" {
		t.Fatalf("first full set %s", got)
	}
	ta.patchAssigned([]*swarmpb.Task{task("b", 2)}, []string{"c"})
	if got := len(ta.knownTasks()); got != 2 {
		t.Fatalf("%d known tasks, want 2", got)
	}
	got := ids(ta.fullSet(&swarmpb.SessionMessage{Resumed: true, Tasks: []*swarmpb.Task{task("a", 5), task("d", 5)}, RemovedTaskIds: []string{"b"}}))
	if got != "[a@5 d@5]" {
		t.Fatalf("resumed full set %s, want [a@5 d@5]", got)
	}
	if got := ids(ta.fullSet(&swarmpb.SessionMessage{Tasks: []*swarmpb.Task{task("e", 6)}})); got != "[e@6]" {
		t.Fatalf("plain full set after a resumed one %s", got)
	}
}
