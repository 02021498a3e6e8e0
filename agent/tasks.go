package agent

import (
	"context"
	"errors"
	"github.com/raftswarm/raftswarm/raft"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/worker"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/internal/version"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Agent task-handling tuning.
const (
	// Session and endpoint stream reconnects back off between these.
	sessionMinBackoff = 100 * time.Millisecond
	sessionMaxBackoff = 2 * time.Second
	// sessionMaxRecv is the largest session message accepted: a full task
	// set is one message.
	sessionMaxRecv = 256 << 20
	// reportBatch bounds the status updates sent in one RPC.
	reportBatch = 500
	// reportTimeout bounds one UpdateTaskStatus call; the leader holds it
	// until the updates are committed.
	reportTimeout = 10 * time.Second
	// engineRefresh is how often the engine's description is re-read for
	// heartbeats; engineTimeout bounds one read.
	engineRefresh = 10 * time.Second
	engineTimeout = 5 * time.Second
)

// taskAgent runs the node's tasks: it holds the Session stream to the
// leader, feeds it to the worker, and reports the worker's task statuses.
// One exists per agent run; the worker and executor outlive sessions.
type taskAgent struct {
	log      *slog.Logger
	hostname string // reported in the node description
	dport    uint32 // data port reported for an explicit FetchImage (tests); else the data plane's
	ingress  string // the routing mesh's address
	nodeID   string
	meshPath string        // Config.MeshPath
	exec     exec.Executor // nil when the node has no container engine
	execErr  error         // why exec is nil
	worker   *worker.Worker
	data     *dataStore  // secret and config contents (data.go)
	images   *imagePeers // who has which image (images.go)
	leader   *leaderTracker
	reports  chan *statusReport

	// Owned by the runSessions goroutine: outages logged once each.
	sessionDown, assignDown outage

	ctx    context.Context // ends with the agent run (run cancels it)
	cancel context.CancelFunc

	engMu  sync.Mutex
	eng    *swarmpb.NodeDescription // last engine description, nil if none yet
	engErr error

	// The service-discovery data plane (netplane.go); nil when the
	// engine has no bridge networks.
	plane    dataPlane
	rulesErr error  // why the kernel rules are unusable, if they are
	dataPort uint32 // reported in heartbeats; 0 when no listener

	// For Agent.Stats (stats.go): whether a session is established, and
	// the running routing mesh (also read by describe for its path).
	sessionOpen atomic.Bool
	mesh        atomic.Pointer[mesh.Mesh]

	// assigned is the task set as the last session left it (ID -> task),
	// owned by the runSessions goroutine. The next session names these
	// with their versions, so that a new leader sends only what differs.
	assigned map[string]*swarmpb.Task

	routeMu sync.Mutex
	routes  []*swarmpb.ServiceEndpoint // the mesh table last applied (mesh.go)
}

type statusReport struct {
	update *swarmpb.TaskStatusUpdate
	done   chan error // capacity 1
}

// statusReports recycles reports with their done channels: one of each
// per status made garbage (makechan was 3 % of the CPU of bench/scale's
// thousand agents, mostly GC). A report is recycled once its result was
// received or it was never queued: sendReports does not touch a report
// after sending its result.
var statusReports = sync.Pool{New: func() any { return &statusReport{done: make(chan error, 1)} }}

// newTaskAgent creates the node's executor and worker. Without an
// executor the node still heartbeats (reporting the engine error) but runs
// no tasks.
func newTaskAgent(a *Agent) *taskAgent {
	ta := &taskAgent{
		log:      a.log,
		hostname: a.cfg.Hostname,
		dport:    explicitDataPort(a.cfg),
		ingress:  a.cfg.IngressAddr,
		nodeID:   a.cfg.NodeID,
		meshPath: a.cfg.MeshPath,
		leader:   a.leaders,
		reports:  make(chan *statusReport, 64),
		data:     newDataStore(),
		images:   newImagePeers(a.cfg.FetchImage),
	}
	ta.ctx, ta.cancel = context.WithCancel(context.Background())
	var ex exec.Executor
	err := errors.New("no container engine configured")
	if a.cfg.Executor != nil {
		ex, err = a.cfg.Executor(a.cfg.NodeID)
	}
	if err == nil && ex == nil {
		err = errors.New("no container engine configured")
	}
	if err != nil {
		ta.execErr = err
		ta.log.Warn("no container engine: this node runs no tasks", "err", err)
		return ta
	}
	ta.exec = ex
	if du, ok := ex.(exec.DataUser); ok {
		du.SetDataSource(ta.data)
	}
	ta.setupPlane(a.cfg, ex)
	if u, ok := ex.(exec.ImageFetchUser); ok {
		u.SetImageFetcher(ta.images)
	}
	ta.worker = worker.New(ex, ta, ta.log.With("component", "worker"))
	return ta
}

// run runs the session loop, the status reporter and the engine
// description refresher until ctx (the agent run) ends, then closes the
// worker; containers keep running for the next agent to adopt.
func (ta *taskAgent) run(ctx context.Context) {
	defer ta.cancel()
	stop := context.AfterFunc(ctx, ta.cancel)
	defer stop()
	var wg sync.WaitGroup
	if ta.exec != nil {
		// The first engine call runs alone: the Docker client negotiates
		// its API version lazily on it, racing with concurrent calls.
		ta.readEngine(ctx)
		wg.Go(func() { ta.refreshEngine(ctx) })
	}
	if ta.worker != nil {
		wg.Go(func() { ta.sendReports(ctx) })
		wg.Go(func() { ta.runSessions(ctx) })
	}
	// Every node forwards published ports, even one that runs no tasks.
	wg.Go(func() { ta.runMesh(ctx) })
	wg.Go(func() { ta.runPlane(ctx) })
	wg.Wait()
	if ta.worker != nil {
		ta.worker.Close()
	}
	if c, ok := ta.exec.(io.Closer); ok {
		_ = c.Close()
	}
}

// ---------------------------------------------------------------- engine

// Describe reports what the scheduler needs to know about this node, as
// far as the daemon itself knows it (without asking the container engine).
func Describe(hostname string) *swarmpb.NodeDescription {
	return &swarmpb.NodeDescription{
		Hostname:  hostname,
		Os:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		Resources: &swarmpb.Resources{NanoCpus: int64(runtime.NumCPU()) * 1e9, MemoryBytes: memTotal()},
		// The daemon's build, for 'swarmctl version'.
		DaemonVersion: version.Get().String(),
		// What this binary's Raft FSM reads, should the node be or become
		// a manager: the leader holds newer entries back until every
		// manager reads them.
		StoreBatchVersion: raft.StoreBatchVersion,
	}
}

// describe is the node description heartbeats and sessions carry: the
// configured hostname, and the engine's platform, version and resources
// (or the engine's error).
func (ta *taskAgent) describe() *swarmpb.NodeDescription {
	d := Describe(ta.hostname)
	d.DataPort = ta.dport // images.go; the data plane reports the port it serves
	eng, err := ta.engine()
	switch {
	case err != nil:
		d.EngineError = err.Error()
	case eng != nil:
		if eng.GetOs() != "" {
			d.Os = eng.GetOs()
		}
		if eng.GetArch() != "" {
			d.Arch = eng.GetArch()
		}
		d.EngineVersion = eng.GetEngineVersion()
		if r := eng.GetResources(); r.GetNanoCpus() > 0 || r.GetMemoryBytes() > 0 {
			d.Resources = &swarmpb.Resources{NanoCpus: r.GetNanoCpus(), MemoryBytes: r.GetMemoryBytes()}
		}
		d.EngineError = eng.GetEngineError()
	}
	ta.describeNetworks(d)
	if m := ta.mesh.Load(); m != nil {
		d.MeshPath, d.MeshPathReason = m.Path()
	}
	// The engine's texts are not ours to trust blindly either: make them
	// fit the bounds the managers enforce, so an odd engine version or a
	// long error cannot get every heartbeat refused.
	spec.ClipNodeDescription(d)
	return d
}

// engine returns the last engine description read. It never calls the
// engine itself, so a slow engine cannot delay heartbeats.
func (ta *taskAgent) engine() (*swarmpb.NodeDescription, error) {
	if ta.exec == nil {
		return nil, ta.execErr
	}
	ta.engMu.Lock()
	defer ta.engMu.Unlock()
	return ta.eng, ta.engErr
}

func (ta *taskAgent) refreshEngine(ctx context.Context) {
	for retry.Sleep(ctx, engineRefresh) {
		ta.readEngine(ctx)
	}
}

func (ta *taskAgent) readEngine(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, engineTimeout)
	d, err := ta.exec.Describe(dctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	ta.engMu.Lock()
	defer ta.engMu.Unlock()
	if err != nil && ta.engErr == nil {
		ta.log.Warn("container engine unreachable", "err", err)
	}
	ta.eng, ta.engErr = d, err
}

// ---------------------------------------------------------------- sessions

// runSessions keeps a Session open with the leader and applies what it
// streams to the worker, reconnecting with backoff when it breaks.
func (ta *taskAgent) runSessions(ctx context.Context) {
	backoff := retry.NewBackoff(sessionMinBackoff, sessionMaxBackoff)
	redirects := 0
	ta.sessionDown = outage{log: ta.log, what: "task session"}
	ta.assignDown = outage{log: ta.log, what: "applying assigned tasks"}
	for ctx.Err() == nil {
		addr, changed := ta.leader.get()
		if addr == "" {
			ta.log.Error("agent knows no manager to open a task session with")
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		// A heartbeat or a follower that names another leader ends this
		// session so the next one goes there.
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			ch := changed
			for {
				select {
				case <-sctx.Done():
					return
				case <-ch:
					var cur string
					cur, ch = ta.leader.get()
					if cur != addr {
						cancel()
						return
					}
				}
			}
		}()
		established, hint, err := ta.session(sctx, addr)
		ta.sessionOpen.Store(false)
		cancel()
		<-watchDone
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff.Reset()
			redirects = 0
		}
		if hint != "" && hint != addr {
			ta.leader.set(hint)
			if redirects++; redirects <= 3 {
				continue
			}
		} else if cur, _ := ta.leader.get(); cur != addr {
			continue // moved to a leader found meanwhile
		} else {
			ta.leader.failed(addr)
		}
		in := backoff.Next()
		ta.sessionDown.fail("manager", addr, "err", err, "retry_in", in)
		// The heartbeats finding the leader cut the wait short: after a
		// leader's death the session is back as soon as they reach the new
		// one, not a backoff (up to 2 s) later.
		_, moved := ta.leader.get()
		retry.SleepOrWake(ctx, in, moved)
	}
}

