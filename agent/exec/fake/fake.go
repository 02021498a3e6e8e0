package fake

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// StopExitCode is the exit code of a container stopped by Shutdown, like a
// process that dies of SIGTERM (128+15).
const StopExitCode = 143

type container struct {
	info   exec.ContainerInfo
	exited chan struct{} // closed when the current run ends
	starts int
	ports  []*swarmpb.PortBinding // fake_ports.go
}

// Executor is an in-memory executor for one node.
type Executor struct {
	nodeID string

	mu          sync.Mutex
	seq         int
	byTask      map[string]*container
	failImage   map[string]error
	failTask    map[string]error
	exitOnStart map[string]int // image -> exit code
	engineErr   error
	desc        *swarmpb.NodeDescription
	created     int

	health   map[string]string // task ID -> health status (fake_ports.go)
	checks   map[string]int    // task ID -> Health calls (fake_ports.go)
	nextPort uint32            // last host port handed out (fake_ports.go)

	logs    map[string][]*swarmpb.LogLine // task ID -> its lines (fake_logs.go)
	logWake chan struct{}                 // closed and replaced on every AppendLog
	readers int                           // Logs calls in progress

	data exec.DataSource // fake_data.go
}

var (
	_ exec.Executor            = (*Executor)(nil)
	_ exec.LogReader           = (*Executor)(nil)
	_ exec.TaskContainerLister = (*Executor)(nil)
)

// New returns an empty fake engine acting for nodeID.
func New(nodeID string) *Executor {
	return &Executor{
		nodeID:      nodeID,
		byTask:      make(map[string]*container),
		failImage:   make(map[string]error),
		failTask:    make(map[string]error),
		exitOnStart: make(map[string]int),
		logs:        make(map[string][]*swarmpb.LogLine),
		logWake:     make(chan struct{}),
		desc: &swarmpb.NodeDescription{
			Hostname:      "fake-" + nodeID,
			Os:            "linux",
			Arch:          "amd64",
			EngineVersion: "fake",
			Resources:     &swarmpb.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
		},
	}
}

// SetDescription replaces what Describe reports.
func (e *Executor) SetDescription(d *swarmpb.NodeDescription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.desc = d
}

// SetEngineError makes every engine call fail with err (nil restores it),
// simulating an unreachable engine. Running containers keep running.
func (e *Executor) SetEngineError(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.engineErr = err
}

// FailPrepare makes Prepare fail with err for tasks using image (nil
// clears it), like a missing image that cannot be pulled.
func (e *Executor) FailPrepare(image string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		delete(e.failImage, image)
		return
	}
	e.failImage[image] = err
}

// FailPrepareTask makes Prepare fail with err for one task (nil clears it).
func (e *Executor) FailPrepareTask(taskID string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		delete(e.failTask, taskID)
		return
	}
	e.failTask[taskID] = err
}

// ExitOnStart makes containers of image exit with code right after they
// start (a crashing version).
func (e *Executor) ExitOnStart(image string, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exitOnStart[image] = code
}

// Exit makes the task's running container exit with code.
func (e *Executor) Exit(taskID string, code int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.byTask[taskID]
	if !ok {
		return fmt.Errorf("fake: no container for task %s", taskID)
	}
	if !c.info.Running {
		return fmt.Errorf("fake: container of task %s is not running", taskID)
	}
	c.stop(code)
	return nil
}

// Count returns how many containers exist (any state).
func (e *Executor) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.byTask)
}

// Running returns how many containers are running.
func (e *Executor) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.byTask {
		if c.info.Running {
			n++
		}
	}
	return n
}

