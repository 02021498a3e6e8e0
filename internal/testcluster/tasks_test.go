package testcluster

import (
	"context"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeLister serves ListTasks from a task list the test sets; nil tasks
// means the service does not exist (NotFound).
type fakeLister struct {
	swarmpb.ControlClient
	mu    sync.Mutex
	tasks []*swarmpb.Task
	calls int
}

func (f *fakeLister) set(tasks []*swarmpb.Task) {
	f.mu.Lock()
	f.tasks = tasks
	f.mu.Unlock()
}

func (f *fakeLister) ListTasks(_ context.Context, _ *swarmpb.ListTasksRequest, _ ...grpc.CallOption) (*swarmpb.ListTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.tasks == nil {
		return nil, status.Error(codes.NotFound, "no such service")
	}
	return &swarmpb.ListTasksResponse{Tasks: f.tasks}, nil
}

func running(id, service string, slot uint64) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceName: service, Slot: slot, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
}

// TestPollServiceFollowsListings: a polled watcher counts the listed
// tasks of its service only, fires a condition once a listing shows it,
// and counts a service that does not exist (not yet, or removed) as no
// task rather than keeping the last listing.
func TestPollServiceFollowsListings(t *testing.T) {
	f := &fakeLister{}
	w := PollService(func() swarmpb.ControlClient { return f }, "web", 5*time.Millisecond)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	two := w.Await(func(t *Tally) bool { return t.LiveRunning == 2 })
	f.set([]*swarmpb.Task{running("a", "web", 1), running("b", "web", 2), running("c", "other", 1)})
	if _, err := two(ctx); err != nil {
		t.Fatalf("two running tasks of web never seen: %v (%+v)", err, w.Tally())
	}
	if got := len(w.Tasks()); got != 2 {
		t.Fatalf("watcher holds %d tasks, want web's 2", got)
	}
	gone := w.Await(func(t *Tally) bool { return t.Total == 0 })
	f.set(nil) // the service was removed: ListTasks says NotFound
	if _, err := gone(ctx); err != nil {
		t.Fatalf("a removed service still counts tasks: %v (%+v)", err, w.Tally())
	}
}
