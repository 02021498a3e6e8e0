package orchestrator

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

func TestReplicatedSpreadAndScale(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	id := h.createService(spec("web", 7))
	byNode := h.waitConverged(id, 7)
	counts := []int{byNode["n1"], byNode["n2"], byNode["n3"]}
	sort.Ints(counts)
	if fmt.Sprint(counts) != "[2 2 3]" {
		t.Fatalf("spread: %v", byNode)
	}
	h.updateService(id, func(s *swarmpb.Service) { s.Spec.Replicas = 3 })
	h.waitConverged(id, 3, map[string]int{"n1": 1, "n2": 1, "n3": 1})
	h.updateService(id, func(s *swarmpb.Service) { s.Spec.Replicas = 10 })
	h.waitConverged(id, 10)
	slots := map[uint64]bool{}
	for _, tk := range h.live(id) {
		if slots[tk.Slot] || tk.Slot < 1 || tk.Slot > 10 {
			t.Fatalf("bad or duplicate slot %d", tk.Slot)
		}
		slots[tk.Slot] = true
	}
}

func TestNodeDownAndDrainMoveTasks(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	id := h.createService(spec("web", 6))
	h.waitConverged(id, 6)
	h.updateNode("n1", func(n *swarmpb.Node) { n.Status = swarmpb.NodeStatus_NODE_STATUS_DOWN })
	h.waitConverged(id, 6, map[string]int{"n1": 0, "n2": 3, "n3": 3})
	h.updateNode("n2", func(n *swarmpb.Node) { n.Spec.Availability = swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	h.waitConverged(id, 6, map[string]int{"n3": 6})
	// The orphaned tasks on the down node are marked so, not left running.
	h.st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByNode("n1") {
			if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING {
				t.Errorf("task %s on down node still desired running", tk.Id)
			}
		}
	})
}

func TestRestartPolicy(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	s := spec("any", 2)
	id := h.createService(s)
	h.waitConverged(id, 2)
	h.failNextTask("any", 3)
	// Force a replacement to start; the replacement fails, and is replaced.
	h.updateService(id, func(s *swarmpb.Service) { s.Spec.Replicas = 3 })
	h.waitConverged(id, 3)

	none := spec("none", 1)
	none.Restart.Condition = swarmpb.RestartPolicy_CONDITION_NONE
	h.failNextTask("none", 1)
	nid := h.createService(none)
	testutil.Eventually(t, 5*time.Second, func() error {
		var failed int
		h.st.View(func(tx state.ReadTx) {
			for _, tk := range tx.TasksByService(nid) {
				if tk.Status.State == swarmpb.TaskState_TASK_STATE_FAILED {
					failed++
				}
			}
		})
		if failed != 1 {
			return fmt.Errorf("failed tasks %d", failed)
		}
		return nil
	})
	// Give the orchestrator every chance to (wrongly) restart it.
	h.agentPass()
	var n int
	h.st.View(func(tx state.ReadTx) { n = len(tx.TasksByService(nid)) })
	if n != 1 {
		t.Fatalf("condition none restarted the task: %d tasks", n)
	}

	limited := spec("limited", 1)
	limited.Restart.MaxAttempts = 2
	lid := h.createService(limited)
	h.waitConverged(lid, 1)
	for i := 0; i < 4; i++ {
		h.failNextTask("limited", 2)
		// kill the running one by marking it failed, as an agent would
		h.killRunning(lid)
		testutil.Eventually(t, 5*time.Second, func() error {
			h.agentPass()
			return nil
		})
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		var total int
		h.st.View(func(tx state.ReadTx) { total = len(tx.TasksByService(lid)) })
		if total != 3 { // the first and two restarts
			return fmt.Errorf("%d tasks", total)
		}
		return nil
	})
}

// killRunning marks the service's running tasks failed, as an agent does
// when a container dies.
func (h *harness) killRunning(id string) {
	testutil.Eventually(h.t, 5*time.Second, func() error {
		var acts []*swarmpb.StoreAction
		h.st.View(func(tx state.ReadTx) {
			for _, tk := range tx.TasksByService(id) {
				if tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
					c := cloneTask(tk)
					c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED, ExitCode: 137, Timestamp: time.Now().UnixNano()}
					acts = append(acts, updateAct(c))
				}
			}
		})
		if len(acts) == 0 {
			return nil
		}
		_, err := h.raft.Apply(context.Background(), batch(acts))
		return err
	})
}

