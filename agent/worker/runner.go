package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	stateAccepted  = swarmpb.TaskState_TASK_STATE_ACCEPTED
	statePreparing = swarmpb.TaskState_TASK_STATE_PREPARING
	stateStarting  = swarmpb.TaskState_TASK_STATE_STARTING
	stateRunning   = swarmpb.TaskState_TASK_STATE_RUNNING
	stateComplete  = swarmpb.TaskState_TASK_STATE_COMPLETE
	stateShutdown  = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	stateFailed    = swarmpb.TaskState_TASK_STATE_FAILED
	stateRejected  = swarmpb.TaskState_TASK_STATE_REJECTED
	stateAssigned  = swarmpb.TaskState_TASK_STATE_ASSIGNED
)

// maxWaitErrors bounds how often a failing Wait (engine errors, not
// cancellation) is retried before the task is declared FAILED.
const maxWaitErrors = 5

// runner supervises one task. Its goroutine (run) drives the controller;
// Assign/Update talk to it through update and remove.
type runner struct {
	w  *Worker
	id string
	// lg is the worker's logger with the task's service, task and node
	// IDs, built on first use (log): slog's With formats the attributes at
	// once, for every task, and most tasks never log.
	lg     *slog.Logger
	lgOnce sync.Once

	// ctx ends on Close; cleanup after removal runs on it.
	ctx    context.Context
	cancel context.CancelFunc
	// stopCtx also ends when the task must stop (desired state past
	// RUNNING) or is removed; every step of the run uses it.
	stopCtx  context.Context
	stopTask context.CancelFunc
	removed  chan struct{} // closed by remove

	existing *exec.ContainerInfo // the task's container when the worker started it
	known    bool                // whether existing is authoritative

	// serving is whether the routing mesh may be sending the task
	// connections: RUNNING was reported (by us, or before an agent
	// restart) and the container has not been stopped since. Only the
	// run goroutine uses it.
	serving bool

	mu         sync.Mutex
	task       *swarmpb.Task
	wasRemoved bool
	rep        *reporter
}

func newRunner(w *Worker, t *swarmpb.Task, existing *exec.ContainerInfo, known bool) *runner {
	ctx, cancel := context.WithCancel(w.ctx)
	stopCtx, stopTask := context.WithCancel(ctx)
	r := &runner{
		w: w, id: t.GetId(),
		ctx: ctx, cancel: cancel,
		stopCtx: stopCtx, stopTask: stopTask,
		removed:  make(chan struct{}),
		existing: existing, known: known,
		task:    t,
		serving: t.GetStatus().GetState() == stateRunning,
	}
	r.rep = newReporter(ctx, w, t.GetId(), t.GetStatus(), r.log)
	if wantsStop(t) {
		stopTask()
	}
	return r
}

// log returns the task's logger.
func (r *runner) log() *slog.Logger {
	r.lgOnce.Do(func() { r.lg = TaskLogger(r.w.log, r.current()) })
	return r.lg
}

func wantsStop(t *swarmpb.Task) bool {
	return t.GetDesiredState() > stateRunning
}

// update records a newer version of the task.
func (r *runner) update(t *swarmpb.Task) {
	r.mu.Lock()
	r.task = t
	r.mu.Unlock()
	if wantsStop(t) {
		r.stopTask()
	}
	// The dispatcher's view lagging behind ours means a report was lost
	// (or dropped after its attempts); send our latest again.
	r.rep.resync(t.GetStatus().GetState())
}

// remove makes the runner stop and remove the container, then end.
func (r *runner) remove() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.wasRemoved {
		r.wasRemoved = true
		close(r.removed)
		r.stopTask()
	}
}

func (r *runner) isRemoved() bool {
	select {
	case <-r.removed:
		return true
	default:
		return false
	}
}

func (r *runner) current() *swarmpb.Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.task
}

func (r *runner) run() {
	defer r.w.wg.Done()
	defer func() {
		r.cancel() // ends the reporter's delivery, if any
		r.rep.close()
	}()

	ctl, err := r.w.exec.Controller(r.current())
	if err != nil {
		st := status(stateRejected, "cannot run task")
		st.Err = err.Error()
		r.report(st)
	} else {
		r.drive(ctl)
	}

	// Terminal, stopped, or interrupted: keep the container (its logs and
	// exit status stay inspectable) until the task is removed or we close.
	select {
	case <-r.removed:
	case <-r.ctx.Done():
		return
	}
	if ctl != nil {
		if !r.drain() {
			return // closed
		}
		r.w.retry(r.ctx, r.log, "shutdown "+r.id, ctl.Shutdown)
		r.w.retry(r.ctx, r.log, "remove "+r.id, ctl.Remove)
	}
	r.rep.stop()
}

