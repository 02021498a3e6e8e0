package state

import (
	"errors"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// kindCase lets one test exercise every object kind through the same steps.
type kindCase struct {
	noun string
	make func(id string) proto.Message
	get  func(tx ReadTx, id string) proto.Message
	list func(tx ReadTx) []string
	ev   func(e Event) proto.Message
}

func kindCases() []kindCase {
	return []kindCase{
		{"cluster",
			func(id string) proto.Message { return &swarmpb.Cluster{Id: id, Name: "c"} },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetCluster(id)) },
			func(tx ReadTx) []string { return ids(tx.ListClusters()) },
			func(e Event) proto.Message { return nilIfNil(e.Cluster()) }},
		{"node",
			func(id string) proto.Message { return &swarmpb.Node{Id: id, Addr: "a:1"} },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetNode(id)) },
			func(tx ReadTx) []string { return ids(tx.ListNodes()) },
			func(e Event) proto.Message { return nilIfNil(e.Node()) }},
		{"service",
			func(id string) proto.Message { return svc(id, "name-"+id) },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetService(id)) },
			func(tx ReadTx) []string { return ids(tx.ListServices()) },
			func(e Event) proto.Message { return nilIfNil(e.Service()) }},
		{"task",
			func(id string) proto.Message { return task(id, "s", "n") },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetTask(id)) },
			func(tx ReadTx) []string { return ids(tx.ListTasks()) },
			func(e Event) proto.Message { return nilIfNil(e.Task()) }},
		{"secret",
			func(id string) proto.Message { return &swarmpb.Secret{Id: id, Name: "s-" + id, Data: []byte("x")} },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetSecret(id)) },
			func(tx ReadTx) []string { return ids(tx.ListSecrets()) },
			func(e Event) proto.Message { return nilIfNil(e.Secret()) }},
		{"network",
			func(id string) proto.Message {
				return &swarmpb.Network{Id: id, Spec: &swarmpb.NetworkSpec{Name: "n-" + id}, Subnet: "10.96.0.0/20"}
			},
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetNetwork(id)) },
			func(tx ReadTx) []string { return ids(tx.ListNetworks()) },
			func(e Event) proto.Message { return nilIfNil(e.Network()) }},
		{"config",
			func(id string) proto.Message { return &swarmpb.Config{Id: id, Name: "c-" + id, Version: 1} },
			func(tx ReadTx, id string) proto.Message { return nilIfNil(tx.GetConfig(id)) },
			func(tx ReadTx) []string { return ids(tx.ListConfigs()) },
			func(e Event) proto.Message { return nilIfNil(e.Config()) }},
	}
}

// nilIfNil turns a typed nil pointer into an untyped nil interface.
func nilIfNil[T object](v T) proto.Message {
	if v.ProtoReflect().IsValid() {
		return v
	}
	return nil
}

func metaOf(m proto.Message) *swarmpb.Meta { return m.(object).GetMeta() }

func withMeta(m proto.Message, meta *swarmpb.Meta) proto.Message {
	c := proto.Clone(m)
	f := c.ProtoReflect().Descriptor().Fields().ByName("meta")
	c.ProtoReflect().Set(f, protoValue(meta))
	return c
}

