package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// fakeSender plays sendReports' part: it answers every queued report with
// err, then forgets it.
func fakeSender(ta *taskAgent, err error) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case r := <-ta.reports:
				r.done <- err
			case <-ta.ctx.Done():
				return
			}
		}
	}()
	return func() { ta.cancel(); <-done }
}

func newReportingAgent() *taskAgent {
	ta := &taskAgent{reports: make(chan *statusReport, 64)}
	ta.ctx, ta.cancel = context.WithCancel(context.Background())
	return ta
}

// TestRecycledReportsKeepTheirResults: reports are recycled; each call
// still gets its own batch's result, and one whose caller gave up (its
// result still to come) is not reused under another call.
func TestRecycledReportsKeepTheirResults(t *testing.T) {
	ta := newReportingAgent()
	refused := errors.New("refused")
	stop := fakeSender(ta, refused)
	st := &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}
	for range 100 {
		if err := ta.UpdateTaskStatus(context.Background(), "t1", st); !errors.Is(err, refused) {
			t.Fatalf("UpdateTaskStatus = %v, want the sender's %v", err, refused)
		}
	}
	stop()

	// A caller that gives up leaves its report with the sender: a late
	// result must not reach the next call through a recycled report.
	ta = newReportingAgent()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ta.UpdateTaskStatus(ctx, "t1", st) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(ta.reports) == 0 { // queued, its result awaited
		if time.Now().After(deadline) {
			t.Fatal("the report was never queued")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("UpdateTaskStatus cancelled while waiting = %v", err)
	}
	(<-ta.reports).done <- refused // the late result
	stop = fakeSender(ta, nil)
	defer stop()
	for range 100 {
		if err := ta.UpdateTaskStatus(context.Background(), "t1", st); err != nil {
			t.Fatalf("UpdateTaskStatus = %v after a late result elsewhere, want nil", err)
		}
	}
}

// BenchmarkUpdateTaskStatus is one status through the reports queue and
// back, the sender answering at once.
func BenchmarkUpdateTaskStatus(b *testing.B) {
	ta := newReportingAgent()
	defer fakeSender(ta, nil)()
	st := &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}
	b.ReportAllocs()
	for b.Loop() {
		if err := ta.UpdateTaskStatus(context.Background(), "t1", st); err != nil {
			b.Fatal(err)
		}
	}
}
