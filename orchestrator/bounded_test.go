package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/identity"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	swarmspec "github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
)

const billion = 1_000_000_000

// boundedStore is a store with a cluster and three Ready nodes, written
// through memRaft, and an orchestrator over it driven pass by pass.
func boundedStore(t *testing.T) (*state.Store, *memRaft, *Orchestrator) {
	t.Helper()
	st := state.New()
	r := statetest.NewApplier(st)
	acts := []*swarmpb.StoreAction{state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}})}
	for _, n := range []string{"n1", "n2", "n3"} {
		acts = append(acts, state.Create(&swarmpb.Node{Id: n, Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY,
			Description: &swarmpb.NodeDescription{Hostname: n}}))
	}
	if _, err := r.Apply(context.Background(), state.Batch(acts...)); err != nil {
		t.Fatal(err)
	}
	return st, r, newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func storeService(t *testing.T, r *memRaft, replicas uint64) string {
	t.Helper()
	id := identity.NewID()
	if _, err := r.Apply(context.Background(), state.Batch(state.Create(&swarmpb.Service{Id: id, Spec: spec("huge", replicas), SpecVersion: 1}))); err != nil {
		t.Fatal(err)
	}
	return id
}

func taskCounts(st *state.Store, id string) (all, live int) {
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByServiceUnordered(id) {
			all++
			if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING {
				live++
			}
		}
	})
	return all, live
}

// A service stored with a billion replicas (around the API's cap) is grown
// one bounded pass at a time, and scaling it down or removing it converges
// in a few passes. Before, the first pass tried to create a billion tasks
// and the leader died of it.
func TestHugeServiceIsReconciledInBoundedPasses(t *testing.T) {
	st, r, o := boundedStore(t)
	id := storeService(t, r, billion)
	ctx := context.Background()

	wake := o.reconcile(ctx, nil)
	if all, _ := taskCounts(st, id); all != maxPassTasks {
		t.Fatalf("first pass created %d tasks, want the pass limit %d", all, maxPassTasks)
	}
	if wake.After(time.Now()) {
		t.Fatalf("pass left work but asked to run again at %v, not at once", wake)
	}
	o.reconcile(ctx, map[string]bool{id: true})
	if all, _ := taskCounts(st, id); all != 2*maxPassTasks {
		t.Fatalf("second pass: %d tasks, want %d", all, 2*maxPassTasks)
	}

	// Scale to 1: every surplus task is shut down within a few passes.
	var svc *swarmpb.Service
	st.View(func(tx state.ReadTx) { svc = proto.Clone(tx.GetService(id)).(*swarmpb.Service) })
	svc.Spec.Replicas = 1
	if _, err := r.Apply(ctx, state.Batch(state.Update(svc))); err != nil {
		t.Fatal(err)
	}
	for pass := 0; ; pass++ {
		if _, live := taskCounts(st, id); live == 1 {
			break
		}
		if pass == 3 {
			_, live := taskCounts(st, id)
			t.Fatalf("after %d passes %d tasks still live, want 1", pass, live)
		}
		o.reconcile(ctx, nil)
	}

	// Remove it: its tasks are shut down and deleted in a few passes.
	st.View(func(tx state.ReadTx) { svc = tx.GetService(id) })
	if _, err := r.Apply(ctx, state.Batch(state.Delete(svc))); err != nil {
		t.Fatal(err)
	}
	for pass := 0; ; pass++ {
		if all, _ := taskCounts(st, id); all == 0 {
			break
		}
		if pass == 6 {
			all, _ := taskCounts(st, id)
			t.Fatalf("after %d passes %d tasks of the removed service remain", pass, all)
		}
		o.reconcile(ctx, nil)
	}
}

