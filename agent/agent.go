package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Wire values the managers' dispatcher uses (package api, which the agent
// must not import: it is the server side). node's tests check they match.
const (
	// LeaderAddrKey is the trailer key in which a follower names the leader.
	LeaderAddrKey = "raftswarm-leader-addr"
	// DefaultHeartbeatPeriod is the period assumed until the leader names one.
	DefaultHeartbeatPeriod = 2 * time.Second
)

// Heartbeat tuning.
const (
	heartbeatTimeout    = 3 * time.Second
	heartbeatMinBackoff = 100 * time.Millisecond
	heartbeatMaxBackoff = 2 * time.Second
)

// ConnSource gives client connections to managers by address. The node's
// connection pool (internal/dial.Pool) is one; it must stay usable for as
// long as the agent runs.
type ConnSource interface {
	Conn(addr string) (*grpc.ClientConn, error)
}

// Assignment is what the leader answered to a heartbeat about this node.
type Assignment struct {
	DesiredRole swarmpb.NodeRole // the role the cluster wants this node in
	Role        swarmpb.NodeRole // the role the cluster has recorded for it
	Managers    []string         // the cluster's managers, leader first
}

// RoleReconciler acts on the role the cluster wants for this node
// (promotion, demotion, certificate renewal). The agent calls it on a
// goroutine of its own, one call at a time, with the latest assignment:
// a role change may take as long as it needs without holding up the
// heartbeats, so a node being promoted is not marked Down meanwhile.
type RoleReconciler interface {
	ReconcileRole(ctx context.Context, a Assignment)
}

// ManagerRecorder keeps the cluster's manager list across restarts (the
// node's node.json). The agent calls it, one call at a time, when a list
// the leader sends differs from the one last recorded.
type ManagerRecorder interface {
	RecordManagers(managers []string)
}

// Config configures an agent.
type Config struct {
	NodeID        string
	AdvertiseAddr string // the address this node advertises in heartbeats
	Hostname      string // reported in the node description
	IngressAddr   string // where the routing mesh publishes ports; "" for all addresses
	// MeshPath is how the routing mesh forwards published TCP ports:
	// MeshPathAuto (the kernel where nftables can be used, else the
	// userspace proxy) or MeshPathUserspace (which also removes rules a
	// crashed kernel-path run left). "" is the userspace path without
	// touching the kernel at all (in-process test nodes).
	MeshPath string
	Managers []string // the managers known at start, as recorded
	// Executor creates the container engine tasks run on; a node without
	// one (error or nil) still heartbeats, reporting why, but runs no tasks.
	Executor func(nodeID string) (exec.Executor, error)
	Conns    ConnSource
	Roles    RoleReconciler  // may be nil: the agent then only reports
	Recorder ManagerRecorder // may be nil
	Logger   *slog.Logger
	// DataPort is the TCP port of the service-discovery data path
	// (tunnels between nodes), bound on the advertised host; 0: none.
	DataPort int
	// DataServerTLS and DataClientTLS are the data path's mutual-TLS
	// configurations, from the node's certificate (see
	// netplane.Config.ServerTLS). The client's ServerName is left empty:
	// the data plane sets it to the node ID it dials (node certificates
	// name it). Without DataServerTLS no data-path listener is served.
	DataServerTLS func() *tls.Config
	DataClientTLS func() *tls.Config
	// FetchImage gets an image from another node over the data path
	// (netplane.Plane.FetchImage); nil: the data plane's, or none (images
	// are then only pulled).
	FetchImage FetchImageFunc
}

// Agent is what runs on every node of a cluster, manager or worker: the
// heartbeats, the task session feeding the worker, the worker's status
// reports, the routing mesh and the log publishing.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	leaders *leaderTracker
	tasks   *taskAgent
	roles   chan Assignment // the latest assignment not yet reconciled
	desc    descCache       // what the leader stores of our description (heartbeat loop only)
}

