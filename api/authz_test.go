package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeConfig is a Raft configuration the test sets.
type fakeConfig struct {
	mu  sync.Mutex
	ids []string
}

func (f *fakeConfig) set(ids ...string) {
	f.mu.Lock()
	f.ids = ids
	f.mu.Unlock()
}

func (f *fakeConfig) Members() ([]raft.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []raft.Member
	for _, id := range f.ids {
		out = append(out, raft.Member{ID: id, Addr: id + ":2377", Voter: true})
	}
	return out, nil
}

type authzFixture struct {
	t     *testing.T
	store *state.Store
	cfg   *fakeConfig
	az    *Authorizer
	index uint64
}

func newAuthzFixture(t *testing.T) *authzFixture {
	f := &authzFixture{t: t, store: state.New(), cfg: &fakeConfig{}}
	f.az = NewAuthorizer(f.store, f.cfg, "cluster1")
	return f
}

func (f *authzFixture) apply(actions ...*swarmpb.StoreAction) {
	f.t.Helper()
	f.index++
	if _, err := f.store.ApplyBatch(f.index, time.Now().UnixNano(), state.Batch(actions...)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *authzFixture) node(id string, desired, role swarmpb.NodeRole) *swarmpb.Node {
	var n *swarmpb.Node
	f.store.View(func(tx state.ReadTx) { n = tx.GetNode(id) })
	if n == nil {
		return &swarmpb.Node{Id: id, Spec: &swarmpb.NodeSpec{DesiredRole: desired}, Role: role}
	}
	n.Spec = &swarmpb.NodeSpec{DesiredRole: desired}
	n.Role = role
	return n
}

func mgrID(id string) ca.Identity {
	return ca.Identity{NodeID: id, ClusterID: "cluster1", Role: swarmpb.NodeRole_NODE_ROLE_MANAGER}
}

func TestAuthorizerDecisions(t *testing.T) {
	const M, W = swarmpb.NodeRole_NODE_ROLE_MANAGER, swarmpb.NodeRole_NODE_ROLE_WORKER
	f := newAuthzFixture(t)

	// An empty configuration and store: a manager that waits to be added
	// trusts manager certificates of its cluster, for Raft and manager
	// calls, but knows no node for node-scoped calls.
	for _, s := range []Scope{ScopeRaft, ScopeManager} {
		if err := f.az.Check(mgrID("leader"), s); err != nil {
			t.Fatalf("fresh manager, scope %d: %v", s, err)
		}
	}
	if err := f.az.Check(mgrID("leader"), ScopeNode); err == nil {
		t.Fatal("fresh manager admitted an unknown node for a node-scoped call")
	}

	f.apply(state.Create(&swarmpb.Cluster{Id: "cluster1"}),
		state.Create(f.node("leader", M, M)), state.Create(f.node("promoted", M, W)),
		state.Create(f.node("demoted", W, M)), state.Create(f.node("worker", W, W)))
	f.cfg.set("leader", "demoted")

	cases := []struct {
		name  string
		id    ca.Identity
		scope Scope
		want  string // "" = allowed, else a part of the error
	}{
		{"manager call by a manager", mgrID("leader"), ScopeManager, ""},
		{"raft by a member manager", mgrID("leader"), ScopeRaft, ""},
		{"join by a promoted worker (role still worker, not a member yet)", mgrID("promoted"), ScopeManager, ""},
		{"raft by a promoted worker not yet added", mgrID("promoted"), ScopeRaft, "not a member of the Raft configuration"},
		{"manager call by a demoted manager", mgrID("demoted"), ScopeManager, "demoted"},
		{"raft by a demoted manager still in the configuration", mgrID("demoted"), ScopeRaft, "demoted"},
		{"node call by a demoted manager", mgrID("demoted"), ScopeNode, ""},
		{"node call by a worker", ca.Identity{NodeID: "worker", ClusterID: "cluster1"}, ScopeNode, ""},
		{"node call by a removed node", ca.Identity{NodeID: "gone", ClusterID: "cluster1"}, ScopeNode, "removed"},
		{"manager call by a removed manager", mgrID("gone"), ScopeManager, "removed"},
		{"raft by a removed manager", mgrID("gone"), ScopeRaft, "removed"},
		{"another cluster's certificate", ca.Identity{NodeID: "leader", ClusterID: "other"}, ScopeNode, "not to this cluster"},
	}
	for _, tc := range cases {
		err := f.az.Check(tc.id, tc.scope)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: allowed", tc.name)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %q does not mention %q", tc.name, err, tc.want)
		case tc.want != "" && !errors.Is(err, errPermission):
			t.Errorf("%s: %v is not a permission error", tc.name, err)
		}
	}

	// A member this replica has not seen created yet (its store lags the
	// Raft log) is accepted on Raft.
	f.cfg.set("leader", "demoted", "new")
	if err := f.az.Check(mgrID("new"), ScopeRaft); err != nil {
		t.Fatalf("raft by a member not yet in this replica's store: %v", err)
	}
}