func TestHistoryIsBounded(t *testing.T) {
	h := newHarness(t, "n1")
	id := h.createService(spec("flappy", 1))
	h.waitConverged(id, 1)
	for i := 0; i < 8; i++ {
		h.killRunning(id)
		h.waitConverged(id, 1)
	}
	var n int
	h.st.View(func(tx state.ReadTx) { n = len(tx.TasksByService(id)) })
	if n > 5 {
		t.Fatalf("slot keeps %d tasks, want at most 5", n)
	}
}

func TestGlobalService(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	s := spec("agent", 0)
	s.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	id := h.createService(s)
	h.waitConverged(id, 2)
	h.addNode("n3")
	h.waitConverged(id, 3, map[string]int{"n3": 1})
	h.updateNode("n1", func(n *swarmpb.Node) { n.Spec.Availability = swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	h.waitConverged(id, 2, map[string]int{"n1": 0})
}

func TestRollingUpdateAndRemove(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	id := h.createService(spec("web", 5))
	h.waitConverged(id, 5)
	h.updateService(id, func(s *swarmpb.Service) {
		s.PreviousSpec = s.Spec
		s.Spec = spec("web", 5)
		s.Spec.Container.Image = "demo:v2"
		s.SpecVersion++
		s.UpdateStatus = &swarmpb.UpdateStatus{State: UpdateUpdating}
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		svc := h.service(id)
		if svc.UpdateStatus.GetState() != UpdateCompleted {
			return fmt.Errorf("update status %q", svc.UpdateStatus.GetState())
		}
		return nil
	})
	for _, tk := range h.live(id) {
		if tk.Spec.Container.Image != "demo:v2" || tk.Status.State != swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("task %s: %s %s", tk.Id, tk.Spec.Container.Image, tk.Status.State)
		}
	}
	h.apply(deleteAct(h.service(id)))
	testutil.Eventually(t, 10*time.Second, func() error {
		var n int
		h.st.View(func(tx state.ReadTx) { n = len(tx.TasksByService(id)) })
		if n != 0 {
			return fmt.Errorf("%d tasks left", n)
		}
		return nil
	})
}

func TestUpdateFailureRollsBack(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	id := h.createService(spec("web", 3))
	h.waitConverged(id, 3)
	h.updateService(id, func(s *swarmpb.Service) {
		s.PreviousSpec = s.Spec
		s.Spec = spec("web", 3)
		s.Spec.Container.Image = "demo:crash"
		s.Spec.Update.FailureAction = "rollback"
		s.SpecVersion++
		s.UpdateStatus = &swarmpb.UpdateStatus{State: UpdateUpdating}
	})
	h.failNextTask("web", 1)
	testutil.Eventually(t, 10*time.Second, func() error {
		svc := h.service(id)
		if svc.UpdateStatus.GetState() != UpdateRollbackCompleted {
			return fmt.Errorf("update status %q %s", svc.UpdateStatus.GetState(), svc.UpdateStatus.GetMessage())
		}
		return nil
	})
	h.waitConverged(id, 3)
	for _, tk := range h.live(id) {
		if tk.Spec.Container.Image != "demo:v1" {
			t.Fatalf("after rollback task runs %s", tk.Spec.Container.Image)
		}
	}
}

// A new leader's orchestrator continues from the store: stopping the loops
// in the middle of a scale-up and starting fresh ones gives exactly N
// tasks, none duplicated, none lost.
func TestLeaderChangeMidReconcile(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	id := h.createService(spec("web", 50))
	h.stop()
	h.start()
	h.updateService(id, func(s *swarmpb.Service) { s.Spec.Replicas = 80 })
	h.stop()
	h.start()
	h.waitConverged(id, 80)
	slots := map[uint64]int{}
	for _, tk := range h.live(id) {
		slots[tk.Slot]++
	}
	for s, n := range slots {
		if n != 1 {
			t.Fatalf("slot %d has %d live tasks", s, n)
		}
	}
}

// A node lost during an update orphans tasks of the new version; that is
// not a failure of the new version, and the update completes.
func TestUpdateSurvivesNodeLoss(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	id := h.createService(spec("web", 6))
	h.waitConverged(id, 6)
	h.updateService(id, func(s *swarmpb.Service) {
		s.PreviousSpec = s.Spec
		s.Spec = spec("web", 6)
		s.Spec.Container.Image = "demo:v2"
		s.Spec.Update.Parallelism = 1
		s.Spec.Update.DelayNs = int64(300 * time.Millisecond)
		s.SpecVersion++
		s.UpdateStatus = &swarmpb.UpdateStatus{State: UpdateUpdating}
	})
	// Wait until new-version tasks run on n1, then lose n1.
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := h.service(id).UpdateStatus.GetState(); st != UpdateUpdating {
			t.Fatalf("update %s before n1 was lost; the test needs it under way", st)
		}
		for _, tk := range h.live(id) {
			if tk.NodeId == "n1" && tk.Spec.Container.Image == "demo:v2" && tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
				return nil
			}
		}
		return fmt.Errorf("no v2 task running on n1 yet")
	})
	h.updateNode("n1", func(n *swarmpb.Node) { n.Status = swarmpb.NodeStatus_NODE_STATUS_DOWN })
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := h.service(id).UpdateStatus; st.GetState() != UpdateCompleted {
			return fmt.Errorf("update %s %s", st.GetState(), st.GetMessage())
		}
		return nil
	})
	h.waitConverged(id, 6, map[string]int{"n1": 0})
}

