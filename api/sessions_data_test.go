package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// A secret's content reaches only the node that runs a task using it, with
// the task; after an update the node gets the new version for the new task.
func TestSecretPayloadOnlyToNodeRunningTask(t *testing.T) {
	c := testcluster.New(t, 1, 2, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctl := c.Control()
	w1, w2, m1 := c.Get("w1"), c.Get("w2"), c.Get("m1")

	sec, err := ctl.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "pw", Data: []byte("hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	id := sec.Secret.Id
	spec := &swarmpb.ServiceSpec{Name: "db", Replicas: 1,
		Container: &swarmpb.ContainerSpec{Image: "demo:v1", Secrets: []*swarmpb.SecretReference{{SecretName: "pw"}}},
		Placement: &swarmpb.Placement{Constraints: []string{"node.id==" + w1.NodeID()}},
		Update:    &swarmpb.UpdateConfig{Parallelism: 1},
	}
	if _, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	has := func(m *testcluster.Member, v uint64) bool {
		ds := m.Fake().DataSource()
		if ds == nil {
			return false
		}
		d, ok := ds.Secret(id, v)
		return ok && string(d) == map[uint64]string{1: "hunter2", 2: "hunter3"}[v]
	}
	running := func(v uint64) error {
		tasks, _, err := listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Services: []string{"db"}})
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING &&
				t.Spec.Container.Secrets[0].Version == v {
				return nil
			}
		}
		return fmt.Errorf("no running task mounting version %d yet", v)
	}
	testutil.Eventually(t, 30*time.Second, func() error { return running(1) })
	if !has(w1, 1) {
		t.Fatal("the node running the task did not get the secret")
	}
	if has(w2, 1) || has(m1, 1) {
		t.Fatal("a node running no task that uses the secret got it")
	}

	if _, err := ctl.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: "pw", Data: []byte("hunter3")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error { return running(2) })
	if !has(w1, 2) {
		t.Fatal("the node running the updated task did not get the new version")
	}
	if has(w2, 2) || has(m1, 2) {
		t.Fatal("a node running no task that uses the secret got its new version")
	}
}
