package api

import (
	"fmt"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestResumeSessionSendsOnlyWhatDiffers(t *testing.T) {
	task := func(id string, v uint64) *swarmpb.Task { return &swarmpb.Task{Id: id, Meta: &swarmpb.Meta{Version: v}} }
	known := func(id string, v uint64) *swarmpb.SessionKnownTask {
		return &swarmpb.SessionKnownTask{Id: id, Version: v}
	}
	for _, c := range []struct {
		name          string
		full          []*swarmpb.Task
		known         []*swarmpb.SessionKnownTask
		tasks, remove string
		resumed       bool
	}{
		{"no known tasks: the full set", []*swarmpb.Task{task("a", 1)}, nil, "[a]", "[]", false},
		{"all current: nothing", []*swarmpb.Task{task("a", 1), task("b", 2)}, []*swarmpb.SessionKnownTask{known("a", 1), known("b", 2)}, "[]", "[]", true},
		{"changed, new and gone", []*swarmpb.Task{task("a", 3), task("b", 2), task("c", 4)},
			[]*swarmpb.SessionKnownTask{known("a", 1), known("b", 2), known("z", 9), known("y", 1)}, "[a c]", "[y z]", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg := &swarmpb.SessionMessage{Kind: swarmpb.SessionMessage_KIND_FULL, Tasks: c.full}
			resumeSession(msg, c.known)
			var ids []string
			for _, t := range msg.Tasks {
				ids = append(ids, t.Id)
			}
			if got := fmt.Sprint(ids); got != c.tasks && !(c.tasks == "[]" && len(ids) == 0) {
				t.Errorf("tasks %s, want %s", got, c.tasks)
			}
			if got := fmt.Sprint(msg.RemovedTaskIds); got != c.remove {
				t.Errorf("removed %s, want %s", got, c.remove)
			}
			if msg.Resumed != c.resumed {
				t.Errorf("resumed %v, want %v", msg.Resumed, c.resumed)
			}
		})
	}
}