// New creates the agent and its container engine; Run runs it.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger,
		leaders: newLeaderTracker(cfg.Conns, cfg.Recorder, cfg.Managers),
		roles:   make(chan Assignment, 1),
	}
	a.tasks = newTaskAgent(a)
	return a
}

// Run heartbeats, runs tasks and the mesh until ctx ends, then closes the
// worker (containers keep running for the next agent to adopt). It waits
// for a role change in progress to return.
func (a *Agent) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { a.tasks.run(ctx) })
	wg.Go(func() { a.runRoles(ctx) })
	a.runHeartbeats(ctx)
	wg.Wait()
}

// runRoles hands the assignments the heartbeats receive to the role
// reconciler, one at a time, outside the heartbeat loop.
func (a *Agent) runRoles(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case as := <-a.roles:
			if a.cfg.Roles != nil {
				a.cfg.Roles.ReconcileRole(ctx, as)
			}
		}
	}
}

// assign queues as for the role goroutine, replacing one it has not taken
// yet. Only the heartbeat loop calls it, so the send cannot block.
func (a *Agent) assign(as Assignment) {
	select {
	case <-a.roles:
	default:
	}
	a.roles <- as
}

// runHeartbeats heartbeats to the leader until ctx ends. It starts from
// the managers it knows, follows a follower's hint to the leader, moves on
// to the next manager when one fails, and hands the role the cluster wants
// for this node to the role goroutine.
func (a *Agent) runHeartbeats(ctx context.Context) {
	// period is the last heartbeat period the leader asked for. Retries
	// never wait longer than it: the leader marks a node Down after a few
	// silent periods, so a live agent looking for a new leader must not
	// back off past that.
	period := DefaultHeartbeatPeriod
	backoff := retry.NewBackoff(heartbeatMinBackoff, heartbeatMaxBackoff)
	down := &outage{log: a.log, what: "heartbeats"}
	for ctx.Err() == nil {
		addr, _ := a.leaders.get()
		if addr == "" {
			a.log.Error("agent knows no manager to talk to")
			return
		}
		began := time.Now()
		resp, leader, err := a.heartbeat(ctx, addr, heartbeatCallTimeout(period))
		if err != nil {
			if leader != "" && leader != addr {
				a.leaders.set(leader)
				continue
			}
			if status.Code(err) == codes.DeadlineExceeded && a.leaders.confirmedLeader(addr) {
				if a.stillLeads(ctx, addr, period) {
					down.fail("manager", addr, "err", err)
					continue // slow, not gone: call it again at once
				}
				if cur, _ := a.leaders.get(); cur != addr {
					continue // another manager was named or answered as the leader
				}
			}
			if status.Code(err) == codes.InvalidArgument {
				// The managers refuse what this node reports about itself
				// (spec.ValidateNodeDescription): say so, it will not fix
				// itself by retrying.
				a.log.Warn("the manager refused this node's heartbeat", "manager", addr, "err", err)
			} else {
				down.fail("manager", addr, "err", err)
			}
			a.leaders.failed(addr)
			if !retry.Sleep(ctx, min(backoff.Next(), period)) {
				return
			}
			continue
		}
		backoff.Reset()
		down.ok()
		// It answered, so it leads: the task session follows.
		a.leaders.set(addr)
		if resp.Removed {
			a.log.Warn("this node was removed from the cluster; run 'swarmctl leave' to clear its state")
			return
		}
		a.leaders.setManagers(resp.Managers)
		a.assign(Assignment{DesiredRole: resp.DesiredRole, Role: resp.Role, Managers: slices.Clone(resp.Managers)})
		period = time.Duration(resp.PeriodNs)
		if period <= 0 {
			period = DefaultHeartbeatPeriod
		}
		// The period runs from the call's start, not from its answer:
		// the leader's deadline for the next heartbeat runs from when it
		// took this one, so a slow answer (a loaded leader, a connection
		// busy with task assignments) must not push the next call later
		// by as much, which at 1,000 nodes and 100,000 tasks had live
		// nodes marked Down.
		if !retry.Sleep(ctx, jitter(period)-time.Since(began)) {
			return
		}
	}
}