// The store's lock is not held while a pass plans: a write (here the
// service's removal) goes through meanwhile, and the next passes clean up
// what the stale plan created.
func TestPlanningHoldsNoStoreLock(t *testing.T) {
	st, r, o := boundedStore(t)
	id := storeService(t, r, billion)
	ctx := context.Background()
	var svc *swarmpb.Service
	st.View(func(tx state.ReadTx) { svc = tx.GetService(id) })
	o.planning = func([]string) {
		o.planning = nil
		done := make(chan error, 1)
		go func() {
			_, err := r.Apply(ctx, state.Batch(state.Delete(svc)))
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("remove service during planning: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a store write waited for the orchestrator's plan: the store lock is held while planning")
		}
	}
	o.reconcile(ctx, nil)
	testutil.Eventually(t, 10*time.Second, func() error {
		o.reconcile(ctx, nil)
		if all, _ := taskCounts(st, id); all != 0 {
			return fmt.Errorf("%d tasks of the removed service remain", all)
		}
		return nil
	})
}

// With the loops running, a service far larger than a pass can be scaled
// down and removed while it is still being grown.
func TestScaleAndRemoveWhileGrowingHugeService(t *testing.T) {
	h := newHarnessLimit(t, 500, "n1", "n2", "n3")
	id := h.createService(spec("huge", billion))
	testutil.Eventually(t, 10*time.Second, func() error {
		if all, _ := taskCounts(h.st, id); all < 1000 {
			return fmt.Errorf("%d tasks so far", all)
		}
		return nil
	})
	h.updateService(id, func(s *swarmpb.Service) { s.Spec.Replicas = 2 })
	h.waitConverged(id, 2)
	all, _ := taskCounts(h.st, id)
	t.Logf("%d tasks created in all", all)
	if all > 20*h.passLimit {
		t.Errorf("%d tasks exist: the service grew far past what passes of %d allow", all, h.passLimit)
	}

	big := h.createService(spec("big", billion))
	testutil.Eventually(t, 10*time.Second, func() error {
		if all, _ := taskCounts(h.st, big); all < 1000 {
			return fmt.Errorf("%d tasks so far", all)
		}
		return nil
	})
	h.apply(state.Delete(h.service(big)))
	testutil.Eventually(t, 10*time.Second, func() error {
		if all, _ := taskCounts(h.st, big); all != 0 {
			return fmt.Errorf("%d tasks of the removed service remain", all)
		}
		return nil
	})
	// The other service was not starved meanwhile.
	h.waitConverged(id, 2)
}

func TestReplicasClampedToAbsoluteCap(t *testing.T) {
	_, _, o := boundedStore(t)
	svc := &swarmpb.Service{Id: "s", Spec: spec("s", billion)}
	if got := o.replicas(svc); got != swarmspec.MaxReplicasLimit {
		t.Fatalf("replicas %d, want the cap %d", got, swarmspec.MaxReplicasLimit)
	}
	svc.Spec.Replicas = 7
	if got := o.replicas(svc); got != 7 {
		t.Fatalf("replicas %d, want 7", got)
	}
}

func TestBatchLenBoundsEntries(t *testing.T) {
	small := make([]*swarmpb.StoreAction, 5000)
	for i := range small {
		small[i] = state.Create(&swarmpb.Task{Id: fmt.Sprint(i)})
	}
	if n := state.BatchLen(small); n != state.MaxBatchActions {
		t.Fatalf("small tasks: %d per entry, want %d", n, state.MaxBatchActions)
	}
	s := spec("big", 1)
	s.Labels = map[string]string{"blob": string(make([]byte, 700<<10))}
	big := make([]*swarmpb.StoreAction, 20)
	for i := range big {
		big[i] = state.Create(&swarmpb.Task{Id: fmt.Sprint(i), Spec: s})
	}
	n := state.BatchLen(big)
	if size := proto.Size(state.Batch(big[:n]...)); n < 1 || size > state.MaxBatchBytes+(1<<20) {
		t.Fatalf("large tasks: %d per entry, %d bytes", n, size)
	}
	if n := state.BatchLen(big[:1]); n != 1 {
		t.Fatalf("one large task: %d", n)
	}
}