// interrupted is called when a step's context ended: on Close it does
// nothing; on removal it leaves the work to run(); otherwise the task was
// asked to stop.
func (r *runner) interrupted(ctl exec.Controller) {
	if r.ctx.Err() != nil || r.isRemoved() {
		return
	}
	r.shutdown(ctl)
}

// drain waits the worker's drain delay before a serving task that
// publishes ingress-mode ports is stopped, so that every node's routing
// mesh drops it from its endpoint table (the task's desired state or its
// removal propagates meanwhile) before its container stops accepting
// connections. Tasks without such ports, or that never ran, stop at once.
// It reports false if the worker closed meanwhile.
func (r *runner) drain() bool {
	if !r.serving {
		return true
	}
	r.serving = false
	if r.w.drainDelay <= 0 || !exec.PublishesIngress(r.current()) {
		return true
	}
	return retry.Sleep(r.ctx, r.w.drainDelay)
}

// shutdown stops the container (after the drain delay) and reports
// SHUTDOWN.
func (r *runner) shutdown(ctl exec.Controller) {
	if !r.drain() {
		return // closed
	}
	if err := r.w.retry(r.ctx, r.log, "shutdown "+r.id, ctl.Shutdown); err != nil {
		return // closed
	}
	if r.isRemoved() {
		return
	}
	r.report(r.withContainer(ctl, status(stateShutdown, "shutdown")))
}

func (r *runner) report(st *swarmpb.TaskStatus) { r.rep.set(st) }

func (r *runner) withContainer(ctl exec.Controller, st *swarmpb.TaskStatus) *swarmpb.TaskStatus {
	if ci, ok := ctl.(exec.ContainerIdentifier); ok {
		st.ContainerId = ci.ContainerID()
	}
	return st
}

// drive takes the task from its current observed state as far as it goes:
// a terminal state, or an interruption.
func (r *runner) drive(ctl exec.Controller) {
	t := r.current()
	observed := t.GetStatus().GetState()
	if observed >= stateComplete {
		return // already finished; nothing to run or report
	}
	if r.stopCtx.Err() != nil {
		r.interrupted(ctl)
		return
	}

	info, ok := r.lookup(observed)
	if !ok {
		r.interrupted(ctl)
		return
	}
	switch {
	case info != nil && info.Running:
		// Adopt: it is running, do not restart it.
		r.monitor(ctl, info.ID)
		return
	case info != nil && info.State != exec.StateCreated:
		// It ran and ended while nobody watched.
		r.serving = false
		st := exitStatus(info.ExitCode)
		st.ContainerId = info.ID
		r.report(st)
		return
	case info == nil && observed >= stateRunning:
		r.serving = false
		st := status(stateFailed, "started")
		st.Err = "task: container vanished while the agent was away"
		r.report(st)
		return
	}

	r.report(status(stateAccepted, "accepted"))
	r.report(status(statePreparing, "preparing"))
	if err := ctl.Prepare(r.stopCtx); err != nil {
		if r.stopCtx.Err() != nil {
			r.interrupted(ctl)
			return
		}
		st := status(stateRejected, "preparing failed")
		st.Err = err.Error()
		r.report(st)
		return
	}
	starting := "starting"
	if n, ok := ctl.(exec.PrepareNoter); ok && n.PrepareNote() != "" {
		starting += ": " + n.PrepareNote() // e.g. where the image came from
	}
	r.report(r.withContainer(ctl, status(stateStarting, starting)))
	if err := ctl.Start(r.stopCtx); err != nil {
		if r.stopCtx.Err() != nil {
			r.interrupted(ctl)
			return
		}
		st := r.withContainer(ctl, status(stateFailed, "starting failed"))
		st.Err = err.Error()
		r.report(st)
		return
	}
	r.monitor(ctl, "")
}

// lookup returns the task's existing container (nil if none). When the
// worker could not list containers it asks again, with backoff, unless the
// task never got past ASSIGNED (it cannot have a container then, short of
// lost reports). ok is false if interrupted.
func (r *runner) lookup(observed swarmpb.TaskState) (info *exec.ContainerInfo, ok bool) {
	if r.known || observed <= stateAssigned {
		return r.existing, true
	}
	err := r.w.retry(r.stopCtx, r.log, "list containers", func(ctx context.Context) error {
		list, err := r.w.exec.Containers(ctx)
		if err != nil {
			return err
		}
		for i := range list {
			if list[i].TaskID == r.id {
				info = &list[i]
				return nil
			}
		}
		return nil
	})
	return info, err == nil
}

