package fake

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestLogs(t *testing.T) {
	e := New("n1")
	for _, l := range []string{"a", "b", "c\n"} {
		e.AppendLog("t1", "stdout", l)
	}
	e.AppendLog("t2", "stdout", "other task")
	var got []string
	err := e.Logs(context.Background(), tk("t1", "x"), exec.LogOptions{Tail: 2}, func(l *swarmpb.LogLine) error {
		got = append(got, l.GetStream()+":"+string(l.GetData()))
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != "stdout:b\n" || got[1] != "stdout:c\n" {
		t.Fatalf("tail 2: %q, %v", got, err)
	}

	// A follower gets lines appended later, until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.Logs(ctx, tk("t1", "x"), exec.LogOptions{Follow: true, Tail: 0}, func(l *swarmpb.LogLine) error {
			lines <- string(l.GetData())
			return nil
		})
	}()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := e.LogReaders(); n != 1 {
			return fmt.Errorf("%d log readers", n)
		}
		return nil
	})
	e.AppendLog("t1", "stderr", "d")
	select {
	case l := <-lines:
		if l != "d\n" {
			t.Fatalf("followed %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no followed line")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || e.LogReaders() != 0 {
		t.Fatalf("follow ended with %v, %d readers", err, e.LogReaders())
	}
}