// An automatic rollback to a spec whose published port another service
// took meanwhile pauses the update: the store would refuse the write, and
// retrying it would stall every pass.
func TestRollbackToTakenPortPauses(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	withPort := func(s *swarmpb.ServiceSpec, port uint32) *swarmpb.ServiceSpec {
		s.Ports = []*swarmpb.PortConfig{{PublishedPort: port, TargetPort: 80, Protocol: "tcp"}}
		return s
	}
	id := h.createService(withPort(spec("web", 2), 8080))
	h.waitConverged(id, 2)
	h.updateService(id, func(s *swarmpb.Service) {
		s.PreviousSpec = s.Spec
		s.Spec = withPort(spec("web", 2), 9090)
		s.Spec.Container.Image = "demo:crash"
		s.Spec.Update.FailureAction = "rollback"
		s.SpecVersion++
		s.UpdateStatus = &swarmpb.UpdateStatus{State: UpdateUpdating}
	})
	other := h.createService(withPort(spec("other", 1), 8080))
	h.failNextTask("web", 1)
	testutil.Eventually(t, 10*time.Second, func() error {
		st := h.service(id).GetUpdateStatus()
		if st.GetState() != UpdatePaused || !strings.Contains(st.GetMessage(), "port 8080/tcp is already published by service other") {
			return fmt.Errorf("update status %q %q", st.GetState(), st.GetMessage())
		}
		return nil
	})
	// The orchestrator still serves other services.
	h.waitConverged(other, 1)
}

// Scaling down is not held to maxPassTasks: one pass shuts down up to
// maxPassShutdowns tasks, where N/maxPassTasks passes, each reading every
// task of the service, made scaling N tasks to 0 quadratic.
func TestScaleDownInOnePass(t *testing.T) {
	st, r, o := boundedStore(t)
	const n = 3 * maxPassTasks
	id := storeService(t, r, n)
	ctx := context.Background()
	for range 3 {
		o.reconcile(ctx, nil)
	}
	if all, live := taskCounts(st, id); all != n || live != n {
		t.Fatalf("after 3 passes: %d tasks, %d live, want %d", all, live, n)
	}
	var svc *swarmpb.Service
	st.View(func(tx state.ReadTx) { svc = proto.Clone(tx.GetService(id)).(*swarmpb.Service) })
	svc.Spec.Replicas = 0
	if _, err := r.Apply(ctx, state.Batch(state.Update(svc))); err != nil {
		t.Fatal(err)
	}
	o.reconcile(ctx, map[string]bool{id: true})
	if _, live := taskCounts(st, id); live != 0 {
		t.Fatalf("one pass left %d of %d tasks live, want 0", live, n)
	}
}

// TestUpdateAllAtOnceIsNotPacedByPlanSize: parallelism 0 updates every
// task in one batch; a plan's size splits it into parts, which do not wait
// for each other's tasks to run. At 100,000 tasks each part of 5,000
// waited for the one before to run, and the update took two minutes.
func TestUpdateAllAtOnceIsNotPacedByPlanSize(t *testing.T) {
	st, r, o := boundedStore(t)
	o.passLimit = 10 // parts of 5 replacements (two writes each)
	id := storeService(t, r, 20)
	ctx := context.Background()
	for range 2 {
		o.reconcile(ctx, nil)
	}
	if all, live := taskCounts(st, id); all != 20 || live != 20 {
		t.Fatalf("after 2 passes: %d tasks, %d live, want 20", all, live)
	}
	var svc *swarmpb.Service
	st.View(func(tx state.ReadTx) { svc = proto.Clone(tx.GetService(id)).(*swarmpb.Service) })
	svc.PreviousSpec = svc.Spec
	svc.Spec = spec("huge", 20)
	svc.Spec.Container.Image = "demo:v2"
	svc.Spec.Update = &swarmpb.UpdateConfig{Parallelism: 0, DelayNs: int64(time.Hour)}
	svc.SpecVersion++
	svc.UpdateStatus = swarmpb.NewUpdateStatus(swarmpb.UpdateState_UPDATE_STATE_UPDATING)
	if _, err := r.Apply(ctx, state.Batch(state.Update(svc))); err != nil {
		t.Fatal(err)
	}
	// No task of the new version runs (no agent here): the parts go on.
	for range 4 {
		o.reconcile(ctx, map[string]bool{id: true})
	}
	var updated int
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByServiceUnordered(id) {
			if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && tk.SpecVersion == svc.SpecVersion {
				updated++
			}
		}
	})
	if updated != 20 {
		t.Fatalf("after 4 passes of 5 replacements, %d of 20 live tasks are of the new version, want 20", updated)
	}
}