type waitResult struct {
	code int
	err  error
}

// monitor follows a started (or adopted, running) container: it reports
// RUNNING with the container's published ports, at once or, for a
// container with a healthcheck, once it is healthy (STARTING until then);
// it stops and fails a container found unhealthy (before or after
// RUNNING); and it reports how the container ends. containerID is the
// adopted container's ID ("" to ask the controller).
func (r *runner) monitor(ctl exec.Controller, containerID string) {
	stamp := func(st *swarmpb.TaskStatus) *swarmpb.TaskStatus {
		r.withContainer(ctl, st)
		if st.ContainerId == "" {
			st.ContainerId = containerID
		}
		return st
	}
	running, waiting := false, false
	setRunning := func() {
		if !running {
			running = true
			r.reportRunning(ctl, stamp(status(stateRunning, "started")))
		}
	}
	// ended reports how the wait for the container ended.
	ended := func(res waitResult) {
		if r.stopCtx.Err() != nil {
			// Asked to stop (or removed, or closed) while it ran; an
			// exit racing with the request counts as the shutdown.
			r.interrupted(ctl)
			return
		}
		r.serving = false
		if res.err != nil {
			st := stamp(status(stateFailed, "started"))
			st.Err = fmt.Sprintf("task: lost track of container: %v", res.err)
			r.report(st)
			return
		}
		r.report(stamp(exitStatus(res.code)))
	}

	// The wait runs in its own goroutine only while health is polled
	// (until the first answer, and for as long as the container has a
	// healthcheck). Otherwise, as for most tasks, this goroutine waits
	// itself: one goroutine per running task instead of two, which at a
	// thousand nodes' worth of tasks in one process was much of the GC's
	// stack scanning.
	var (
		exited    <-chan waitResult // nil until the wait goroutine starts
		stopAsync func()
	)
	stopWaiting := func() {
		if stopAsync != nil {
			stopAsync()
		}
	}
	defer stopWaiting()

	// Health is polled. Docker's events API (health_status events) would
	// tell us of changes without polling, but it is one more long-lived
	// stream per agent to filter, fan out to tasks and resume (without
	// losing events) after an engine restart or a dropped connection.
	// Polling is acceptable here: one inspect per task per interval
	// (500 ms), only for tasks whose container has a healthcheck (a first
	// answer of "no healthcheck" ends the polling), bounded by the task's
	// context.
	hr, polling := ctl.(exec.HealthReporter)
	var tick <-chan time.Time
	if !polling {
		setRunning()
	}
	for {
		if polling {
			h, err := hr.Health(r.stopCtx)
			switch {
			case r.stopCtx.Err() != nil:
				// Stopping: the wait below returns at once.
			case err != nil:
				r.log().Warn("worker: cannot read container health", "err", err)
			case h == exec.HealthNone:
				polling, tick = false, nil
				setRunning()
			case h == exec.HealthHealthy:
				setRunning()
			case h == exec.HealthUnhealthy:
				stopWaiting()
				r.failUnhealthy(ctl, stamp)
				return
			default: // starting
				if !running && !waiting {
					waiting = true
					r.report(stamp(status(stateStarting, "waiting for the container to become healthy")))
				}
			}
		}
		if !polling && exited == nil {
			code, err := r.waitContainer(r.stopCtx, ctl)
			ended(waitResult{code, err})
			return
		}
		if exited == nil {
			exited, stopAsync = r.waitAsync(ctl)
			t := time.NewTicker(r.w.healthInterval)
			defer t.Stop()
			tick = t.C
		}
		select {
		case res := <-exited:
			ended(res)
			return
		case <-tick:
		}
	}
}

// waitAsync waits for the container in a goroutine, which sends how the
// wait ended on exited; stop cancels the wait and returns once the
// goroutine ended.
func (r *runner) waitAsync(ctl exec.Controller) (exited <-chan waitResult, stop func()) {
	ctx, cancel := context.WithCancel(r.stopCtx)
	ch := make(chan waitResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		code, err := r.waitContainer(ctx, ctl)
		ch <- waitResult{code, err}
	})
	return ch, func() { cancel(); wg.Wait() }
}

