package testcluster

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tally counts one service's tasks as a store holds them.
type Tally struct {
	Total       int            // tasks in the store
	Live        int            // desired state RUNNING (or earlier): not being shut down
	Assigned    int            // live and assigned to a node (state >= ASSIGNED)
	Running     int            // observed state RUNNING, whatever the desired state
	LiveRunning int            // live and RUNNING
	PerNode     map[string]int // node ID -> live and RUNNING tasks on it
	// Created counts the tasks ever seen, removed ones included: the
	// tasks the orchestrator created since the watch began (with
	// PollService, those that lived through at least one listing).
	Created int
	// Shutdowns counts the tasks first seen with a desired state past
	// RUNNING (being or done being shut down), by why: their observed
	// state and the start of its message ("ORPHANED node is down: ...").
	// The tasks of a phase beyond its replicas show here by cause.
	Shutdowns map[string]int
	// ListErr is why the last listing failed (PollService), "" if it
	// did not: a tally that does not move may be a listing that fails.
	ListErr string
}

func (t *Tally) add(task *swarmpb.Task, d int) {
	live := task.DesiredState <= swarmpb.TaskState_TASK_STATE_RUNNING
	st := task.GetStatus().GetState()
	t.Total += d
	if live {
		t.Live += d
		if st >= swarmpb.TaskState_TASK_STATE_ASSIGNED {
			t.Assigned += d
		}
	}
	if st == swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Running += d
		if live {
			t.LiveRunning += d
			t.PerNode[task.NodeId] += d
		}
	}
}

// Watcher follows one service's tasks in a manager's store through a
// store watch, and records the moment a condition first holds: the time
// the event that made it true was taken off the watch.
type Watcher struct {
	service string
	cancel  func()
	done    chan struct{}

	mu      sync.Mutex
	tasks   map[string]*swarmpb.Task
	seen    map[string]struct{} // every task ID seen (Tally.Created)
	shut    map[string]struct{} // every task ID seen shut down (Tally.Shutdowns)
	tally   Tally
	waiters []*waiter
}

type waiter struct {
	cond func(*Tally) bool
	at   chan time.Time // capacity 1
}

func newWatcher(name string) *Watcher {
	return &Watcher{service: name, done: make(chan struct{}), tasks: map[string]*swarmpb.Task{}, seen: map[string]struct{}{},
		shut: map[string]struct{}{}, tally: Tally{PerNode: map[string]int{}, Shutdowns: map[string]int{}}}
}

// WatchService starts following the tasks whose service name is name.
func WatchService(st *state.Store, name string) *Watcher {
	w := newWatcher(name)
	events, cancel := st.ViewAndWatch(func(tx state.ReadTx) {
		for _, t := range tx.ListTasks() {
			if t.ServiceName == name {
				w.tasks[t.Id] = t
				w.tally.add(t, 1)
				w.saw(t)
			}
		}
	})
	w.cancel = cancel
	go w.run(events)
	return w
}

func (w *Watcher) run(events <-chan state.Event) {
	defer close(w.done)
	for ev := range events {
		t := ev.Task()
		if t == nil || t.ServiceName != w.service {
			continue
		}
		w.mu.Lock()
		if old, ok := w.tasks[t.Id]; ok {
			w.tally.add(old, -1)
			delete(w.tasks, t.Id)
		}
		if ev.Kind != state.EventDelete {
			w.tasks[t.Id] = t
			w.tally.add(t, 1)
			w.saw(t)
		}
		w.check(time.Now())
		w.mu.Unlock()
	}
}