// stillLeads asks another manager who leads after a heartbeat to addr, the
// confirmed leader, timed out, and reports whether addr still does. A
// follower names the leader it knows (and, while its leader has gone
// silent, waits for the election to name the next: api's awaitLeader), so
// a dead or cut-off leader is left as fast as by moving on blindly; a
// leader that is only slow (loaded: at 100,000 tasks on 1,000 nodes
// heartbeats took over 3 s) is kept, and so is one when the other manager
// does not answer in time either. Moving on blindly sent every loop of
// the node (task session, status reports) to a follower and back: 1,000
// nodes' reconnections, TLS handshakes and session resumes on a leader
// already slow, and nodes silent long enough to be marked Down. A
// different leader named is taken at once.
func (a *Agent) stillLeads(ctx context.Context, addr string, period time.Duration) bool {
	other := a.leaders.next(addr)
	if other == "" {
		return true // nowhere else to ask or go
	}
	_, hint, err := a.heartbeat(ctx, other, heartbeatCallTimeout(period))
	switch {
	case err == nil:
		a.leaders.set(other) // it answered as the leader
		return false
	case hint != "" && hint != addr:
		a.leaders.set(hint)
		return false
	}
	// Named again, or no answer from the other either: the leader was
	// confirmed and nothing says it changed. A dead leader refuses or
	// resets the connection (Unavailable), which moves the node as
	// before; one whose followers cannot be reached in time either is
	// most likely a loaded cluster (1,000 nodes dialling the followers
	// at once), and moving there would add to it.
	return true
}

// jitter returns a wait of 85 to 100 % of period, drawn at random, so that
// agents that started together (a restarted cluster, a new leader) do not
// keep heartbeating in step. Never longer than period: the leader's
// deadline allows only a bounded slack past it.
func jitter(period time.Duration) time.Duration {
	return period - time.Duration(rand.Int64N(int64(period)*15/100+1))
}

// heartbeatCallTimeout bounds one heartbeat call: two periods, but never
// under minHeartbeatCall nor over heartbeatTimeout. The cap lets an agent
// whose connection to a manager hangs (packets lost) give up on it and
// reach a new leader within the grace that leader gives every node at the
// start of its term (the chaos bed found a worker marked Down when one hung
// 3 s call used up a 3 s grace at a 500 ms period). The floor keeps a
// loaded host's slow but live calls: at short periods (tests run at 100-250
// ms) two periods cut calls that a busy manager answers in under a second,
// which then count as missed heartbeats.
func heartbeatCallTimeout(period time.Duration) time.Duration {
	return min(heartbeatTimeout, max(2*period, minHeartbeatCall))
}

// minHeartbeatCall is heartbeatCallTimeout's floor: half the new leader's
// grace at the chaos bed's 500 ms period.
const minHeartbeatCall = 1500 * time.Millisecond

func (a *Agent) heartbeat(ctx context.Context, addr string, timeout time.Duration) (*swarmpb.HeartbeatResponse, string, error) {
	conn, err := a.leaders.conn(addr)
	if err != nil {
		return nil, "", err
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var trailer metadata.MD
	desc := a.desc.toSend(a.tasks.describe(), addr, time.Now())
	resp, err := swarmpb.NewDispatcherClient(conn).Heartbeat(hctx,
		&swarmpb.HeartbeatRequest{Description: desc, Addr: a.cfg.AdvertiseAddr}, grpc.Trailer(&trailer))
	if err != nil {
		a.desc.failed()
		return nil, leaderHint(trailer), err
	}
	a.desc.answered(desc, addr, resp.DescriptionCurrent, time.Now())
	return resp, "", nil
}

func leaderHint(md metadata.MD) string {
	if v := md.Get(LeaderAddrKey); len(v) > 0 {
		return v[0]
	}
	return ""
}

var errAgentStopped = errors.New("agent stopping")