// session runs one Session stream with addr until it fails. established
// reports whether the full task set arrived; hint is the leader a
// follower named.
func (ta *taskAgent) session(ctx context.Context, addr string) (established bool, hint string, err error) {
	conn, err := ta.leader.conn(addr)
	if err != nil {
		return false, "", err
	}
	stream, err := swarmpb.NewDispatcherClient(conn).Session(ctx,
		&swarmpb.SessionRequest{Description: ta.describe(), KnownTasks: ta.knownTasks()}, grpc.MaxCallRecvMsgSize(sessionMaxRecv))
	if err != nil {
		return false, "", err
	}
	logs := ta.newSessionLogs(ctx, addr) // agent_logs.go
	defer logs.stop()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return established, leaderHint(stream.Trailer()), err
		}
		for _, sub := range msg.GetLogSubscriptions() {
			logs.handle(sub)
		}
		// Contents come with (never after) the tasks that need them.
		if msg.GetKind() == swarmpb.SessionMessage_KIND_FULL || established {
			ta.data.apply(msg, msg.GetKind() == swarmpb.SessionMessage_KIND_FULL)
		}
		ta.images.record(msg.GetImageSources())
		for _, vr := range msg.GetVolumeRemovals() {
			ta.removeVolumes(ta.ctx, addr, vr) // volumes.go
		}
		switch msg.GetKind() {
		case swarmpb.SessionMessage_KIND_FULL:
			if !established {
				established = true
				ta.sessionOpen.Store(true)
				ta.leader.set(addr)
				ta.sessionDown.ok()
			}
			if err := ta.worker.Assign(ctx, ta.fullSet(msg)); err != nil {
				ta.assignDown.fail("err", err)
			} else {
				ta.assignDown.ok()
			}
		case swarmpb.SessionMessage_KIND_UPDATE:
			if !established {
				continue // cannot happen: the full set comes first
			}
			ta.patchAssigned(msg.GetTasks(), msg.GetRemovedTaskIds())
			if err := ta.worker.Update(ctx, msg.GetTasks(), msg.GetRemovedTaskIds()); err != nil {
				ta.assignDown.fail("err", err)
			} else {
				ta.assignDown.ok()
			}
		}
		ta.leader.setManagers(msg.GetManagers())
	}
}

