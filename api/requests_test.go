package api

import (
	"context"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// taggingRaft tags batches with the context's request ID as raft.Node
// does, and counts the batches the store applied.
type taggingRaft struct {
	ctlRaft
	mu      sync.Mutex
	applied int
}

func (r *taggingRaft) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	b, ok := raft.TagBatch(ctx, b)
	idx, err := r.ctlRaft.Apply(ctx, b)
	if err == nil {
		ok()
		r.mu.Lock()
		r.applied++
		r.mu.Unlock()
	}
	return idx, err
}

// lostAnswerLeader commits every call through the real server, then loses
// the first answer of each method, as when the leader changes after the
// commit and before its answer reaches the relay: the relay resends.
type lostAnswerLeader struct {
	*ControlServer
	mu   sync.Mutex
	lost map[string]bool
	seen map[string]int
}

func (l *lostAnswerLeader) loseFirst(method string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[method]++
	if !l.lost[method] {
		l.lost[method] = true
		return status.Error(codes.Unavailable, "connection reset by peer (injected after commit)")
	}
	return nil
}

func (l *lostAnswerLeader) CreateService(ctx context.Context, r *swarmpb.CreateServiceRequest) (*swarmpb.CreateServiceResponse, error) {
	resp, err := l.ControlServer.CreateService(ctx, r)
	if err == nil {
		if lerr := l.loseFirst("create"); lerr != nil {
			return nil, lerr
		}
	}
	return resp, err
}

func (l *lostAnswerLeader) UpdateService(ctx context.Context, r *swarmpb.UpdateServiceRequest) (*swarmpb.UpdateServiceResponse, error) {
	resp, err := l.ControlServer.UpdateService(ctx, r)
	if err == nil {
		if lerr := l.loseFirst("update"); lerr != nil {
			return nil, lerr
		}
	}
	return resp, err
}

func (l *lostAnswerLeader) RemoveService(ctx context.Context, r *swarmpb.RemoveServiceRequest) (*swarmpb.RemoveServiceResponse, error) {
	resp, err := l.ControlServer.RemoveService(ctx, r)
	if err == nil {
		if lerr := l.loseFirst("remove"); lerr != nil {
			return nil, lerr
		}
	}
	return resp, err
}

// A write the leader committed but whose answer was lost is resent by the
// relay; the client gets the first outcome, once: a create succeeds (not
// "already exists") with the service it created, a forced update bumps
// the spec version once, a remove succeeds (not "not found").
func TestRelayResendAppliesOnce(t *testing.T) {
	st := state.New()
	r := &taggingRaft{ctlRaft: ctlRaft{storeRaft{store: st}}}
	dtApply(t, &r.storeRaft, state.Create(&swarmpb.Cluster{Id: "c1"}))
	leader := &lostAnswerLeader{ControlServer: &ControlServer{Store: st, Raft: r}, lost: map[string]bool{}, seen: map[string]int{}}
	p := &ControlProxy{Router: localRouter{srv: leader}}
	ctx := context.Background()

	created, err := p.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: netSpec("web")})
	if err != nil {
		t.Fatalf("create, resent after its answer was lost: %v", err)
	}
	if leader.seen["create"] != 2 {
		t.Fatalf("the leader saw the create %d times, want 2 (the resend)", leader.seen["create"])
	}
	var svcs []*swarmpb.Service
	st.View(func(tx state.ReadTx) { svcs = tx.ListServices() })
	if len(svcs) != 1 || svcs[0].Id != created.Service.Id {
		t.Fatalf("services after the resent create: %v, want only %s", svcs, created.Service.Id)
	}

	applied := r.applied
	updated, err := p.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "web", Spec: netSpec("web"), Force: true})
	if err != nil {
		t.Fatalf("forced update, resent: %v", err)
	}
	if got := updated.Service.SpecVersion; got != created.Service.SpecVersion+1 {
		t.Fatalf("spec version after one forced update (resent) = %d, want %d", got, created.Service.SpecVersion+1)
	}
	st.View(func(tx state.ReadTx) { svcs = tx.ListServices() })
	if svcs[0].SpecVersion != created.Service.SpecVersion+1 {
		t.Fatalf("stored spec version %d, want %d: the update applied twice", svcs[0].SpecVersion, created.Service.SpecVersion+1)
	}
	if r.applied-applied != 2 { // the first write, and the resend's (skipped by the store)
		t.Fatalf("%d writes proposed for the update, want 2", r.applied-applied)
	}

	if _, err := p.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: "web"}); err != nil {
		t.Fatalf("remove, resent: %v", err)
	}
	st.View(func(tx state.ReadTx) { svcs = tx.ListServices() })
	if len(svcs) != 0 {
		t.Fatalf("services after remove: %v", svcs)
	}

	// A new request with the same spec is a new create, not a replay.
	if _, err := p.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: netSpec("web")}); err != nil {
		t.Fatalf("a second create of web: %v", err)
	}
}

// The leader's interceptor takes the request ID from the relay's metadata.
func TestIncomingRequestID(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDHeader, "abc"))
	if got := raft.RequestID(withIncomingRequestID(ctx)); got != "abc" {
		t.Fatalf("request ID %q, want abc", got)
	}
	long := string(make([]byte, raft.MaxRequestIDLen+1))
	ctx = metadata.NewIncomingContext(context.Background(), metadata.Pairs(RequestIDHeader, long))
	if got := raft.RequestID(withIncomingRequestID(ctx)); got != "" {
		t.Fatalf("an over-long request ID was taken: %q", got)
	}
	if got := raft.RequestID(withIncomingRequestID(context.Background())); got != "" {
		t.Fatalf("request ID %q without metadata", got)
	}
}