// reportRunning reports st (RUNNING) with the container's published ports,
// from which the leader builds the routing mesh's endpoints.
func (r *runner) reportRunning(ctl exec.Controller, st *swarmpb.TaskStatus) {
	if pr, ok := ctl.(exec.PortReporter); ok {
		b := r.w.backoff()
		for attempt := 1; ; attempt++ {
			ports, err := pr.Ports(r.stopCtx)
			if err == nil {
				st.Ports = ports
				break
			}
			if r.stopCtx.Err() != nil {
				break
			}
			if attempt >= maxWaitErrors {
				// RUNNING without ports: the mesh does not route to it,
				// but the task does run.
				r.log().Error("worker: cannot read the container's published ports", "err", err)
				break
			}
			r.log().Warn("worker: reading published ports failed, retrying", "err", err)
			if !b.Wait(r.stopCtx) {
				break
			}
		}
	}
	r.report(st)
	r.serving = true
}

// failUnhealthy stops an unhealthy container and reports FAILED. The mesh
// is not drained: the container is not answering properly anyway.
func (r *runner) failUnhealthy(ctl exec.Controller, stamp func(*swarmpb.TaskStatus) *swarmpb.TaskStatus) {
	r.serving = false
	r.log().Warn("worker: container unhealthy; stopping it")
	if err := r.w.retry(r.ctx, r.log, "shutdown "+r.id, ctl.Shutdown); err != nil {
		return // closed
	}
	if r.isRemoved() {
		return
	}
	st := stamp(status(stateFailed, "started"))
	st.Err = "task: container unhealthy"
	r.report(st)
}

// waitContainer waits for the container to end, retrying failed waits (not
// cancellation) up to maxWaitErrors times.
func (r *runner) waitContainer(ctx context.Context, ctl exec.Controller) (int, error) {
	b := r.w.backoff()
	for attempt := 1; ; attempt++ {
		code, err := ctl.Wait(ctx)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err == nil {
			return code, nil
		}
		if attempt >= maxWaitErrors {
			return 0, err
		}
		r.log().Warn("worker: wait failed, retrying", "err", err)
		if !b.Wait(ctx) {
			return 0, ctx.Err()
		}
	}
}

// reporter sends one task's statuses in order and never backwards. While
// delivery fails it retries with backoff; if newer statuses queue up
// meanwhile, the failing one and all but the newest are skipped (the latest
// status wins), which also bounds the queue.
//
// Its goroutine (loop) runs only while there is something to deliver: a
// running task has nothing to report most of its life, and a goroutine per
// task waiting for it cost, at a thousand simulated nodes in one process,
// stacks for the GC to scan.
type reporter struct {
	w    *Worker
	ctx  context.Context // ends delivery: the runner's
	id   string
	log  func() *slog.Logger // the runner's
	kick chan struct{}       // cap 1: a new status while delivering
	wg   sync.WaitGroup

	mu      sync.Mutex
	floor   swarmpb.TaskState // last state accepted for sending
	sent    bool              // whether anything was accepted yet
	msg     string            // message of the last status accepted by set
	ownMsg  bool              // whether floor and msg come from set (not resync)
	queue   []*swarmpb.TaskStatus
	dropped *swarmpb.TaskStatus // given up on, and nothing newer since
	stopped bool
	active  bool // loop runs
	closed  bool // no loop starts any more (close)
}

func newReporter(ctx context.Context, w *Worker, id string, initial *swarmpb.TaskStatus, log func() *slog.Logger) *reporter {
	return &reporter{w: w, ctx: ctx, id: id, log: log, kick: make(chan struct{}, 1), floor: initial.GetState()}
}

// set queues st unless it would move the task backwards. The state the
// dispatcher already has may be reported once more (adoption reports
// RUNNING for a task the store has as RUNNING), and a state already
// reported may be reported again with a new message (STARTING, then
// STARTING waiting for the container to become healthy). st must not be
// changed afterwards: it goes to the StatusReporter as it is.
func (p *reporter) set(st *swarmpb.TaskStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || st.GetState() < p.floor ||
		(st.GetState() == p.floor && p.sent && (!p.ownMsg || st.GetMessage() == p.msg)) {
		return
	}
	p.floor, p.sent = st.GetState(), true
	p.msg, p.ownMsg = st.GetMessage(), true
	if st.GetState() == stateFailed || st.GetState() == stateRejected {
		// The user acts on these (a bad image, a crashing command).
		p.log().Warn("worker: task "+strings.ToLower(strings.TrimPrefix(st.GetState().String(), "TASK_STATE_")),
			"message", st.GetMessage(), "err", st.GetErr(), "exit_code", st.GetExitCode())
	}
	p.queue = append(p.queue, st)
	p.dropped = nil
	p.signal()
}

