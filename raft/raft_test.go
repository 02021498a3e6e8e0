package raft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// tcpLayer is a plain loopback TCP stream layer: enough for a single-node
// Raft, which never dials anyone.
type tcpLayer struct{ net.Listener }

func (l tcpLayer) Dial(addr hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

func listen(t *testing.T, addr string) tcpLayer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return tcpLayer{ln}
}

// openNode opens a single-node Raft on dir, bootstrapping it when the dir
// is new, and waits until it leads with its barrier applied.
func openNode(t *testing.T, dir, addr string, st *state.Store) *Node {
	t.Helper()
	hasState, err := HasState(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := listen(t, addr)
	n, err := Open(Config{
		NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
		Store: st, Timings: FastTimings(), NoSync: true,
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if !hasState {
		if err := n.BootstrapSelf(); err != nil {
			t.Fatal(err)
		}
	}
	waitLeader(t, n, 10*time.Second)
	return n
}

func waitLeader(t *testing.T, n *Node, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ok, ch := n.Leadership()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("node did not become leader within %v", timeout)
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func nodeObj(i int) *swarmpb.Node {
	return &swarmpb.Node{
		Id:          fmt.Sprintf("node-%03d", i),
		Spec:        &swarmpb.NodeSpec{Labels: map[string]string{"i": fmt.Sprint(i)}},
		Description: &swarmpb.NodeDescription{Hostname: fmt.Sprintf("host-%03d", i)},
	}
}

func createBatch(objs ...*swarmpb.Node) *swarmpb.StoreBatch {
	b := &swarmpb.StoreBatch{}
	for _, o := range objs {
		b.Actions = append(b.Actions, &swarmpb.StoreAction{Kind: swarmpb.StoreAction_KIND_CREATE, Target: &swarmpb.StoreAction_Node{Node: o}})
	}
	return b
}

func updateBatch(o *swarmpb.Node) *swarmpb.StoreBatch {
	return &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{{Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_Node{Node: o}}}}
}

func countNodes(st *state.Store) (n int) {
	st.View(func(tx state.ReadTx) { n = len(tx.ListNodes()) })
	return n
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st := state.New()
	n := openNode(t, dir, "127.0.0.1:0", st)
	addr := n.cfg.Addr
	ctx := ctxT(t, 60*time.Second)

	var last uint64
	for i := 0; i < 90; i++ {
		idx, err := n.Apply(ctx, createBatch(nodeObj(i)))
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if idx <= last {
			t.Fatalf("apply %d: index %d not after %d", i, idx, last)
		}
		last = idx
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// A few more after the snapshot, so the restart exercises both the
	// snapshot restore and the replay of the log tail.
	for i := 90; i < 100; i++ {
		idx, err := n.Apply(ctx, createBatch(nodeObj(i)))
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		last = idx
	}
	if got := countNodes(st); got != 100 {
		t.Fatalf("before restart: %d nodes", got)
	}
	wantIndex := st.Index()
	if wantIndex != last {
		t.Fatalf("store index %d, last apply index %d", wantIndex, last)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	st2 := state.New()
	n2 := openNode(t, dir, addr, st2)
	// The leader's barrier has been applied, so the FSM holds every entry.
	if got := st2.Index(); got != wantIndex {
		t.Fatalf("after restart: index %d, want %d", got, wantIndex)
	}
	if got := countNodes(st2); got != 100 {
		t.Fatalf("after restart: %d nodes, want 100", got)
	}
	var n42 *swarmpb.Node
	st2.View(func(tx state.ReadTx) { n42 = tx.GetNode("node-042") })
	if n42.GetSpec().GetLabels()["i"] != "42" || n42.GetDescription().GetHostname() != "host-042" {
		t.Fatalf("node-042 after restart: %v", n42)
	}
	// And the restarted node keeps taking writes.
	if _, err := n2.Apply(ctx, createBatch(nodeObj(100))); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	if got := countNodes(st2); got != 101 {
		t.Fatalf("after a new write: %d nodes", got)
	}
}

// objects is the store's content without its index (which a skipped entry
// legitimately advances).
func objects(st *state.Store) *swarmpb.Snapshot {
	s := st.Snapshot()
	s.Index = 0
	return s
}

func TestUnknownCommandTypeIsSkipped(t *testing.T) {
	st := state.New()
	n := openNode(t, t.TempDir(), "127.0.0.1:0", st)
	ctx := ctxT(t, 30*time.Second)
	if _, err := n.Apply(ctx, createBatch(nodeObj(1))); err != nil {
		t.Fatal(err)
	}
	before := objects(st)

	raw, err := proto.Marshal(&swarmpb.Command{Type: swarmpb.CommandType(99), Version: 1, Payload: []byte("whatever")})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := n.ApplyCommand(ctx, raw)
	if !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("unknown command type: got %v, want ErrUnknownCommand", err)
	}
	if idx == 0 {
		t.Fatalf("unknown command: no index returned")
	}
	if got := st.Index(); got != idx {
		t.Fatalf("store index %d after skipped entry at %d", got, idx)
	}
	after := objects(st)
	if !proto.Equal(before, after) {
		t.Fatalf("state changed by an unknown command:\nbefore %v\nafter  %v", before, after)
	}

	// A newer payload version of a known type is refused the same way.
	newer, err := proto.Marshal(&swarmpb.Command{Type: swarmpb.CommandType_COMMAND_TYPE_STORE_BATCH, Version: storeBatchVersion + 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ApplyCommand(ctx, newer); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("newer payload version: got %v, want ErrUnknownCommand", err)
	}

	// Garbage that is not an envelope at all fails without touching state.
	if _, err := n.ApplyCommand(ctx, []byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatal("garbage command accepted")
	}
	if !proto.Equal(before, objects(st)) {
		t.Fatal("state changed by a garbage command")
	}

	// Later writes still work.
	idx2, err := n.Apply(ctx, createBatch(nodeObj(2)))
	if err != nil {
		t.Fatalf("write after unknown command: %v", err)
	}
	if idx2 <= idx {
		t.Fatalf("index %d not after %d", idx2, idx)
	}
	if got := countNodes(st); got != 2 {
		t.Fatalf("%d nodes, want 2", got)
	}
}

func TestStaleVersionUpdateConflicts(t *testing.T) {
	st := state.New()
	n := openNode(t, t.TempDir(), "127.0.0.1:0", st)
	ctx := ctxT(t, 30*time.Second)

	idx, err := n.Apply(ctx, createBatch(nodeObj(1)))
	if err != nil {
		t.Fatal(err)
	}
	var cur *swarmpb.Node
	st.View(func(tx state.ReadTx) { cur = tx.GetNode("node-001") })
	if cur.GetMeta().GetVersion() != idx {
		t.Fatalf("version %d, created at index %d", cur.GetMeta().GetVersion(), idx)
	}
	stale := proto.Clone(cur).(*swarmpb.Node)

	fresh := proto.Clone(cur).(*swarmpb.Node)
	fresh.Spec.Labels["k"] = "first"
	if _, err := n.Apply(ctx, updateBatch(fresh)); err != nil {
		t.Fatalf("update with the current version: %v", err)
	}
	stale.Spec.Labels["k"] = "second"
	_, err = n.Apply(ctx, updateBatch(stale))
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("stale update: got %v, want state.ErrConflict", err)
	}
	st.View(func(tx state.ReadTx) { cur = tx.GetNode("node-001") })
	if got := cur.GetSpec().GetLabels()["k"]; got != "first" {
		t.Fatalf("label k = %q after a refused stale update", got)
	}
}
