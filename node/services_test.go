package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func svcSpec(name string, port uint32) *swarmpb.ServiceSpec {
	s := &swarmpb.ServiceSpec{Name: name, Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "demo:v1"}}
	if port != 0 {
		s.Ports = []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: port, PublishMode: "ingress"}}
	}
	return s
}

// Bad service requests get a clear error and change nothing.
func TestServiceBadInput(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	ctx := ctxT(t, 30*time.Second)
	ctl := c.Control()
	if _, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec("web", 8080)}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"duplicate name", func() error {
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec("web", 0)})
			return err
		}, codes.AlreadyExists, "service web already exists"},
		{"port clash on create", func() error {
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec("other", 8080)})
			return err
		}, codes.FailedPrecondition, "port 8080/tcp is already published by service web"},
		{"rollback without previous spec", func() error {
			_, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "web", Rollback: true})
			return err
		}, codes.FailedPrecondition, "has no previous spec"},
		{"update unknown service", func() error {
			_, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "nope", Spec: svcSpec("nope", 0)})
			return err
		}, codes.NotFound, "service nope not found"},
		{"remove unknown service", func() error {
			_, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: "nope"})
			return err
		}, codes.NotFound, "service nope not found"},
		{"bad constraint", func() error {
			s := svcSpec("c", 0)
			s.Placement = &swarmpb.Placement{Constraints: []string{"node.zone=a"}}
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
			return err
		}, codes.InvalidArgument, "invalid constraint"},
		{"no image", func() error {
			s := svcSpec("noimg", 0)
			s.Container.Image = ""
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
			return err
		}, codes.InvalidArgument, "image is required"},
		{"failure ratio", func() error {
			s := svcSpec("ratio", 0)
			s.Update = &swarmpb.UpdateConfig{MaxFailureRatio: 1.5}
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
			return err
		}, codes.InvalidArgument, "update max failure ratio 1.5 is out of range: use 0 to 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}
	// Port clash on update of another service is refused too, and nothing changed.
	other, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec("other", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "other", Spec: svcSpec("other", 8080)}); err == nil {
		t.Fatal("update publishing a taken port was accepted")
	}
	got, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Service.Spec.Ports) != 0 || got.Service.Meta.Version != other.Service.Meta.Version {
		t.Fatalf("refused update changed the service: %v", got.Service)
	}
	list, err := ctl.ListServices(ctx, &swarmpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Services) != 2 {
		t.Fatalf("%d services, want 2 (web, other)", len(list.Services))
	}
}

// A rolling update continues on the new leader when the leader dies in
// the middle of it.
func TestUpdateContinuesAcrossFailover(t *testing.T) {
	c := testcluster.New(t, 3, 2, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	s := svcSpec("web", 8081)
	s.Replicas = 7
	s.Update = &swarmpb.UpdateConfig{Parallelism: 1, DelayNs: int64(300 * time.Millisecond)}
	resp, err := c.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Service.Id
	testutil.Eventually(t, 20*time.Second, func() error {
		l, err := c.Control().ListServices(ctx, &swarmpb.ListServicesRequest{})
		if err != nil {
			return err
		}
		if l.Services[0].Running != 7 {
			return fmt.Errorf("running %d", l.Services[0].Running)
		}
		return nil
	})
	cur, err := c.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
	if err != nil {
		t.Fatal(err)
	}
	spec := cur.Service.Spec
	spec.Container.Image = "demo:v2"
	if _, err := c.Control().UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: id, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	c.Leader(5 * time.Second).Stop()
	testutil.Eventually(t, 40*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := c.Control().GetService(cctx, &swarmpb.GetServiceRequest{Service: id})
		if err != nil {
			return err
		}
		if st := r.Service.UpdateStatus.GetState(); st != "completed" {
			return fmt.Errorf("update state %q", st)
		}
		tasks, err := c.Control().ListTasks(cctx, &swarmpb.ListTasksRequest{Services: []string{id}})
		if err != nil {
			return err
		}
		n := 0
		for _, tk := range tasks.Tasks {
			if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING {
				if tk.Spec.Container.Image != "demo:v2" || tk.Status.State != swarmpb.TaskState_TASK_STATE_RUNNING {
					return fmt.Errorf("task %s: %s %s", tk.Id, tk.Spec.Container.Image, tk.Status.State)
				}
				n++
			}
		}
		if n != 7 {
			return fmt.Errorf("%d live tasks, want 7", n)
		}
		return nil
	})
}