// resync takes in the dispatcher's view of the task's state: anything not
// newer is pointless to send, and a status we gave up on is tried again
// if the dispatcher is behind it.
func (p *reporter) resync(remote swarmpb.TaskState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if remote > p.floor {
		// Someone else (the manager) moved the task on; never report
		// anything older than that.
		p.floor, p.sent, p.ownMsg = remote, true, false
		q := p.queue[:0]
		for _, st := range p.queue {
			if st.GetState() > remote {
				q = append(q, st)
			}
		}
		p.queue = q
	}
	if p.stopped || p.dropped == nil || len(p.queue) > 0 || remote >= p.dropped.GetState() {
		return
	}
	p.queue = append(p.queue, p.dropped)
	p.dropped = nil
	p.signal()
}

// signal has the queue delivered: it starts the loop, or tells the
// running one (which may be waiting to retry an older status) that a new
// status came. The caller holds p.mu.
func (p *reporter) signal() {
	if p.active {
		select {
		case p.kick <- struct{}{}:
		default:
		}
		return
	}
	if p.closed || p.ctx.Err() != nil {
		return
	}
	p.active = true
	p.wg.Add(1)
	go p.loop()
}

// close stops loops from starting and waits for the running one, which
// ends soon once the reporter's context ended.
func (p *reporter) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}

// stop drops queued and future reports (the task was removed).
func (p *reporter) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped, p.queue, p.dropped = true, nil, nil
}

// take returns the next status to send (nil, which ends the loop, if
// none), skipping the plain steps (ACCEPTED, PREPARING, STARTING with no
// note) that newer statuses queued behind it supersede: a task's statuses
// only move forward, and the manager needs the latest, not every step,
// which queue up while the first is being committed. At scale this cuts
// the status writes of a start from four to two. A status with something
// to say (STARTING with where the image came from, waiting to be healthy)
// is still sent.
func (p *reporter) take() *swarmpb.TaskStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 1 && plainStep(p.queue[0]) {
		p.queue[0] = nil
		p.queue = p.queue[1:]
	}
	if len(p.queue) == 0 || p.ctx.Err() != nil {
		// The loop ends. A kick it got while delivering is stale; the
		// next loop must not cut its first retry's wait short for it.
		p.active = false
		select {
		case <-p.kick:
		default:
		}
		return nil
	}
	st := p.queue[0]
	p.queue = p.queue[1:]
	return st
}

// plainStep reports a status before RUNNING that says no more than its
// state.
func plainStep(st *swarmpb.TaskStatus) bool {
	if st.GetState() >= swarmpb.TaskState_TASK_STATE_RUNNING || st.GetErr() != "" {
		return false
	}
	switch st.GetMessage() {
	case "accepted", "preparing", "starting":
		return true
	}
	return false
}

// superseded reports whether newer statuses wait (keeping only the newest)
// or reporting stopped, so that retrying the failing one is pointless.
func (p *reporter) superseded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.queue); n > 1 {
		p.queue = p.queue[n-1:]
	}
	return len(p.queue) > 0 || p.stopped
}

func (p *reporter) giveUp(st *swarmpb.TaskStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 && !p.stopped {
		p.dropped = st
	}
}

// loop delivers the queued statuses, and those queued meanwhile, until
// the queue is empty or the reporter's context ends.
func (p *reporter) loop() {
	defer p.wg.Done()
	for st := p.take(); st != nil; st = p.take() {
		p.deliver(p.ctx, st)
	}
}

// deliver tries st with backoff until it is accepted, superseded by a newer
// status, out of attempts, or ctx ends.
func (p *reporter) deliver(ctx context.Context, st *swarmpb.TaskStatus) {
	b := p.w.backoff()
	for attempt := 1; ; attempt++ {
		// No copy for the reporter, which may keep st: a status is never
		// changed once queued (set). proto.Clone, reflective, was 5.6 %
		// of the CPU of a thousand simulated nodes' agents.
		err := p.w.reporter.UpdateTaskStatus(ctx, p.id, st)
		if err == nil || ctx.Err() != nil {
			return
		}
		if p.superseded() {
			return // the loop goes on with the newest
		}
		if max := p.w.maxReportAttempts; max > 0 && attempt >= max {
			p.log().Error("worker: giving up reporting status", "state", st.GetState(), "err", err)
			p.giveUp(st)
			return
		}
		delay := b.Next()
		p.log().Warn("worker: status report failed, retrying", "state", st.GetState(), "err", err, "in", delay)
		// A new status (kick) cuts the wait short: it replaces this one.
		if !retry.SleepOrWake(ctx, delay, p.kick) && ctx.Err() != nil {
			return
		}
		if p.superseded() {
			return
		}
	}
}
