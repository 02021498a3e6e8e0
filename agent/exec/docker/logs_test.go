package docker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// readLogs returns "stream:data" for every line Logs emits, checking each
// line's task and timestamp on the way.
func readLogs(t *testing.T, ctx context.Context, e *Executor, tk *swarmpb.Task, opts exec.LogOptions, since time.Time) ([]string, error) {
	var got []string
	err := e.Logs(ctx, tk, opts, func(l *swarmpb.LogLine) error {
		ts := time.Unix(0, l.GetTimestamp())
		if l.GetTaskId() != tk.GetId() || ts.Before(since.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
			return fmt.Errorf("line %q: task %q, timestamp %v", l.GetData(), l.GetTaskId(), ts)
		}
		got = append(got, l.GetStream()+":"+string(l.GetData()))
		return nil
	})
	return got, err
}

func TestLogs(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	start := time.Now()
	tk := testTask("task"+randID(t), 1, img, "print", "5")
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The engine copies stdout and stderr concurrently, so only the order
	// within each stream is certain.
	want := []string{"stderr:err 1\n", "stdout:out 1\n", "stdout:out 2\n", "stdout:out 3\n", "stdout:out 4\n", "stdout:out 5\n"}
	var all []string
	testutil.Eventually(t, 20*time.Second, func() error {
		var err error
		if all, err = readLogs(t, ctx, e, tk, exec.LogOptions{Tail: -1, Timestamps: true}, start); err != nil {
			return err
		}
		if sorted := slices.Sorted(slices.Values(all)); !slices.Equal(sorted, want) {
			return fmt.Errorf("all lines: %q, want %q in some order", all, want)
		}
		return nil
	})
	got, err := readLogs(t, ctx, e, tk, exec.LogOptions{Tail: 2}, start)
	if err != nil || !slices.Equal(got, all[4:]) {
		t.Fatalf("tail 2: %q, %v; want %q", got, err, all[4:])
	}

	// Following from the last line (whose arrival shows the follow is
	// attached): a line printed later arrives, and the stream ends by
	// itself when the container stops.
	lines := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.Logs(ctx, tk, exec.LogOptions{Follow: true, Tail: 1}, func(l *swarmpb.LogLine) error {
			lines <- l.GetStream() + ":" + string(l.GetData())
			return nil
		})
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("no line while following")
			return ""
		}
	}
	if l := next(); l != all[5] {
		t.Fatalf("first followed line %q, want the last one, %q", l, all[5])
	}
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if l := next(); l != "stdout:bye\n" {
		t.Fatalf("followed line %q, want bye", l)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end when the container stopped")
	}
}
