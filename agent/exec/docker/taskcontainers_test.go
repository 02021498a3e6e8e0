package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// listStub is an engine that only lists and inspects containers, applying
// label filters as dockerd does (all must match). Other calls panic.
type listStub struct {
	Engine
	containers []container.Summary

	mu       sync.Mutex
	lists    int
	inspects int
}

func (s *listStub) ContainerList(_ context.Context, o container.ListOptions) ([]container.Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	var out []container.Summary
	for _, c := range s.containers {
		match := true
		for _, kv := range o.Filters.Get("label") {
			k, v, _ := strings.Cut(kv, "=")
			match = match && c.Labels[k] == v
		}
		if match {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *listStub) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inspects++
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
		ID: id, State: &container.State{Status: "exited", ExitCode: 3},
	}}, nil
}

// TestTaskContainersLooksUpOnlyTheTasks: a few tasks are looked up by
// label (no other container listed or inspected); many fall back to one
// list, filtered to them; another node's containers never show.
func TestTaskContainersLooksUpOnlyTheTasks(t *testing.T) {
	stub := &listStub{}
	for i := range 50 {
		node, state := "n1", container.StateExited
		if i%2 == 0 {
			state = container.StateRunning
		}
		if i == 7 {
			node = "n2" // same task ID on another node: not ours
		}
		stub.containers = append(stub.containers, container.Summary{
			ID: fmt.Sprintf("c%d", i), Names: []string{fmt.Sprintf("/web.%d.t%d", i, i)}, State: state,
			Labels: map[string]string{exec.LabelNodeID: node, exec.LabelTaskID: fmt.Sprintf("t%d", i)},
		})
	}
	e := NewWithEngine(stub, "n1")
	ctx := context.Background()

	got, err := e.TaskContainers(ctx, []string{"t4", "t5", "t7", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TaskID != "t4" || !got[0].Running || got[1].TaskID != "t5" || got[1].ExitCode != 3 {
		t.Fatalf("TaskContainers(t4, t5, t7, nope) = %+v; want t4 running, t5 exited with 3", got)
	}
	if stub.lists != 4 || stub.inspects != 1 {
		t.Fatalf("%d lists, %d inspects; want one list per task and only t5 inspected", stub.lists, stub.inspects)
	}

	var many []string
	for i := range 10 {
		many = append(many, fmt.Sprintf("t%d", i))
	}
	stub.lists, stub.inspects = 0, 0
	got, err = e.TaskContainers(ctx, many)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || stub.lists != 1 || stub.inspects != 4 {
		t.Fatalf("TaskContainers(t0..t9): %d containers in %d lists, %d inspects; want 9 (not t7, another node's) in 1, the 4 exited inspected",
			len(got), stub.lists, stub.inspects)
	}
	for _, c := range got {
		if c.TaskID == "t7" || !slices.Contains(many, c.TaskID) {
			t.Fatalf("unexpected container %+v", c)
		}
	}
}

// TestTaskContainersOnEngine: against the real engine, a restarted agent
// looking up its new tasks' containers finds a running one and an exited
// one (with its exit code), not another node's, both one task at a time
// (label filters, which dockerd ANDs) and through the one-list fallback.
func TestTaskContainersOnEngine(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	other := newExecutor(t, cli)
	ctx := ctxT(t)

	running := testTask("run"+randID(t), 1, img)
	exited := testTask("exit"+randID(t), 2, img, "exit", "3")
	for _, tk := range []*swarmpb.Task{running, exited} {
		ctl, _ := e.Controller(tk)
		if err := ctl.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctl.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ectl, _ := e.Controller(exited)
	if code, err := ectl.Wait(ctx); err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	foreign := testTask("othr"+randID(t), 1, img)
	octl, _ := other.Controller(foreign)
	if err := octl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}

	again, err := New("", e.NodeID())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	few := []string{running.GetId(), exited.GetId(), foreign.GetId()}
	many := append(slices.Clone(few), "gone1", "gone2", "gone3") // past maxTaskLookups: one list
	for _, ids := range [][]string{few, many} {
		got, err := again.TaskContainers(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		byTask := map[string]exec.ContainerInfo{}
		for _, c := range got {
			byTask[c.TaskID] = c
		}
		if len(got) != 2 {
			t.Fatalf("TaskContainers(%d IDs) = %+v; want this node's 2", len(ids), got)
		}
		if c := byTask[running.GetId()]; !c.Running || c.State != exec.StateRunning {
			t.Fatalf("TaskContainers(%d IDs): running task's container %+v", len(ids), c)
		}
		if c := byTask[exited.GetId()]; c.Running || c.ExitCode != 3 || c.State != exec.StateExited {
			t.Fatalf("TaskContainers(%d IDs): exited task's container %+v", len(ids), c)
		}
	}
}
