package worker

import (
	"strings"
	"testing"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// notingExecutor wraps the fake engine's controllers with a prepare note,
// as the docker executor's are when the image came from another node.
type notingExecutor struct{ *fake.Executor }

type notingController struct{ exec.Controller }

func (notingController) PrepareNote() string { return "image fetched from node abc (2.0 MiB in 1s)" }

func (e notingExecutor) Controller(t *swarmpb.Task) (exec.Controller, error) {
	c, err := e.Executor.Controller(t)
	if err != nil {
		return nil, err
	}
	return notingController{c}, nil
}

// The STARTING status says what Prepare noted (where the image came from).
func TestPrepareNoteInStartingStatus(t *testing.T) {
	rec := newRecorder()
	w := newWorker(t, notingExecutor{fake.New("node1")}, rec)
	if err := w.Assign(ctx, []*swarmpb.Task{task("t1", 1, "img:v1")}); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, "t1", swarmpb.TaskState_TASK_STATE_RUNNING)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, st := range rec.hist["t1"] {
		if st.GetState() == swarmpb.TaskState_TASK_STATE_STARTING {
			if !strings.Contains(st.GetMessage(), "image fetched from node abc") {
				t.Errorf("STARTING message %q does not say where the image came from", st.GetMessage())
			}
			return
		}
	}
	t.Errorf("no STARTING status in %v", rec.hist["t1"])
}