func TestCreateUpdateDeleteEachKind(t *testing.T) {
	for _, kc := range kindCases() {
		t.Run(kc.noun, func(t *testing.T) {
			s := New()
			in := kc.make("b")
			evs, err := s.ApplyBatch(5, 100, batch(swarmpb.StoreAction_KIND_CREATE, kc.make("a"), in))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 2 || evs[0].Kind != EventCreate || evs[1].Index != 5 || kc.ev(evs[1]) == nil || evs[1].Old != nil {
				t.Fatalf("create events: %+v", evs)
			}
			var created proto.Message
			s.View(func(tx ReadTx) {
				created = kc.get(tx, "b")
				if got := kc.list(tx); strings.Join(got, ",") != "a,b" {
					t.Errorf("list = %v", got)
				}
			})
			if m := metaOf(created); m.GetVersion() != 5 || m.GetCreatedAt() != 100 || m.GetUpdatedAt() != 100 {
				t.Fatalf("create meta = %v", m)
			}
			if created == in {
				t.Fatal("stored the caller's object instead of a clone")
			}

			if _, err := s.ApplyBatch(6, 200, batch(swarmpb.StoreAction_KIND_CREATE, kc.make("b"))); !errors.Is(err, ErrExists) {
				t.Fatalf("duplicate create: %v", err)
			}

			stale := withMeta(created, &swarmpb.Meta{Version: 4})
			_, err = s.ApplyBatch(7, 300, batch(swarmpb.StoreAction_KIND_UPDATE, stale))
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "update "+kc.noun+" b") {
				t.Fatalf("stale update: %v", err)
			}

			evs, err = s.ApplyBatch(8, 400, batch(swarmpb.StoreAction_KIND_UPDATE, created))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Kind != EventUpdate || evs[0].Old != created {
				t.Fatalf("update events: %+v", evs)
			}
			if m := metaOf(evs[0].Object); m.GetVersion() != 8 || m.GetCreatedAt() != 100 || m.GetUpdatedAt() != 400 {
				t.Fatalf("update meta = %v", m)
			}
			if m := metaOf(created); m.GetVersion() != 5 || m.GetUpdatedAt() != 100 {
				t.Fatalf("update mutated the previously stored object: %v", m)
			}

			evs, err = s.ApplyBatch(9, 500, batch(swarmpb.StoreAction_KIND_DELETE, kc.make("b")))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Kind != EventDelete || metaOf(evs[0].Object).GetVersion() != 8 {
				t.Fatalf("delete events: %+v", evs)
			}
			s.View(func(tx ReadTx) {
				if kc.get(tx, "b") != nil {
					t.Error("deleted object still readable")
				}
			})
			if _, err := s.ApplyBatch(10, 600, batch(swarmpb.StoreAction_KIND_DELETE, kc.make("b"))); !errors.Is(err, ErrNotFound) {
				t.Fatalf("delete missing: %v", err)
			}
			if _, err := s.ApplyBatch(11, 600, batch(swarmpb.StoreAction_KIND_UPDATE, kc.make("zz"))); !errors.Is(err, ErrNotFound) {
				t.Fatalf("update missing: %v", err)
			}
			if s.Index() != 11 {
				t.Fatalf("failed batches must still consume their index: %d", s.Index())
			}
		})
	}
}

func TestCallerMutationDoesNotLeak(t *testing.T) {
	s := New()
	n := &swarmpb.Node{Id: "n1", Addr: "before"}
	mustApply(t, s, create(n))
	n.Addr = "after"
	s.View(func(tx ReadTx) {
		if got := tx.GetNode("n1").GetAddr(); got != "before" {
			t.Fatalf("addr = %q", got)
		}
	})
}

func TestFailedBatchAppliesNothing(t *testing.T) {
	s := New()
	mustApply(t, s, create(&swarmpb.Node{Id: "n1"}, task("t1", "s1", "n1")))
	var n1 *swarmpb.Node
	var t1 *swarmpb.Task
	s.View(func(tx ReadTx) { n1, t1 = tx.GetNode("n1"), tx.GetTask("t1") })

	w, cancel := s.Watch()
	defer cancel()

	stale := proto.Clone(n1).(*swarmpb.Node)
	stale.Meta.Version = 0
	moved := proto.Clone(t1).(*swarmpb.Task)
	moved.NodeId = "n2"
	b := join(create(&swarmpb.Node{Id: "n2"}, task("t2", "s1", "n2")), update(moved, stale))
	_, err := s.ApplyBatch(2, 1, b)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "update node n1") {
		t.Fatalf("err = %v", err)
	}
	if s.Index() != 2 {
		t.Fatalf("index = %d", s.Index())
	}
	s.View(func(tx ReadTx) {
		if tx.GetNode("n2") != nil || tx.GetTask("t2") != nil {
			t.Error("creates of a failed batch were applied")
		}
		if got := ids(tx.TasksByNode("n2")); len(got) != 0 {
			t.Errorf("index touched by failed batch: %v", got)
		}
		if got := ids(tx.TasksByNode("n1")); len(got) != 1 {
			t.Errorf("index touched by failed batch: %v", got)
		}
		if tx.GetNode("n1") != n1 {
			t.Error("n1 replaced by failed batch")
		}
	})
	mustApply(t, s, create(&swarmpb.Node{Id: "n3"}))
	if ev := <-w; ev.Index != 3 || ev.Node().GetId() != "n3" {
		t.Fatalf("watcher saw %+v; failed batch must publish nothing", ev)
	}
}