// RunningTasks returns the IDs of the tasks whose containers run, sorted.
func (e *Executor) RunningTasks() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for id, c := range e.byTask {
		if c.info.Running {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Created returns how many containers were ever created.
func (e *Executor) Created() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.created
}

// Starts returns how many times the task's current container was started.
func (e *Executor) Starts(taskID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.byTask[taskID]; ok {
		return c.starts
	}
	return 0
}

// Container returns the task's container, if any.
func (e *Executor) Container(taskID string) (exec.ContainerInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.byTask[taskID]
	if !ok {
		return exec.ContainerInfo{}, false
	}
	return c.info, true
}

// readyLocked is the engine's answer before any listing: its simulated
// error, or ctx's. e.mu is held.
func (e *Executor) readyLocked(ctx context.Context) error {
	if e.engineErr != nil {
		return e.engineErr
	}
	return ctx.Err()
}

// Describe reports the configured description.
func (e *Executor) Describe(ctx context.Context) (*swarmpb.NodeDescription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readyLocked(ctx); err != nil {
		return nil, err
	}
	return cloneDesc(e.desc), nil
}

func cloneDesc(d *swarmpb.NodeDescription) *swarmpb.NodeDescription {
	if d == nil {
		return nil
	}
	c := &swarmpb.NodeDescription{
		Hostname: d.GetHostname(), Os: d.GetOs(), Arch: d.GetArch(),
		EngineVersion: d.GetEngineVersion(), EngineError: d.GetEngineError(),
	}
	if r := d.GetResources(); r != nil {
		c.Resources = &swarmpb.Resources{NanoCpus: r.GetNanoCpus(), MemoryBytes: r.GetMemoryBytes()}
	}
	return c
}

// Containers lists the node's containers, sorted by name for stable tests.
func (e *Executor) Containers(ctx context.Context) ([]exec.ContainerInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readyLocked(ctx); err != nil {
		return nil, err
	}
	out := make([]exec.ContainerInfo, 0, len(e.byTask))
	for _, c := range e.byTask {
		out = append(out, c.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TaskContainers lists the containers of the given tasks: a lookup per
// task, not a copy and sort of every container (exec.TaskContainerLister).
func (e *Executor) TaskContainers(ctx context.Context, taskIDs []string) ([]exec.ContainerInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.readyLocked(ctx); err != nil {
		return nil, err
	}
	var out []exec.ContainerInfo
	for _, id := range taskIDs {
		if c, ok := e.byTask[id]; ok {
			out = append(out, c.info)
		}
	}
	return out, nil
}

// Controller returns the task's controller.
func (e *Executor) Controller(t *swarmpb.Task) (exec.Controller, error) {
	if t == nil || t.GetId() == "" {
		return nil, errors.New("fake: task without ID")
	}
	return &controller{e: e, task: t}, nil
}

// stop ends the current run; the caller holds e.mu.
func (c *container) stop(code int) {
	if !c.info.Running {
		return
	}
	c.info.Running = false
	c.info.State = exec.StateExited
	c.info.ExitCode = code
	close(c.exited)
}

type controller struct {
	e    *Executor
	task *swarmpb.Task
}

// check returns the engine error or the context error; caller holds e.mu.
func (c *controller) check(ctx context.Context) error {
	if c.e.engineErr != nil {
		return c.e.engineErr
	}
	return ctx.Err()
}

func (c *controller) Prepare(ctx context.Context) error {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return err
	}
	if _, ok := e.byTask[c.task.GetId()]; ok {
		return nil // adoption: reuse the task's container
	}
	spec := c.task.GetSpec().GetContainer()
	if spec == nil || spec.GetImage() == "" {
		return exec.ErrNoContainerSpec
	}
	if err := e.failTask[c.task.GetId()]; err != nil {
		return err
	}
	if err := e.failImage[spec.GetImage()]; err != nil {
		return err
	}
	e.seq++
	e.created++
	info := exec.ContainerInfo{
		// Not fmt.Sprintf: at 100k tasks in one process (bench/scale) it
		// was most of Prepare's CPU.
		ID:    "fake-" + e.nodeID + "-" + strconv.Itoa(e.seq),
		Name:  exec.ContainerName(c.task, e.nodeID),
		State: exec.StateCreated,
	}
	exec.InfoFromLabels(&info, exec.ContainerLabels(c.task, e.nodeID))
	e.byTask[c.task.GetId()] = &container{info: info, ports: e.allocPorts(c.task)}
	return nil
}

func (c *controller) get() (*container, error) {
	ct, ok := c.e.byTask[c.task.GetId()]
	if !ok {
		return nil, fmt.Errorf("fake: no container for task %s", c.task.GetId())
	}
	return ct, nil
}

func (c *controller) Start(ctx context.Context) error {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return err
	}
	ct, err := c.get()
	if err != nil {
		return err
	}
	if ct.info.Running {
		return nil // like Docker: starting a running container is a no-op
	}
	ct.info.Running = true
	ct.info.State = exec.StateRunning
	ct.info.ExitCode = 0
	ct.exited = make(chan struct{})
	ct.starts++
	if code, ok := e.exitOnStart[c.task.GetSpec().GetContainer().GetImage()]; ok {
		ct.stop(code)
	}
	return nil
}

func (c *controller) Wait(ctx context.Context) (int, error) {
	e := c.e
	e.mu.Lock()
	if err := c.check(ctx); err != nil {
		e.mu.Unlock()
		return 0, err
	}
	ct, err := c.get()
	if err != nil {
		e.mu.Unlock()
		return 0, err
	}
	if !ct.info.Running {
		code := ct.info.ExitCode
		e.mu.Unlock()
		return code, nil
	}
	exited := ct.exited
	e.mu.Unlock()
	select {
	case <-exited:
		e.mu.Lock()
		defer e.mu.Unlock()
		return ct.info.ExitCode, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *controller) Shutdown(ctx context.Context) error {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return err
	}
	if ct, ok := e.byTask[c.task.GetId()]; ok {
		ct.stop(StopExitCode)
	}
	return nil
}

func (c *controller) Remove(ctx context.Context) error {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return err
	}
	if ct, ok := e.byTask[c.task.GetId()]; ok {
		ct.stop(StopExitCode) // forced removal kills a running container
		delete(e.byTask, c.task.GetId())
	}
	return nil
}

// ContainerID returns the task's container ID, or "" if it has none.
func (c *controller) ContainerID() string {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	if ct, ok := c.e.byTask[c.task.GetId()]; ok {
		return ct.info.ID
	}
	return ""
}