// A rollback the failure action starts is recorded in the status enum, so
// that clients need not read the message; the new enum form of the config
// (no deprecated strings) drives it like the old.
func TestFailureRollbackRecordedInStatus(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	id := h.createService(spec("web", 2))
	h.waitConverged(id, 2)
	h.updateService(id, func(s *swarmpb.Service) {
		s.PreviousSpec = s.Spec
		s.Spec = spec("web", 2)
		s.Spec.Container.Image = "demo:crash"
		s.Spec.Update.OnFailure = swarmpb.UpdateFailureAction_UPDATE_FAILURE_ACTION_ROLLBACK
		s.SpecVersion++
		s.UpdateStatus = swarmpb.NewUpdateStatus(swarmpb.UpdateState_UPDATE_STATE_UPDATING)
	})
	h.failNextTask("web", 1)
	testutil.Eventually(t, 10*time.Second, func() error {
		us := h.service(id).UpdateStatus
		if us.GetUpdateState() != swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED || !us.GetFailureRollback() {
			return fmt.Errorf("update status %v (failure rollback %v) %s", us.GetUpdateState(), us.GetFailureRollback(), us.GetMessage())
		}
		if us.GetState() != "rollback_completed" {
			return fmt.Errorf("deprecated state string %q", us.GetState())
		}
		return nil
	})
}

// A failure stamped by a clock 9 minutes ahead (a leader whose clock
// jumped) is restarted after the restart delay, not 9 minutes later.
func TestRestartNotHeldBackByAClockAhead(t *testing.T) {
	h := newHarness(t, "n1")
	s := spec("skewed", 1)
	s.Restart.DelayNs = int64(100 * time.Millisecond)
	id := h.createService(s)
	h.waitConverged(id, 1)
	testutil.Eventually(t, 5*time.Second, func() error {
		var acts []*swarmpb.StoreAction
		h.st.View(func(tx state.ReadTx) {
			for _, tk := range tx.TasksByService(id) {
				if tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
					c := cloneTask(tk)
					c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED, ExitCode: 1,
						Timestamp: time.Now().Add(9 * time.Minute).UnixNano()}
					acts = append(acts, updateAct(c))
				}
			}
		})
		if len(acts) == 0 {
			return fmt.Errorf("no running task yet")
		}
		_, err := h.raft.Apply(context.Background(), batch(acts))
		return err
	})
	h.waitConverged(id, 1)
}
