package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
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
		}, codes.InvalidArgument, "an image is required"},
		{"failure ratio", func() error {
			s := svcSpec("ratio", 0)
			s.Update = &swarmpb.UpdateConfig{MaxFailureRatio: 1.5}
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: s})
			return err
		}, codes.InvalidArgument, "between 0 and 1"},
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
