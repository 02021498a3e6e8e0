package fake

import (
	"context"
	"errors"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func tk(id, image string) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceName: "web", Slot: 1,
		Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: image}}}
}

func TestFakeLifecycleConcurrent(t *testing.T) {
	ctx := context.Background()
	e := New("n1")
	e.FailPrepare("bad", errors.New("no such image"))
	e.ExitOnStart("crash", 2)
	var wg sync.WaitGroup
	for i, id := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctl, _ := e.Controller(tk(id, "ok"))
			if err := ctl.Prepare(ctx); err != nil {
				t.Error(err)
				return
			}
			if err := ctl.Start(ctx); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				_ = e.Exit(id, i)
			} else {
				_ = ctl.Shutdown(ctx)
			}
			if code, err := ctl.Wait(ctx); err != nil || (i%2 == 0 && code != i) || (i%2 == 1 && code != StopExitCode) {
				t.Errorf("%s: Wait = %d, %v", id, code, err)
			}
		}()
	}
	wg.Wait()
	if e.Count() != 4 || e.Running() != 0 || e.Created() != 4 {
		t.Fatalf("count %d running %d created %d", e.Count(), e.Running(), e.Created())
	}
	bad, _ := e.Controller(tk("x", "bad"))
	if err := bad.Prepare(ctx); err == nil {
		t.Fatal("Prepare of a failing image succeeded")
	}
	cr, _ := e.Controller(tk("y", "crash"))
	_ = cr.Prepare(ctx)
	_ = cr.Start(ctx)
	if code, _ := cr.Wait(ctx); code != 2 {
		t.Fatalf("crash exit %d", code)
	}
	list, _ := e.Containers(ctx)
	if len(list) != 5 {
		t.Fatalf("list %v", list)
	}
	for _, c := range list {
		ctl, _ := e.Controller(&swarmpb.Task{Id: c.TaskID})
		if err := ctl.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if e.Count() != 0 {
		t.Fatal("containers left")
	}
}

func TestTaskContainers(t *testing.T) {
	ctx := context.Background()
	e := New("n1")
	for _, id := range []string{"a", "b", "c"} {
		ctl, _ := e.Controller(tk(id, "ok"))
		if err := ctl.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	list, err := e.TaskContainers(ctx, []string{"c", "nope", "a"})
	if err != nil || len(list) != 2 || list[0].TaskID != "c" || list[1].TaskID != "a" {
		t.Fatalf("TaskContainers(c, nope, a) = %v, %v; want the containers of c and a", list, err)
	}
	e.SetEngineError(errors.New("engine down"))
	if _, err := e.TaskContainers(ctx, []string{"a"}); err == nil {
		t.Fatal("TaskContainers succeeded with the engine down")
	}
}
