package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftswarm/raftswarm/internal/clock"
	"log/slog"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// StatusReporter delivers task status changes to the dispatcher. It may
// keep status but must not change it: the worker may send the same one
// again (after a failure), and does not copy it.
type StatusReporter interface {
	UpdateTaskStatus(ctx context.Context, taskID string, status *swarmpb.TaskStatus) error
}

// ErrClosed is returned by Assign and Update after Close.
var ErrClosed = errors.New("worker: closed")

// Option tunes a Worker.
type Option func(*Worker)

// WithBackoff sets the retry backoff (doubling from min up to max) used for
// status reports and failed engine calls. Defaults: 100ms, 5s.
func WithBackoff(min, max time.Duration) Option {
	return func(w *Worker) {
		if min > 0 {
			w.minBackoff = min
		}
		if max >= w.minBackoff {
			w.maxBackoff = max
		}
	}
}

// WithMaxReportAttempts bounds how often one status is tried before it is
// dropped (default 10; <= 0 means until superseded or closed). A dropped
// status is not lost for good: when the dispatcher later sends the task
// with an older state than the worker knows, the worker reports again.
func WithMaxReportAttempts(n int) Option {
	return func(w *Worker) { w.maxReportAttempts = n }
}

// WithDrainDelay sets how long a running task whose spec publishes
// ingress-mode ports is kept running after it is asked to stop (or
// removed), before its container is stopped: time for every node's routing
// mesh to drop it from its endpoint table, so that no new connection is
// sent to a container about to stop. The container's stop grace period
// then lets open connections finish. Default 1s; <= 0 disables it.
func WithDrainDelay(d time.Duration) Option {
	return func(w *Worker) { w.drainDelay = d }
}

// DefaultDrainDelay is the drain delay without WithDrainDelay.
const DefaultDrainDelay = time.Second

// healthInterval is how often the health of a container with a healthcheck
// is polled (see runner.monitor).
const healthInterval = 500 * time.Millisecond

// Worker supervises the tasks assigned to one node.
type Worker struct {
	exec     exec.Executor
	reporter StatusReporter
	log      *slog.Logger

	minBackoff, maxBackoff time.Duration
	maxReportAttempts      int
	drainDelay             time.Duration
	healthInterval         time.Duration

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // runners and cleanups

	mu     sync.Mutex
	closed bool
	tasks  map[string]*runner
}

// New returns a worker running tasks on ex and reporting to reporter. A nil
// log discards logs.
func New(ex exec.Executor, reporter StatusReporter, log *slog.Logger, opts ...Option) *Worker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Worker{
		exec:              ex,
		reporter:          reporter,
		log:               log,
		minBackoff:        100 * time.Millisecond,
		maxBackoff:        5 * time.Second,
		maxReportAttempts: 10,
		drainDelay:        DefaultDrainDelay,
		healthInterval:    healthInterval,
		ctx:               ctx,
		cancel:            cancel,
		tasks:             make(map[string]*runner),
	}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Assign replaces the full set of tasks assigned to this node. Tasks not in
// the set are shut down and removed, and so are containers of this node
// belonging to no assigned task (their tasks were deleted while no worker
// watched). Containers of assigned tasks are adopted.
func (w *Worker) Assign(ctx context.Context, tasks []*swarmpb.Task) error {
	// Listing first, outside the lock: it tells new runners what already
	// exists. If the engine cannot answer we still apply the assignment
	// (runners that need to know look again themselves), but we skip orphan
	// removal since we cannot see the orphans.
	containers, listErr := w.exec.Containers(ctx)
	if listErr != nil {
		w.log.Warn("worker: cannot list containers; adoption deferred", "err", listErr)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	want := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		if t.GetId() != "" {
			want[t.GetId()] = true
		}
	}
	for id, r := range w.tasks {
		if !want[id] {
			w.removeLocked(id, r)
		}
	}
	w.applyLocked(tasks, containers, listErr == nil)
	if listErr == nil {
		for _, c := range containers {
			if c.TaskID == "" || want[c.TaskID] {
				continue
			}
			w.removeOrphan(c)
		}
	}
	return listErr
}

// Update applies changes: tasks added or changed (typically a new desired
// state), and tasks removed, whose containers are stopped and removed.
func (w *Worker) Update(ctx context.Context, changed []*swarmpb.Task, removed []string) error {
	var containers []exec.ContainerInfo
	known := false
	if fresh := w.newTasks(changed); len(fresh) > 0 {
		var err error
		containers, err = w.containersOf(ctx, fresh)
		if err != nil {
			w.log.Warn("worker: cannot list containers; adoption deferred", "err", err)
		}
		known = err == nil
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	for _, id := range removed {
		if r, ok := w.tasks[id]; ok {
			w.removeLocked(id, r)
		}
	}
	w.applyLocked(changed, containers, known)
	return nil
}

// newTasks returns the IDs of the tasks the worker does not run yet.
func (w *Worker) newTasks(tasks []*swarmpb.Task) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for _, t := range tasks {
		if _, ok := w.tasks[t.GetId()]; !ok && t.GetId() != "" {
			ids = append(ids, t.GetId())
		}
	}
	return ids
}

