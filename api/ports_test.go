package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gatedRaft holds service creates until n of them have arrived, then
// applies them one by one: every create has passed the API's own port
// check against the same state, as happens when a Raft round trip
// separates the check from the write.
type gatedRaft struct {
	ctlRaft
	n       int
	mu      sync.Mutex
	arrived int
	gate    chan struct{}
}

func (r *gatedRaft) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	if len(b.Actions) == 1 && b.Actions[0].GetService() != nil && b.Actions[0].Kind == swarmpb.StoreAction_KIND_CREATE {
		r.mu.Lock()
		r.arrived++
		if r.arrived == r.n {
			close(r.gate)
		}
		r.mu.Unlock()
		select {
		case <-r.gate:
		case <-time.After(10 * time.Second): // fewer arrived: they were refused earlier
		}
	}
	return r.ctlRaft.Apply(ctx, b)
}

func portSpec(name string, port uint32) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{Name: name, Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "demo:v1"},
		Ports: []*swarmpb.PortConfig{{PublishedPort: port, TargetPort: 80, Protocol: "tcp"}}}
}

// Concurrent creates claiming one published port: exactly one wins, the
// others get the one-line refusal naming the winner. Before, each checked
// the port before writing and all of them won.
func TestConcurrentCreatesClaimPortOnce(t *testing.T) {
	const n = 6
	st := state.New()
	r := &gatedRaft{ctlRaft: ctlRaft{storeRaft{store: st}}, n: n, gate: make(chan struct{})}
	s := &ControlServer{Store: st, Raft: r}
	ctx := context.Background()

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: portSpec(fmt.Sprintf("web%d", i), 8080)})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		if err == nil {
			if won >= 0 {
				t.Fatalf("web%d and web%d both published 8080/tcp", won, i)
			}
			won = i
		}
	}
	if won < 0 {
		t.Fatalf("no create won: %v", errs)
	}
	want := fmt.Sprintf("port 8080/tcp is already published by service web%d", won)
	for i, err := range errs {
		if i == won {
			continue
		}
		if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != want {
			t.Errorf("web%d: %v, want %s", i, err, want)
		}
	}
	var owners int
	st.View(func(tx state.ReadTx) { owners = len(tx.ListServices()) })
	if owners != 1 {
		t.Fatalf("%d services stored, want 1", owners)
	}
}

func TestUpdateToTakenPortRefused(t *testing.T) {
	s, _ := newControl(t)
	ctx := context.Background()
	if _, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: portSpec("web", 8080)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: portSpec("api", 9090)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "api", Spec: portSpec("api", 8080)})
	wantCode(t, err, codes.FailedPrecondition, "port 8080/tcp is already published by service web")
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("not one line: %q", err)
	}
	// The store refuses it even when the API's early check is skipped.
	var api *swarmpb.Service
	s.Store.View(func(tx state.ReadTx) { api = tx.GetServiceByName("api") })
	next := portSpec("api", 8080)
	upd := &swarmpb.Service{Id: api.Id, Meta: api.Meta, Spec: next, SpecVersion: 2}
	_, err = s.writeService(ctx, state.Update(upd), api.Id, "update service api")
	wantCode(t, err, codes.FailedPrecondition, "port 8080/tcp is already published by service web")
}
