package node_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/identity"
	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// Services whose specs together exceed gRPC's 4 MiB message limit (stored
// through Raft directly, as the API's size limits would refuse them) are
// all listed through a follower's socket, which relays each page from the
// leader. Before, service ls failed with "received message larger than
// max".
func TestServiceListLargerThanOneMessage(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	leader := c.Leader(10 * time.Second)
	blob := strings.Repeat("x", 700<<10)
	for i := 0; i < 12; i++ {
		svc := &swarmpb.Service{Id: identity.NewID(), SpecVersion: 1, Spec: &swarmpb.ServiceSpec{
			Name: fmt.Sprintf("big%02d", i), Labels: map[string]string{"blob": blob},
			Container: &swarmpb.ContainerSpec{Image: "demo:v1"}}}
		// 700 KB entries on fast test timings can cost the leader its
		// lease on a loaded machine: a write whose outcome is unknown is
		// tried again on the current leader (an "exists" refusal then means
		// the first try was applied).
		var err error
		for try := 0; try < 5; try++ {
			leader = c.Leader(10 * time.Second)
			_, err = leader.Node.Manager().Raft().Apply(ctx, state.Batch(state.Create(svc)))
			if err == nil || errors.Is(err, state.ErrExists) || errors.Is(err, state.ErrNameConflict) {
				err = nil
				break
			}
		}
		if err != nil {
			t.Fatalf("store service %d: %v", i, err)
		}
	}
	leader = c.Leader(10 * time.Second)
	var follower *testcluster.Member
	for _, m := range c.Members {
		if m != leader {
			follower = m
			break
		}
	}
	for _, m := range []*testcluster.Member{follower, leader} {
		infos, err := listing.Services(ctx, m.Control())
		if err != nil {
			t.Fatalf("service ls through %s: %v", m.Name, err)
		}
		if len(infos) != 12 {
			t.Fatalf("service ls through %s: %d services, want 12", m.Name, len(infos))
		}
	}
}

// Concurrent creates through a manager's socket claiming one published
// port: exactly one wins, the others are told who owns the port.
func TestConcurrentCreatesClaimPortOnceInCluster(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	ctl := c.Control()
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec(fmt.Sprintf("race%d", i), 8090)})
			errs <- err
		}()
	}
	won := 0
	for i := 0; i < n; i++ {
		err := <-errs
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "port 8090/tcp is already published by service race"):
			t.Errorf("a losing create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d creates published 8090/tcp, want 1", won)
	}
}
