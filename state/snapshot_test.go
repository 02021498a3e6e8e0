package state

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

func populated(t *testing.T) *Store {
	s := New()
	mustApply(t, s, create(
		&swarmpb.Cluster{Id: "c1", Name: "default", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}},
		&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{Labels: map[string]string{"zone": "a"}}},
		&swarmpb.Node{Id: "n2"},
		svc("s1", "web"), svc("s2", "db"),
		&swarmpb.Secret{Id: "x1", Name: "pw", Data: []byte("hunter2")},
	))
	for i := range 10 {
		mustApply(t, s, create(task(fmt.Sprintf("t%d", i), fmt.Sprintf("s%d", i%2+1), fmt.Sprintf("n%d", i%2+1))))
	}
	s.SetIndex(100)
	return s
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := populated(t)
	snap, idx := src.SnapshotWithIndex()
	if snap.GetVersion() != SnapshotVersion || idx != 100 || snap.GetIndex() != 100 {
		t.Fatalf("version %d index %d", snap.GetVersion(), idx)
	}
	// Go through the wire format, as the FSM does.
	raw, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &swarmpb.Snapshot{}
	if err := proto.Unmarshal(raw, decoded); err != nil {
		t.Fatal(err)
	}

	dst := New()
	mustApply(t, dst, create(svc("old", "web"), task("old-task", "s1", "n1")))
	if err := dst.Restore(idx, decoded); err != nil {
		t.Fatal(err)
	}
	if dst.Index() != 100 {
		t.Fatalf("index %d", dst.Index())
	}
	if got := dst.Snapshot(); !proto.Equal(got, snap) {
		t.Fatalf("round trip differs:\n%v\n%v", got, snap)
	}
	dst.View(func(tx ReadTx) {
		if got := strings.Join(ids(tx.TasksByService("s1")), ","); got != "t0,t2,t4,t6,t8" {
			t.Errorf("TasksByService(s1) = %s", got)
		}
		if got := strings.Join(ids(tx.TasksByNode("n2")), ","); got != "t1,t3,t5,t7,t9" {
			t.Errorf("TasksByNode(n2) = %s", got)
		}
		if tx.GetServiceByName("web").GetId() != "s1" || tx.GetService("old") != nil || tx.GetTask("old-task") != nil {
			t.Error("restore did not replace the old state")
		}
		if tx.Cluster().GetSettings().GetTaskHistoryLimit() != 5 {
			t.Error("cluster lost")
		}
	})

	// Restored objects are the store's own: changing the input later is harmless.
	decoded.Nodes[0].Addr = "mutated"
	dst.View(func(tx ReadTx) {
		if tx.GetNode("n1").GetAddr() != "" {
			t.Error("restore kept the caller's objects")
		}
	})

	// Versions carry over, so optimistic updates keep working after restore.
	var n1 *swarmpb.Node
	dst.View(func(tx ReadTx) { n1 = tx.GetNode("n1") })
	if _, err := dst.ApplyBatch(101, 0, update(n1)); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotIsConsistentAndShared(t *testing.T) {
	s := populated(t)
	snap := s.Snapshot()
	before := proto.Clone(snap)
	var n1 *swarmpb.Node
	s.View(func(tx ReadTx) { n1 = tx.GetNode("n1") })
	c := proto.Clone(n1).(*swarmpb.Node)
	c.Addr = "changed"
	mustApply(t, s, join(update(c), del(task("t0", "", ""))))
	if !proto.Equal(snap, before) {
		t.Fatal("a later batch changed an earlier snapshot")
	}
}

func TestRestoreClosesWatchers(t *testing.T) {
	s := populated(t)
	snap := s.Snapshot()
	a, cancelA := s.Watch()
	defer cancelA()
	b, cancelB := s.Watch()
	defer cancelB()
	mustApply(t, s, create(&swarmpb.Node{Id: "queued"})) // never read: dropped by restore
	if err := s.Restore(500, snap); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan Event{a, b} {
		for range ch { // drains whatever was in flight; must terminate
		}
	}
	if n := len(s.watchers); n != 0 {
		t.Fatalf("%d watchers after restore", n)
	}
	// New watchers work after a restore.
	c, cancelC := s.Watch()
	defer cancelC()
	mustApply(t, s, create(&swarmpb.Node{Id: "after"}))
	if ev := <-c; ev.Index != 501 {
		t.Fatalf("event index %d", ev.Index)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	s := populated(t)
	want := s.Snapshot()
	events, cancel := s.Watch()
	defer cancel()

	good := proto.Clone(want).(*swarmpb.Snapshot)
	cases := map[string]func(*swarmpb.Snapshot){
		"future version": func(sn *swarmpb.Snapshot) { sn.Version = 2 },
		"no version":     func(sn *swarmpb.Snapshot) { sn.Version = 0 },
		"duplicate task": func(sn *swarmpb.Snapshot) { sn.Tasks = append(sn.Tasks, sn.Tasks[0]) },
		"empty id":       func(sn *swarmpb.Snapshot) { sn.Nodes = append(sn.Nodes, &swarmpb.Node{}) },
		"duplicate name": func(sn *swarmpb.Snapshot) { sn.Services = append(sn.Services, svc("s9", "web")) },
	}
	for name, mutate := range cases {
		sn := proto.Clone(good).(*swarmpb.Snapshot)
		mutate(sn)
		err := s.Restore(1, sn)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if name == "duplicate name" && !errors.Is(err, ErrNameConflict) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := s.Restore(1, nil); err == nil {
		t.Error("nil snapshot accepted")
	}
	if s.Index() != 100 || !proto.Equal(s.Snapshot(), want) {
		t.Fatal("a rejected restore changed the store")
	}
	mustApply(t, s, create(&swarmpb.Node{Id: "still-watching"}))
	if ev, ok := <-events; !ok || ev.Index != 101 {
		t.Fatal("a rejected restore closed watchers")
	}
}