func TestIndexOrdering(t *testing.T) {
	s := New()
	if _, err := s.ApplyBatch(0, 0, create(&swarmpb.Node{Id: "n"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("index 0: %v", err)
	}
	mustApply(t, s, create(&swarmpb.Node{Id: "n"}))
	s.SetIndex(10)
	if s.Index() != 10 {
		t.Fatal(s.Index())
	}
	s.SetIndex(3)
	if s.Index() != 10 {
		t.Fatal("SetIndex moved backwards")
	}
	if _, err := s.ApplyBatch(10, 0, create(&swarmpb.Node{Id: "m"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("replayed index: %v", err)
	}
	if s.Index() != 10 {
		t.Fatal(s.Index())
	}
	if evs, err := s.ApplyBatch(11, 0, nil); err != nil || evs != nil || s.Index() != 11 {
		t.Fatalf("empty batch: %v %v %d", evs, err, s.Index())
	}
}

func TestInvalidActions(t *testing.T) {
	s := New()
	cases := map[string]*swarmpb.StoreBatch{
		"no target": {Actions: []*swarmpb.StoreAction{{Kind: swarmpb.StoreAction_KIND_CREATE}}},
		"nil node":  {Actions: []*swarmpb.StoreAction{{Target: &swarmpb.StoreAction_Node{}}}},
		"empty id":  create(&swarmpb.Task{}),
		"bad kind":  {Actions: []*swarmpb.StoreAction{{Kind: 9, Target: &swarmpb.StoreAction_Node{Node: &swarmpb.Node{Id: "n"}}}}},
	}
	for name, b := range cases {
		if _, err := s.ApplyBatch(s.Index()+1, 0, b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBatchSeesItsOwnWrites(t *testing.T) {
	s := New()
	const idx = 7
	t1 := task("t1", "s", "")
	moved := task("t1", "s", "n1")
	moved.Meta = &swarmpb.Meta{Version: idx}
	evs, err := s.ApplyBatch(idx, 1, join(create(t1), update(moved), create(svc("s1", "web")), del(svc("s1", "web")), create(svc("s2", "web"))))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("events: %d", len(evs))
	}
	s.View(func(tx ReadTx) {
		if got := ids(tx.TasksByNode("n1")); len(got) != 1 {
			t.Errorf("TasksByNode(n1) = %v", got)
		}
		if got := tx.TasksByNode(""); len(got) != 0 {
			t.Errorf("TasksByNode(\"\") = %v", ids(got))
		}
		if got := tx.GetServiceByName("web").GetId(); got != "s2" {
			t.Errorf("web -> %q", got)
		}
		if tx.GetService("s1") != nil {
			t.Error("s1 survived")
		}
	})
}

func TestServiceNamesUnique(t *testing.T) {
	s := New()
	mustApply(t, s, create(svc("s1", "web"), svc("s2", "db"), svc("s3", ""), svc("s4", "")))

	_, err := s.ApplyBatch(s.Index()+1, 0, create(svc("s5", "web")))
	if !errors.Is(err, ErrNameConflict) || !strings.Contains(err.Error(), "create service s5") {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.ApplyBatch(s.Index()+1, 0, create(svc("s5", "x"), svc("s6", "x"))); !errors.Is(err, ErrNameConflict) {
		t.Fatalf("duplicate within batch: %v", err)
	}

	var s2 *swarmpb.Service
	s.View(func(tx ReadTx) { s2 = tx.GetService("s2") })
	rename := func(in *swarmpb.Service, name string) *swarmpb.Service {
		c := proto.Clone(in).(*swarmpb.Service)
		c.Spec.Name = name
		return c
	}
	if _, err := s.ApplyBatch(s.Index()+1, 0, update(rename(s2, "web"))); !errors.Is(err, ErrNameConflict) {
		t.Fatalf("rename onto taken name: %v", err)
	}

	// Renaming frees the old name for the rest of the batch.
	b := join(update(rename(s2, "database")), create(svc("s7", "db")))
	mustApply(t, s, b)
	s.View(func(tx ReadTx) {
		if got := tx.GetServiceByName("db").GetId(); got != "s7" {
			t.Errorf("db -> %q", got)
		}
		if got := tx.GetServiceByName("database").GetId(); got != "s2" {
			t.Errorf("database -> %q", got)
		}
		if tx.GetServiceByName("") != nil {
			t.Error("empty name is not a lookup key")
		}
	})

	mustApply(t, s, del(svc("s1", "")))
	mustApply(t, s, create(svc("s8", "web")))
	s.View(func(tx ReadTx) {
		if got := tx.GetServiceByName("web").GetId(); got != "s8" {
			t.Errorf("web -> %q", got)
		}
	})
}

func TestTaskIndexesFollowChanges(t *testing.T) {
	s := New()
	mustApply(t, s, create(task("t1", "s1", "n1"), task("t2", "s1", "n2"), task("t3", "s2", "n1"), task("t4", "s2", "")))
	check := func(step string, byService, byNode map[string]string) {
		t.Helper()
		s.View(func(tx ReadTx) {
			for k, want := range byService {
				if got := strings.Join(ids(tx.TasksByService(k)), ","); got != want {
					t.Errorf("%s: TasksByService(%s) = %q, want %q", step, k, got, want)
				}
			}
			for k, want := range byNode {
				if got := strings.Join(ids(tx.TasksByNode(k)), ","); got != want {
					t.Errorf("%s: TasksByNode(%s) = %q, want %q", step, k, got, want)
				}
			}
		})
	}
	check("initial",
		map[string]string{"s1": "t1,t2", "s2": "t3,t4", "s3": ""},
		map[string]string{"n1": "t1,t3", "n2": "t2", "": "t4"})

	var t1, t4 *swarmpb.Task
	s.View(func(tx ReadTx) { t1, t4 = tx.GetTask("t1"), tx.GetTask("t4") })
	t1c := proto.Clone(t1).(*swarmpb.Task)
	t1c.NodeId, t1c.ServiceId = "n2", "s3"
	t4c := proto.Clone(t4).(*swarmpb.Task)
	t4c.NodeId = "n3"
	mustApply(t, s, update(t1c, t4c))
	check("moved",
		map[string]string{"s1": "t2", "s2": "t3,t4", "s3": "t1"},
		map[string]string{"n1": "t3", "n2": "t1,t2", "n3": "t4", "": ""})

	mustApply(t, s, del(task("t2", "", ""), task("t3", "", "")))
	check("deleted",
		map[string]string{"s1": "", "s2": "t4", "s3": "t1"},
		map[string]string{"n1": "", "n2": "t1", "n3": "t4"})

	// The index holds each task's stored version, a status patch's too
	// (readers take the tasks from it without a second lookup).
	var t1s *swarmpb.Task
	s.View(func(tx ReadTx) { t1s = tx.GetTask("t1") })
	mustApply(t, s, Batch(UpdateTaskStatus("t1", t1s.GetMeta().GetVersion(), &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING})))
	s.View(func(tx ReadTx) {
		d := tx.(readTx).d
		for id, st := range d.tasks {
			if d.tasksByService[st.GetServiceId()][id] != st || d.tasksByNode[st.GetNodeId()][id] != st {
				t.Errorf("task %s: the indexes hold another version than the store", id)
			}
		}
		if got := tx.TasksByServiceUnordered("s3"); len(got) != 1 || got[0].GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Errorf("TasksByServiceUnordered(s3) = %v, want t1 as patched", got)
		}
	})

	// Emptied sets must not linger.
	s.View(func(tx ReadTx) {
		d := tx.(readTx).d
		if _, ok := d.tasksByService["s1"]; ok {
			t.Error("empty service set kept")
		}
		if _, ok := d.tasksByNode["n1"]; ok {
			t.Error("empty node set kept")
		}
	})
}

func TestClusterSingleton(t *testing.T) {
	s := New()
	s.View(func(tx ReadTx) {
		if tx.Cluster() != nil {
			t.Fatal("cluster in empty store")
		}
	})
	mustApply(t, s, create(&swarmpb.Cluster{Id: "zzz", Name: "b"}, &swarmpb.Cluster{Id: "aaa", Name: "a"}))
	s.View(func(tx ReadTx) {
		if got := tx.Cluster().GetName(); got != "a" {
			t.Fatalf("Cluster() = %q, want the smallest id", got)
		}
	})
}

func TestEventHelpers(t *testing.T) {
	e := Event{Object: &swarmpb.Task{Id: "t"}}
	if e.Task().GetId() != "t" || e.Node() != nil || e.Service() != nil || e.Cluster() != nil || e.Secret() != nil {
		t.Fatal("helpers")
	}
	if EventUpdate.String() != "update" {
		t.Fatal(EventUpdate.String())
	}
}
