package events

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// apply writes b at the store's next index with time index*1000.
func apply(t *testing.T, st *state.Store, acts ...*swarmpb.StoreAction) uint64 {
	t.Helper()
	idx := st.Index() + 1
	if _, err := st.ApplyBatch(idx, int64(idx)*1000, state.Batch(acts...)); err != nil {
		t.Fatalf("apply at %d: %v", idx, err)
	}
	return idx
}

func service(id, name string) *swarmpb.Service {
	return &swarmpb.Service{Id: id, Spec: &swarmpb.ServiceSpec{Name: name, Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "demo"}}}
}

// waitLast waits until the journal has taken in the store's events up to index.
func waitLast(t *testing.T, j *Journal, index uint64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if w := j.Window(); w.Last.Index < index {
			return fmt.Errorf("journal at %d, want %d", w.Last.Index, index)
		}
		return nil
	})
}

func recv(t *testing.T, s *Subscription) *swarmpb.ClusterEvent {
	t.Helper()
	select {
	case ev := <-s.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return nil
	}
}

func TestBacklogThenLiveWithoutGap(t *testing.T) {
	st := state.New()
	j := New(st, Config{})
	defer j.Close()
	for i := 0; i < 3; i++ {
		apply(t, st, state.Create(service(fmt.Sprintf("s%d", i), fmt.Sprintf("web%d", i))))
	}
	waitLast(t, j, 3)
	s, err := j.Subscribe(Request{After: &Position{Index: 1, Seq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Cancel()
	var got []uint64
	for _, ev := range s.Backlog() {
		got = append(got, ev.Index)
	}
	// One batch with two events: positions (4,0) and (4,1).
	apply(t, st, state.Create(service("s3", "web3")), state.Create(service("s4", "web4")))
	for i := 0; i < 2; i++ {
		ev := recv(t, s)
		got = append(got, ev.Index)
		if ev.Seq != uint32(i) || ev.Time != 4000 || ev.Type != TypeService || ev.Action != ActionCreate {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	if fmt.Sprint(got) != "[2 3 4 4]" {
		t.Fatalf("indices %v, want [2 3 4 4]", got)
	}
}

func TestStartOlderThanRingIsRefused(t *testing.T) {
	st := state.New()
	j := New(st, Config{Size: 4})
	defer j.Close()
	for i := 0; i < 10; i++ {
		apply(t, st, state.Create(service(fmt.Sprintf("s%d", i), fmt.Sprintf("web%d", i))))
	}
	waitLast(t, j, 10)
	if _, err := j.Subscribe(Request{After: &Position{Index: 2}}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("after index 2 with a ring of 4: %v, want ErrTooOld", err)
	}
	if _, err := j.Subscribe(Request{Since: 2000}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("since time 2000: %v, want ErrTooOld", err)
	}
	s, err := j.Subscribe(Request{After: &Position{Index: 6, Seq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Backlog()); n != 4 || s.Backlog()[0].Index != 7 {
		t.Fatalf("backlog %v, want indices 7..10", s.Backlog())
	}
	s2, err := j.Subscribe(Request{Since: 9000})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s2.Backlog()); n != 2 {
		t.Fatalf("since 9000: %d events, want 2", n)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	st := state.New()
	j := New(st, Config{Queue: 2})
	defer j.Close()
	s, err := j.Subscribe(Request{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		apply(t, st, state.Create(service(fmt.Sprintf("s%d", i), fmt.Sprintf("web%d", i))))
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slow subscriber not dropped")
	}
	if !errors.Is(s.Err(), ErrSlow) {
		t.Fatalf("err %v, want ErrSlow", s.Err())
	}
	// What was queued before the drop is still delivered, in order.
	if a, b := recv(t, s), recv(t, s); a.Index != 1 || b.Index != 2 {
		t.Fatalf("queued %d, %d; want 1, 2", a.Index, b.Index)
	}
	// The journal itself went on.
	waitLast(t, j, 5)
}

func TestTaskStateChangeAndFilters(t *testing.T) {
	st := state.New()
	j := New(st, Config{})
	defer j.Close()
	apply(t, st, state.Create(&swarmpb.Node{Id: "n1", Description: &swarmpb.NodeDescription{Hostname: "host1"}, Spec: &swarmpb.NodeSpec{}}))
	apply(t, st, state.Create(service("s1", "web")))
	task := &swarmpb.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED}}
	idx := apply(t, st, state.Create(task))
	waitLast(t, j, idx)
	var cur *swarmpb.Task
	st.View(func(tx state.ReadTx) { cur = tx.GetTask("t1") })
	up := &swarmpb.Task{}
	*up = swarmpb.Task{Id: cur.Id, Meta: cur.Meta, ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1", DesiredState: cur.DesiredState,
		Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
	idx = apply(t, st, state.Update(up))
	waitLast(t, j, idx)

	for _, tc := range []struct {
		filters []string
		want    string // "type/action/name" of each event
	}{
		{nil, "[node/create/host1 service/create/web task/create/web.1 task/update/web.1]"},
		{[]string{"type=task"}, "[task/create/web.1 task/update/web.1]"},
		{[]string{"type=task", "event=update"}, "[task/update/web.1]"},
		{[]string{"type=node", "type=service"}, "[node/create/host1 service/create/web]"},
		{[]string{"service=web"}, "[service/create/web task/create/web.1 task/update/web.1]"},
		{[]string{"node=host1"}, "[node/create/host1 task/create/web.1 task/update/web.1]"},
		{[]string{"node=n1", "event=create"}, "[node/create/host1 task/create/web.1]"},
		{[]string{"event=delete"}, "[]"},
	} {
		f, err := ParseFilter(tc.filters)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		s, err := j.Subscribe(Request{After: &Position{}, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range s.Backlog() {
			got = append(got, ev.Type+"/"+ev.Action+"/"+ev.Name)
		}
		s.Cancel()
		if fmt.Sprint(got) != tc.want && !(len(got) == 0 && tc.want == "[]") {
			t.Errorf("filters %v: %v, want %s", tc.filters, got, tc.want)
		}
	}
	s, _ := j.Subscribe(Request{After: &Position{Index: idx - 1}})
	ev := s.Backlog()[0]
	a := ev.Attributes
	if a["state.old"] != "assigned" || a["state.new"] != "running" || a["node"] != "host1" || a["service"] != "web" {
		t.Fatalf("task update attributes %v", a)
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"color=red", `unknown filter "color"`},
		{"type", "use key=value"},
		{"type=volume", "the type is one of"},
		{"event=explode", "the event is one of"},
	} {
		_, err := ParseFilter([]string{tc.in})
		if err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestRestoreEndsSubscribersAndStartsOver(t *testing.T) {
	st := state.New()
	j := New(st, Config{})
	defer j.Close()
	apply(t, st, state.Create(service("s1", "web")))
	waitLast(t, j, 1)
	s, err := j.Subscribe(Request{})
	if err != nil {
		t.Fatal(err)
	}
	snap := st.Snapshot()
	if err := st.Restore(50, snap); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not ended by a restore")
	}
	if !errors.Is(s.Err(), ErrTooOld) {
		t.Fatalf("err %v, want ErrTooOld", s.Err())
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if w := j.Window(); w.From.Index != 50 {
			return fmt.Errorf("window from %d, want 50", w.From.Index)
		}
		return nil
	})
	if _, err := j.Subscribe(Request{After: &Position{Index: 1}}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("after 1 once restored at 50: %v", err)
	}
	apply(t, st, state.Create(service("s2", "api")))
	s2, err := j.Subscribe(Request{After: &Position{Index: 50, Seq: ^uint32(0)}})
	if err != nil {
		t.Fatal(err)
	}
	waitLast(t, j, 51)
	if ev := recvOrBacklog(t, s2); ev.Index != 51 || ev.Name != "api" {
		t.Fatalf("after restore: %v", ev)
	}
}

func recvOrBacklog(t *testing.T, s *Subscription) *swarmpb.ClusterEvent {
	if b := s.Backlog(); len(b) > 0 {
		return b[0]
	}
	return recv(t, s)
}

// The journal describes an event when a client first reads it, which may
// be long after it was applied: the description must still be the one of
// the moment it was applied (the node's name then), the same whether the
// event was first read live, from the backlog, or read again.
func TestEventsDescribedAsApplied(t *testing.T) {
	st := state.New()
	j := New(st, Config{})
	defer j.Close()
	node := func(name string) *swarmpb.Node {
		var cur *swarmpb.Node
		st.View(func(tx state.ReadTx) { cur = tx.GetNode("n1") })
		n := &swarmpb.Node{Id: "n1", Description: &swarmpb.NodeDescription{Hostname: name}, Spec: &swarmpb.NodeSpec{}}
		if cur != nil {
			n.Meta = cur.Meta
		}
		return n
	}
	task := func(s swarmpb.TaskState) *swarmpb.Task {
		var cur *swarmpb.Task
		st.View(func(tx state.ReadTx) { cur = tx.GetTask("t1") })
		tk := &swarmpb.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: s}}
		if cur != nil {
			tk.Meta = cur.Meta
		}
		return tk
	}
	apply(t, st, state.Create(node("host1")))
	apply(t, st, state.Create(service("s1", "web")))
	apply(t, st, state.Create(task(swarmpb.TaskState_TASK_STATE_ASSIGNED)))
	running := apply(t, st, state.Update(task(swarmpb.TaskState_TASK_STATE_RUNNING)))
	renamed := apply(t, st, state.Update(node("host2")))
	waitLast(t, j, renamed)
	// A live subscriber from here on: the next event is described as it
	// is applied, and must agree with what the backlog says of it later.
	live, err := j.Subscribe(Request{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Cancel()
	failed := apply(t, st, state.Update(task(swarmpb.TaskState_TASK_STATE_FAILED)))
	waitLast(t, j, failed)
	liveEv := recv(t, live)

	s, err := j.Subscribe(Request{After: &Position{Index: running - 1, Seq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Cancel()
	var got []string
	for _, ev := range s.Backlog() {
		a := ev.Attributes
		got = append(got, fmt.Sprintf("%s/%s/%s node=%s state=%s>%s name=%s>%s", ev.Type, ev.Action, ev.Name, a["node"], a["state.old"], a["state.new"], a["name.old"], a["name.new"]))
	}
	want := "[task/update/web.1 node=host1 state=assigned>running name=> " +
		"node/update/host2 node= state=> name=host1>host2 " +
		"task/update/web.1 node=host2 state=running>failed name=>]"
	if fmt.Sprint(got) != want {
		t.Fatalf("backlog\n got %v\nwant %s", got, want)
	}
	if last := s.Backlog()[2]; last != liveEv {
		t.Fatalf("the backlog's description of an event read live differs: %v against %v", last, liveEv)
	}
	// Read again: the same descriptions.
	again, err := j.Subscribe(Request{After: &Position{Index: running - 1, Seq: 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Cancel()
	for i, ev := range again.Backlog() {
		if ev != s.Backlog()[i] {
			t.Fatalf("event %d described twice differently", i)
		}
	}
}

// BenchmarkJournalTaskUpdates measures what the journal costs a manager
// per applied task update when no client follows the stream (the usual
// case) and when one does.
func BenchmarkJournalTaskUpdates(b *testing.B) {
	for _, follow := range []bool{false, true} {
		b.Run(fmt.Sprintf("follower=%v", follow), func(b *testing.B) {
			j := &Journal{cfg: Config{Size: DefaultSize, Queue: DefaultQueue, Now: time.Now}, subs: map[*Subscription]struct{}{}, names: hostnames{"n1": "host1"}}
			if follow {
				// A client that wants node events only: every event is
				// described, none is queued.
				f, err := ParseFilter([]string{"type=node"})
				if err != nil {
					b.Fatal(err)
				}
				j.subs[&Subscription{j: j, filter: f, ch: make(chan *swarmpb.ClusterEvent, 1), done: make(chan struct{})}] = struct{}{}
			}
			old := &swarmpb.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
				DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED}}
			cur := &swarmpb.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
				DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				j.add(state.Event{Kind: state.EventUpdate, Index: uint64(i/2000 + 1), Time: int64(i), Object: cur, Old: old}, uint32(i%2000))
			}
		})
	}
}
