package node_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// eventLog collects one WatchEvents stream in the background.
type eventLog struct {
	mu     sync.Mutex
	start  *swarmpb.WatchEventsMessage
	events []*swarmpb.ClusterEvent
	err    error
	done   chan struct{}
}

func watchEvents(ctx context.Context, t *testing.T, c swarmpb.ControlClient, req *swarmpb.WatchEventsRequest) *eventLog {
	t.Helper()
	stream, err := c.WatchEvents(ctx, req)
	if err != nil {
		t.Fatalf("WatchEvents: %v", err)
	}
	l := &eventLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			msg, err := stream.Recv()
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			if msg.GetStart() {
				l.start = msg
			}
			l.events = append(l.events, msg.GetEvents()...)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *eventLog) snapshot() ([]*swarmpb.ClusterEvent, *swarmpb.WatchEventsMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*swarmpb.ClusterEvent(nil), l.events...), l.start
}

// serviceCreates returns the names of the services created, in stream order.
func serviceCreates(evs []*swarmpb.ClusterEvent) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == "service" && ev.Action == "create" {
			out = append(out, ev.Name)
		}
	}
	return out
}

func eventKey(ev *swarmpb.ClusterEvent) string {
	return fmt.Sprintf("%d.%d %d %s %s %s", ev.Index, ev.Seq, ev.Time, ev.Type, ev.Action, ev.Id)
}

// The event stream served by a follower goes on, in order and without a
// gap, while the leader is killed and another elected; a second manager,
// asked to resume from the first stream's starting position, serves the
// very same events.
func TestEventsInOrderAcrossLeaderChange(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	ctx := ctxT(t, 90*time.Second)
	leader := c.Leader(10 * time.Second)
	var a, b *testcluster.Member
	for _, m := range c.Members {
		if m != leader {
			if a == nil {
				a = m
			} else {
				b = m
			}
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	la := watchEvents(sctx, t, a.Control(), &swarmpb.WatchEventsRequest{})
	var start *swarmpb.WatchEventsMessage
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, start = la.snapshot(); start == nil {
			return fmt.Errorf("no start message yet")
		}
		return nil
	})

	create := func(name string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() error {
			_, err := a.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: svcSpec(name, 0)})
			if status.Code(err) == codes.AlreadyExists {
				return nil // an earlier try committed before failing over
			}
			return err
		})
	}
	want := []string{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("ev%d", i)
		create(name)
		want = append(want, name)
	}
	leader.Stop()
	for i := 4; i <= 6; i++ {
		name := fmt.Sprintf("ev%d", i)
		create(name)
		want = append(want, name)
	}
	if l := c.Leader(10 * time.Second); l == leader {
		t.Fatal("the stopped leader still leads")
	}
	var got []*swarmpb.ClusterEvent
	testutil.Eventually(t, 20*time.Second, func() error {
		got, _ = la.snapshot()
		if s := serviceCreates(got); fmt.Sprint(s) != fmt.Sprint(want) {
			return fmt.Errorf("service creates %v, want %v", s, want)
		}
		return nil
	})
	// Positions strictly increase, and every index is one the start
	// precedes.
	prev := fmt.Sprintf("%d.%d", start.Index, start.Seq)
	for i, ev := range got {
		if i > 0 {
			p := got[i-1]
			if ev.Index < p.Index || (ev.Index == p.Index && ev.Seq != p.Seq+1) {
				t.Fatalf("event %d out of order: %s after %s", i, eventKey(ev), eventKey(p))
			}
			if ev.Index > p.Index && ev.Seq != 0 {
				t.Fatalf("event %d: entry %d starts at seq %d", i, ev.Index, ev.Seq)
			}
		} else if ev.Index <= start.Index {
			t.Fatalf("first event %s is not after the start %s", eventKey(ev), prev)
		}
	}

	// Resume on b from a's start: the same events, one for one.
	lb := watchEvents(sctx, t, b.Control(), &swarmpb.WatchEventsRequest{AfterIndex: &start.Index, AfterSeq: start.Seq})
	last := got[len(got)-1]
	testutil.Eventually(t, 20*time.Second, func() error {
		evs, _ := lb.snapshot()
		if len(evs) == 0 || evs[len(evs)-1].Index < last.Index {
			return fmt.Errorf("b has %d events", len(evs))
		}
		return nil
	})
	gb, _ := lb.snapshot()
	var ka, kb []string
	for _, ev := range got {
		ka = append(ka, eventKey(ev))
	}
	for _, ev := range gb {
		if ev.Index <= last.Index {
			kb = append(kb, eventKey(ev))
		}
	}
	if strings.Join(ka, "\n") != strings.Join(kb, "\n") {
		t.Fatalf("streams of %s and %s differ:\n%s\n---\n%s", a.Name, b.Name, strings.Join(ka, "\n"), strings.Join(kb, "\n"))
	}

	// Filters: only the service creates, through the same call.
	lf := watchEvents(sctx, t, b.Control(), &swarmpb.WatchEventsRequest{AfterIndex: &start.Index, AfterSeq: start.Seq, Filters: []string{"type=service", "event=create"}})
	testutil.Eventually(t, 10*time.Second, func() error {
		evs, _ := lf.snapshot()
		if s := serviceCreates(evs); fmt.Sprint(s) != fmt.Sprint(want) || len(evs) != len(want) {
			return fmt.Errorf("filtered: %d events, creates %v", len(evs), s)
		}
		return nil
	})

	// A fresh cluster's managers keep everything from its first entry
	// (the ring is not full), so --since 1970 starts at the beginning; an
	// unknown filter is refused with a clear error.
	msg, err := recvErr(ctx, b.Control(), &swarmpb.WatchEventsRequest{Since: 1})
	if err != nil || len(msg.GetEvents()) == 0 || msg.GetEvents()[0].Type != "cluster" || msg.GetEvents()[0].Action != "create" {
		t.Fatalf("since 1970: %v, %v", msg, err)
	}
	_, err = recvErr(ctx, b.Control(), &swarmpb.WatchEventsRequest{Filters: []string{"colour=red"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown filter "colour"`) {
		t.Fatalf("unknown filter: %v", err)
	}
	cancel()
	for _, l := range []*eventLog{la, lb, lf} {
		<-l.done
	}
}

// recvErr opens a stream and returns its first error.
func recvErr(ctx context.Context, c swarmpb.ControlClient, req *swarmpb.WatchEventsRequest) (*swarmpb.WatchEventsMessage, error) {
	stream, err := c.WatchEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	msg, err := stream.Recv()
	if err == io.EOF {
		err = nil
	}
	return msg, err
}