// containersOf lists the containers of the given tasks, asking the engine
// for only those when it can (exec.TaskContainerLister): a new task on a
// node running hundreds then costs a lookup, not a listing of them all.
// The list may hold other containers too.
func (w *Worker) containersOf(ctx context.Context, taskIDs []string) ([]exec.ContainerInfo, error) {
	if l, ok := w.exec.(exec.TaskContainerLister); ok {
		list, err := l.TaskContainers(ctx, taskIDs)
		if err != nil {
			return nil, fmt.Errorf("list containers of %d new tasks: %w", len(taskIDs), err)
		}
		return list, nil
	}
	list, err := w.exec.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return list, nil
}

// applyLocked updates existing runners and starts new ones, handing each
// new one its container from containers (if known).
func (w *Worker) applyLocked(tasks []*swarmpb.Task, containers []exec.ContainerInfo, known bool) {
	// Index only the new tasks' containers: containers may be the whole
	// node's, and a map of them all, built for one new task per session
	// message, was the agent's biggest cost at scale.
	var existing map[string]*exec.ContainerInfo
	if len(containers) > 0 {
		for _, t := range tasks {
			if _, ok := w.tasks[t.GetId()]; !ok && t.GetId() != "" {
				if existing == nil {
					existing = make(map[string]*exec.ContainerInfo)
				}
				existing[t.GetId()] = nil
			}
		}
		for i := range containers {
			if _, ok := existing[containers[i].TaskID]; ok {
				c := containers[i] // a copy: the runner must not pin the list
				existing[c.TaskID] = &c
			}
		}
	}
	for _, t := range tasks {
		if t.GetId() == "" {
			continue
		}
		if r, ok := w.tasks[t.GetId()]; ok {
			r.update(t)
			continue
		}
		r := newRunner(w, t, existing[t.GetId()], known)
		w.tasks[t.GetId()] = r
		w.wg.Add(1)
		go r.run()
	}
}

// removeLocked detaches the runner and has it stop and remove its
// container in the background.
func (w *Worker) removeLocked(id string, r *runner) {
	delete(w.tasks, id)
	r.remove()
}

// removeOrphan stops and removes a container whose task is not assigned.
func (w *Worker) removeOrphan(c exec.ContainerInfo) {
	log := w.log.With("service", c.ServiceID, "task", c.TaskID, "container", c.Name)
	ctl, err := w.exec.Controller(exec.StubTask(c))
	if err != nil {
		log.Warn("worker: cannot remove orphaned container", "err", err)
		return
	}
	log.Info("worker: removing container of unassigned task")
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		logf := func() *slog.Logger { return log }
		w.retry(w.ctx, logf, "shutdown orphan "+c.Name, ctl.Shutdown)
		w.retry(w.ctx, logf, "remove orphan "+c.Name, ctl.Remove)
	}()
}

// Close stops supervising: runners and reporters return, containers keep
// running so that a restarted agent can adopt them. Close waits for the
// goroutines to end.
func (w *Worker) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// backoff returns a fresh retry policy doubling from the worker's minimum
// delay up to its maximum.
func (w *Worker) backoff() *retry.Backoff { return retry.NewBackoff(w.minBackoff, w.maxBackoff) }

// retry calls op until it succeeds or ctx ends, with capped backoff. log
// is called only to log a failure.
func (w *Worker) retry(ctx context.Context, log func() *slog.Logger, what string, op func(context.Context) error) error {
	b := w.backoff()
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := b.Next()
		log().Warn("worker: retrying", "op", what, "err", err, "in", delay)
		if !retry.Sleep(ctx, delay) {
			return ctx.Err()
		}
	}
}

func status(state swarmpb.TaskState, msg string) *swarmpb.TaskStatus {
	return &swarmpb.TaskStatus{State: state, Message: msg, Timestamp: clock.Now().UnixNano()}
}

func exitStatus(code int) *swarmpb.TaskStatus {
	if code == 0 {
		st := status(swarmpb.TaskState_TASK_STATE_COMPLETE, "finished")
		return st
	}
	st := status(swarmpb.TaskState_TASK_STATE_FAILED, "started")
	st.Err = fmt.Sprintf("task: non-zero exit (%d)", code)
	st.ExitCode = int32(code)
	return st
}

// TaskLogger is l with the attributes every log line about a task
// carries: its service, task and node IDs.
func TaskLogger(l *slog.Logger, t *swarmpb.Task) *slog.Logger {
	return l.With("service", t.GetServiceId(), "task", t.GetId(), "node", t.GetNodeId())
}