// liveByNode returns hostname -> running tasks of the service (desired and
// observed RUNNING).
func liveByNode(ctx context.Context, ctl swarmpb.ControlClient, svc string) (map[string]int, int, error) {
	resp, err := ctl.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{svc}})
	if err != nil {
		return nil, 0, err
	}
	out, n := map[string]int{}, 0
	for _, tk := range resp.Tasks {
		if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
			out[resp.NodeNames[tk.NodeId]]++
			n++
		}
	}
	return out, n, nil
}

func waitSpread(t *testing.T, ctx context.Context, ctl swarmpb.ControlClient, svc string, n int, check func(map[string]int) error) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		by, got, err := liveByNode(ctx, ctl, svc)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d running, want %d (%v)", got, n, by)
		}
		if check != nil {
			return check(by)
		}
		return nil
	})
}

// Services through the whole stack (control API, orchestrator, scheduler,
// dispatcher, agents with fake engines): scale, a dead agent's tasks move,
// drain, and the restart policy.
func TestServicesOnInProcessCluster(t *testing.T) {
	c := testcluster.New(t, 1, 2, testcluster.Options{HeartbeatPeriod: 100 * time.Millisecond})
	ctx := ctxT(t, 90*time.Second)
	ctl := c.Control()
	testutil.Eventually(t, 10*time.Second, func() error {
		st, err := nodeStatus(ctx, ctl)
		if err != nil {
			return err
		}
		for name, v := range st {
			if !strings.HasPrefix(v, "NODE_STATUS_READY") {
				return fmt.Errorf("%s is %s", name, v)
			}
		}
		return nil
	})
	s := svcSpec("web", 0)
	s.Replicas = 6
	s.Restart = &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY}
	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Service.Id
	even := func(by map[string]int) error {
		if by["m1"] != 2 || by["w1"] != 2 || by["w2"] != 2 {
			return fmt.Errorf("spread %v", by)
		}
		return nil
	}
	waitSpread(t, ctx, ctl, id, 6, even)

	scale := func(n uint64) {
		cur, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
		if err != nil {
			t.Fatal(err)
		}
		spec := cur.Service.Spec
		spec.Replicas = n
		if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: id, Version: cur.Service.Meta.Version, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	scale(3)
	waitSpread(t, ctx, ctl, id, 3, func(by map[string]int) error {
		if len(by) != 3 {
			return fmt.Errorf("scale down left %v", by)
		}
		return nil
	})
	scale(6)
	waitSpread(t, ctx, ctl, id, 6, even)

	// A container that dies is replaced (restart condition any).
	running := c.Get("w1").Fake().RunningTasks()
	if len(running) == 0 {
		t.Fatal("w1 runs nothing")
	}
	victim := running[0]
	if err := c.Get("w1").Fake().Exit(victim, 137); err != nil {
		t.Fatal(err)
	}
	waitSpread(t, ctx, ctl, id, 6, func(map[string]int) error {
		tk, err := ctl.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{id}})
		if err != nil {
			return err
		}
		for _, x := range tk.Tasks {
			if x.Id == victim && x.Status.State == swarmpb.TaskState_TASK_STATE_FAILED && x.Status.ExitCode == 137 {
				return nil
			}
		}
		return fmt.Errorf("killed task not reported failed")
	})

	// Drain moves tasks away.
	drain := swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
	if _, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w2", Availability: &drain}); err != nil {
		t.Fatal(err)
	}
	waitSpread(t, ctx, ctl, id, 6, func(by map[string]int) error {
		if by["w2"] != 0 {
			return fmt.Errorf("drained node still runs %d", by["w2"])
		}
		return nil
	})
	active := swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	if _, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w2", Availability: &active}); err != nil {
		t.Fatal(err)
	}

	// A dead agent: its node goes Down and its tasks run elsewhere.
	c.Get("w1").Stop()
	waitSpread(t, ctx, ctl, id, 6, func(by map[string]int) error {
		if by["w1"] != 0 {
			return fmt.Errorf("tasks still counted on the dead node: %v", by)
		}
		return nil
	})

	if _, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: id}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, name := range []string{"m1", "w2"} {
			if n := c.Get(name).Fake().Count(); n != 0 {
				return fmt.Errorf("%s still has %d containers", name, n)
			}
		}
		return nil
	})
}