// knownTasks lists the tasks the last session left, for the next one.
func (ta *taskAgent) knownTasks() []*swarmpb.SessionKnownTask {
	out := make([]*swarmpb.SessionKnownTask, 0, len(ta.assigned))
	for id, t := range ta.assigned {
		out = append(out, &swarmpb.SessionKnownTask{Id: id, Version: t.GetMeta().GetVersion()})
	}
	return out
}

// fullSet returns the complete task set a KIND_FULL message stands for and
// records it: the message itself, or, when the leader resumed from the
// known tasks, those tasks updated by it.
func (ta *taskAgent) fullSet(msg *swarmpb.SessionMessage) []*swarmpb.Task {
	if !msg.GetResumed() {
		ta.assigned = make(map[string]*swarmpb.Task, len(msg.GetTasks()))
	}
	ta.patchAssigned(msg.GetTasks(), msg.GetRemovedTaskIds())
	full := make([]*swarmpb.Task, 0, len(ta.assigned))
	for _, t := range ta.assigned {
		full = append(full, t)
	}
	return full
}

func (ta *taskAgent) patchAssigned(changed []*swarmpb.Task, removed []string) {
	if ta.assigned == nil {
		ta.assigned = make(map[string]*swarmpb.Task, len(changed))
	}
	for _, t := range changed {
		ta.assigned[t.GetId()] = t
	}
	for _, id := range removed {
		delete(ta.assigned, id)
	}
}