// PollService follows the tasks whose service name is name in a cluster
// whose managers run in other processes: it lists them (every page) from
// control() every interval, or every listing's duration when that is
// longer. A condition's time is the end of the listing that first showed
// it, so times are late by up to one interval plus one listing. A service that does not exist has no task; a listing that
// fails otherwise (no leader for a moment) is retried at the next
// interval.
func PollService(control func() swarmpb.ControlClient, name string, interval time.Duration) *Watcher {
	w := newWatcher(name)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		for {
			began := time.Now()
			lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
			tasks, _, err := listing.Tasks(lctx, control(), &swarmpb.ListTasksRequest{Services: []string{name}, PageSize: 10000})
			lcancel()
			if status.Code(err) == codes.NotFound {
				tasks, err = nil, nil // no such service (not yet, or removed): no task
			}
			if err == nil {
				w.replace(tasks, time.Now())
			} else {
				w.mu.Lock()
				w.tally.ListErr = err.Error()
				w.mu.Unlock()
			}
			// At least as long as the listing took: the lister never
			// keeps the manager listing more than half of the time.
			if !retry.Sleep(ctx, max(interval, time.Since(began))) {
				return
			}
		}
	}()
	return w
}

// replace makes tasks (of any service; others are skipped) the whole set.
func (w *Watcher) replace(tasks []*swarmpb.Task, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tasks = make(map[string]*swarmpb.Task, len(tasks))
	w.tally = Tally{PerNode: map[string]int{}, Created: w.tally.Created, Shutdowns: w.tally.Shutdowns}
	for _, t := range tasks {
		if t.ServiceName == w.service {
			w.tasks[t.Id] = t
			w.tally.add(t, 1)
			w.saw(t)
		}
	}
	w.check(now)
}

// saw counts t in Tally.Created the first time, and in Tally.Shutdowns
// the first time it is seen shut down; under mu.
func (w *Watcher) saw(t *swarmpb.Task) {
	if _, ok := w.seen[t.Id]; !ok {
		w.seen[t.Id] = struct{}{}
		w.tally.Created++
	}
	if t.DesiredState <= swarmpb.TaskState_TASK_STATE_RUNNING {
		return
	}
	if _, ok := w.shut[t.Id]; !ok {
		w.shut[t.Id] = struct{}{}
		w.tally.Shutdowns[shutdownWhy(t)]++
	}
}

// shutdownWhy names why a task was shut down, as far as its status says:
// its observed state and the first words of the message.
func shutdownWhy(t *swarmpb.Task) string {
	msg := t.GetStatus().GetMessage()
	if len(msg) > 40 {
		msg = msg[:40]
	}
	return strings.TrimPrefix(t.GetStatus().GetState().String(), "TASK_STATE_") + " " + msg
}

// check runs under mu.
func (w *Watcher) check(now time.Time) {
	kept := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.cond(&w.tally) {
			wt.at <- now
		} else {
			kept = append(kept, wt)
		}
	}
	w.waiters = kept
}

// Await registers cond at once (so it is checked against every later
// event) and returns a function that waits for it.
func (w *Watcher) Await(cond func(*Tally) bool) func(ctx context.Context) (time.Time, error) {
	wt := &waiter{cond: cond, at: make(chan time.Time, 1)}
	w.mu.Lock()
	w.waiters = append(w.waiters, wt)
	w.check(time.Now())
	w.mu.Unlock()
	return func(ctx context.Context) (time.Time, error) {
		select {
		case at := <-wt.at:
			return at, nil
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Tally returns a copy of the current counts.
func (w *Watcher) Tally() Tally {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.tally
	t.PerNode = make(map[string]int, len(w.tally.PerNode))
	for k, v := range w.tally.PerNode {
		if v != 0 {
			t.PerNode[k] = v
		}
	}
	t.Shutdowns = make(map[string]int, len(w.tally.Shutdowns))
	for k, v := range w.tally.Shutdowns {
		t.Shutdowns[k] = v
	}
	return t
}

// Tasks returns the current tasks.
func (w *Watcher) Tasks() []*swarmpb.Task {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*swarmpb.Task, 0, len(w.tasks))
	for _, t := range w.tasks {
		out = append(out, t)
	}
	return out
}

// Close stops the watch.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}