// TestAuthorizerRevokesHolds: an admitted stream or connection is revoked
// as soon as the node is demoted or removed, or leaves the Raft
// configuration, and not before.
func TestAuthorizerRevokesHolds(t *testing.T) {
	const M, W = swarmpb.NodeRole_NODE_ROLE_MANAGER, swarmpb.NodeRole_NODE_ROLE_WORKER
	f := newAuthzFixture(t)
	f.az.Recheck = 20 * time.Millisecond
	f.apply(state.Create(&swarmpb.Cluster{Id: "cluster1"}), state.Create(f.node("m", M, M)), state.Create(f.node("r", M, M)), state.Create(f.node("w", W, W)))
	f.cfg.set("m", "r")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.az.Run(ctx) }()
	defer func() { cancel(); <-done }()

	revoked := map[string]chan error{}
	admit := func(name string, id ca.Identity, s Scope) func() {
		t.Helper()
		ch := make(chan error, 1)
		revoked[name] = ch
		release, err := f.az.Admit(id, s, func(err error) { ch <- err })
		if err != nil {
			t.Fatalf("admit %s: %v", name, err)
		}
		return release
	}
	defer admit("manager stream", mgrID("m"), ScopeManager)()
	defer admit("worker stream", ca.Identity{NodeID: "w", ClusterID: "cluster1"}, ScopeNode)()
	defer admit("raft conn", mgrID("r"), ScopeRaft)()
	released := admit("released", ca.Identity{NodeID: "w", ClusterID: "cluster1"}, ScopeNode)
	released()

	expect := func(name, want string) {
		t.Helper()
		select {
		case err := <-revoked[name]:
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("%s revoked with %q, want %q", name, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not revoked", name)
		}
	}
	quiet := func(names ...string) {
		t.Helper()
		for _, name := range names {
			select {
			case err := <-revoked[name]:
				t.Fatalf("%s revoked: %v", name, err)
			default:
			}
		}
	}

	// An unrelated change revokes nothing.
	f.apply(state.Update(f.node("w", W, W)))
	quiet("manager stream", "worker stream", "raft conn", "released")

	f.apply(state.Update(f.node("m", W, M))) // demote m
	expect("manager stream", "demoted")
	f.apply(state.Delete(f.node("w", W, W))) // node rm w
	expect("worker stream", "removed")
	f.cfg.set("m") // r leaves the configuration: not a store event
	expect("raft conn", "not a member")
	quiet("released")
}

// TestAuthorizerNodeChangeRechecksItsHoldsOnly guards against a node
// change rechecking every open stream of the cluster (O(nodes) per
// change, O(nodes^2) over its formation): with 1,000 workers' streams
// held, removing one node decides again for that node's stream alone.
func TestAuthorizerNodeChangeRechecksItsHoldsOnly(t *testing.T) {
	const W = swarmpb.NodeRole_NODE_ROLE_WORKER
	f := newAuthzFixture(t)
	f.az.Recheck = time.Hour // no periodic recheck in this test
	actions := []*swarmpb.StoreAction{state.Create(&swarmpb.Cluster{Id: "cluster1"})}
	for i := range 1000 {
		actions = append(actions, state.Create(f.node(fmt.Sprintf("w%d", i), W, W)))
	}
	f.apply(actions...)
	revoked := make(chan string, 1000)
	for i := range 1000 {
		id := fmt.Sprintf("w%d", i)
		release, err := f.az.Admit(ca.Identity{NodeID: id, ClusterID: "cluster1"}, ScopeNode, func(error) { revoked <- id })
		if err != nil {
			t.Fatalf("admit %s: %v", id, err)
		}
		defer release()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.az.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Until Run watches the store, a change goes unseen: touch w999 until
	// a recheck shows the watch is live, then count from zero.
	deadline := time.Now().Add(5 * time.Second)
	touches := int64(0)
	for f.az.rechecked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the authorizer never rechecked after a node change")
		}
		f.apply(state.Update(f.node("w999", W, W)))
		touches++
		time.Sleep(10 * time.Millisecond) // poll interval, with a deadline
	}
	// Each touch rechecks w999's one stream at most.
	if n := f.az.rechecked.Load(); n > touches {
		t.Fatalf("%d changes of w999 rechecked %d held streams", touches, n)
	}
	f.az.rechecked.Store(0)
	f.apply(state.Delete(f.node("w7", W, W)))
	select {
	case id := <-revoked:
		if id != "w7" {
			t.Fatalf("removing w7 revoked %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("removing w7 revoked nothing")
	}
	if n := f.az.rechecked.Load(); n != 1 {
		t.Fatalf("removing one node of 1,000 rechecked %d held streams, want 1", n)
	}
}

// blockingStream is a server stream whose RecvMsg blocks until the test
// ends it, as a client that sends nothing would.
type blockingStream struct {
	grpc.ServerStream
	ctx     context.Context
	release chan struct{}
}

func (s *blockingStream) Context() context.Context { return s.ctx }
func (s *blockingStream) RecvMsg(any) error {
	<-s.release
	return io.EOF
}

// TestHeldStreamRecvEndsOnRevocation: a handler blocked receiving from a
// client-streaming call (PublishLogs) returns PermissionDenied as soon as
// the caller's access is revoked, and receives nothing more afterwards.
func TestHeldStreamRecvEndsOnRevocation(t *testing.T) {
	base := &blockingStream{ctx: context.Background(), release: make(chan struct{})}
	defer close(base.release)
	ctx, cancel := context.WithCancelCause(base.ctx)
	defer cancel(nil)
	hs := &heldStream{ServerStream: base, ctx: ctx, clientStreams: true}
	got := make(chan error, 1)
	go func() { got <- hs.RecvMsg(new(swarmpb.PublishLogsMessage)) }()
	cancel(revokedError{deniedf("permission denied: node n1 is not part of this cluster: it was removed")})
	select {
	case err := <-got:
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "removed") {
			t.Fatalf("blocked receive after revocation: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a receive blocked on the client was not released by the revocation")
	}
	if err := hs.RecvMsg(new(swarmpb.PublishLogsMessage)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("receive after revocation: %v", err)
	}
}