// ---------------------------------------------------------------- reports

// UpdateTaskStatus implements worker.StatusReporter: the status joins the
// next batch sent to the leader, and the call returns that batch's result,
// so a failure makes the worker retry.
func (ta *taskAgent) UpdateTaskStatus(ctx context.Context, taskID string, st *swarmpb.TaskStatus) error {
	r := statusReports.Get().(*statusReport)
	r.update = &swarmpb.TaskStatusUpdate{TaskId: taskID, Status: st}
	select {
	case ta.reports <- r:
	case <-ctx.Done():
		r.update = nil
		statusReports.Put(r)
		return ctx.Err()
	case <-ta.ctx.Done():
		r.update = nil
		statusReports.Put(r)
		return errAgentStopped
	}
	select {
	case err := <-r.done:
		r.update = nil
		statusReports.Put(r)
		return err
	// Not recycled below: sendReports may still send its result.
	case <-ctx.Done():
		return ctx.Err()
	case <-ta.ctx.Done():
		return errAgentStopped
	}
}

// sendReports sends queued statuses, as many per RPC as are waiting.
func (ta *taskAgent) sendReports(ctx context.Context) {
	batch := make([]*statusReport, 0, reportBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-ta.reports:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < reportBatch {
			select {
			case r := <-ta.reports:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		updates := make([]*swarmpb.TaskStatusUpdate, len(batch))
		for i, r := range batch {
			updates[i] = r.update
		}
		err := ta.report(ctx, updates)
		if status.Code(err) == codes.PermissionDenied && len(batch) > 1 {
			// One task moved to another node while its status was on the
			// way; that must not hold up the others.
			for _, r := range batch {
				r.done <- ta.report(ctx, []*swarmpb.TaskStatusUpdate{r.update})
			}
		} else {
			for _, r := range batch {
				r.done <- err
			}
		}
		clear(batch)
	}
}

// report sends one UpdateTaskStatus to the leader, following a follower's
// hint.
func (ta *taskAgent) report(ctx context.Context, updates []*swarmpb.TaskStatusUpdate) error {
	var err error
	for range 3 {
		addr, _ := ta.leader.get()
		if addr == "" {
			return errors.New("no manager known")
		}
		var conn *grpc.ClientConn
		if conn, err = ta.leader.conn(addr); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, reportTimeout)
		var trailer metadata.MD
		_, err = swarmpb.NewDispatcherClient(conn).UpdateTaskStatus(rctx,
			&swarmpb.UpdateTaskStatusRequest{Updates: updates}, grpc.Trailer(&trailer))
		cancel()
		if err == nil {
			return nil
		}
		if hint := leaderHint(trailer); hint != "" && hint != addr {
			ta.leader.set(hint)
			continue
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.FailedPrecondition:
			ta.leader.failed(addr)
		case codes.DeadlineExceeded:
			// A report the leader did not commit in time says it is
			// slow, not where the leader is: the heartbeats find out
			// (stillLeads) and move every loop when it changed.
		}
		return err
	}
	return err
}
