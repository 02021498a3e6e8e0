package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/docker"
	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/dashboard"
	"github.com/raftswarm/raftswarm/internal/dial"
	"github.com/raftswarm/raftswarm/internal/metrics"
	"github.com/raftswarm/raftswarm/manager"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"google.golang.org/grpc"
)

// Config configures a node.
type Config struct {
	StateDir    string
	SocketPath  string
	Hostname    string
	DockerHost  string
	IngressAddr string
	// MeshPath: agent.MeshPathAuto forwards published TCP ports in the
	// kernel where it may; "" or agent.MeshPathUserspace never does (the
	// in-process test clusters).
	MeshPath string
	Logger   *slog.Logger
	// Timings are the Raft timings; raft.DefaultTimings() if zero.
	Timings raft.Timings
	// HeartbeatPeriod is the agents' base heartbeat period.
	HeartbeatPeriod time.Duration
	// PullStallTimeout fails a task whose image pull makes no progress
	// for this long (docker.DefaultPullStallTimeout if zero).
	PullStallTimeout time.Duration
	// NoSync skips fsync of the Raft log (tests only).
	NoSync bool
	// PlaintextRaft writes the Raft log and snapshots unencrypted; only for
	// benchmarks that measure what encryption at rest costs.
	PlaintextRaft bool
	// LeaderWork is passed to the manager (orchestrator, scheduler, ...).
	LeaderWork []func(ctx context.Context, m *manager.Manager) error
	// DataPort is the TCP port of the service-discovery data path (node to
	// node tunnels, on the advertised host); 0: none (this node's tasks
	// are then reachable only from this node).
	DataPort int
	// Executor creates the container engine the agent runs tasks on, once
	// the node ID is known; a docker executor on DockerHost publishing
	// task ports on IngressAddr if nil.
	Executor func(nodeID string) (exec.Executor, error)
	// MetricsAddr, when set, is the HOST:PORT of the HTTP server of
	// /metrics, /healthz and /readyz (--metrics-addr).
	MetricsAddr string
	// Debug also serves pprof on MetricsAddr (--debug).
	Debug bool
	// Metrics is the node's registry; New creates one when nil and
	// MetricsAddr is set. Nil: no metrics are recorded.
	Metrics *metrics.Registry
	// FetchImage gets images from other nodes over the data path; nil
	// leaves it to the agent's data plane (tests set their own).
	FetchImage agent.FetchImageFunc
	// DashboardAddr, when set, serves the read-only web dashboard there
	// (HOST:PORT; HTTPS and a login token unless loopback) while this node
	// runs a manager.
	DashboardAddr string
}

// Node is one raftswarm daemon.
type Node struct {
	cfg Config
	log *slog.Logger

	opMu sync.Mutex // serialises init, join, leave, promote, demote, stop

	mu     sync.Mutex
	member *Membership
	creds  *ca.Creds
	pool   *dial.Pool
	mgr    *manager.Manager
	agent  *agentRun
	exec   exec.Executor // the agent's engine, for LocalImage (images.go)

	sock    net.Listener
	sockSrv *grpc.Server
	dash    *dashboard.Server // nil without --dashboard-addr

	metricsSrv *metrics.Server // nil without MetricsAddr

	// Encryption at rest and autolock (lock.go); under mu except dekMu.
	locked  bool   // a manager waiting for 'swarmctl swarm unlock'
	kek     []byte // the last key-encrypting key known to unwrap the DEK
	curDEK  []byte // the running manager's data key
	dekStop chan struct{}
	dekDone chan struct{}
	dekMu   sync.Mutex // serialises writes of the DEK file
}

// New prepares a node; Start brings it up.
func New(cfg Config) (*Node, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("--state-dir is required")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("read hostname: %w (set --hostname)", err)
		}
		cfg.Hostname = h
	}
	// The managers refuse a hostname out of bounds at join and in every
	// heartbeat; say so here first.
	if err := spec.ValidateHostname(cfg.Hostname); err != nil {
		return nil, fmt.Errorf("%w (set --hostname)", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Executor == nil {
		host := cfg.DockerHost
		cfg.Executor = func(nodeID string) (exec.Executor, error) {
			e, err := docker.NewWithOptions(host, nodeID, docker.Options{IngressIP: cfg.IngressAddr, DataDir: filepath.Join(cfg.StateDir, "taskdata"),
				PullStallTimeout: cfg.PullStallTimeout})
			if err != nil {
				return nil, err
			}
			return e, nil
		}
	}
	if cfg.Timings.HeartbeatTimeout == 0 {
		cfg.Timings = raft.DefaultTimings()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if err := fixModes(cfg.StateDir); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil && cfg.MetricsAddr != "" {
		cfg.Metrics = metrics.New()
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	n.registerMetrics()
	return n, nil
}

func (n *Node) certDir() string { return filepath.Join(n.cfg.StateDir, "certs") }
func (n *Node) raftDir() string { return filepath.Join(n.cfg.StateDir, "raft") }

// Start serves the local socket and, when the state dir holds a
// membership, rejoins the cluster with it.
func (n *Node) Start(ctx context.Context) error {
	m, err := loadMembership(n.cfg.StateDir)
	if err != nil {
		return err
	}
	if err := n.serveMetrics(); err != nil {
		return err
	}
	if err := n.startDashboard(); err != nil {
		n.stopMetrics()
		return err
	}
	if m != nil {
		if err := n.resume(ctx, m); err != nil {
			n.stopDashboard()
			n.stopMetrics()
			return fmt.Errorf("rejoin cluster from %s: %w", n.cfg.StateDir, err)
		}
	}
	if n.cfg.SocketPath != "" {
		if err := n.serveSocket(); err != nil {
			n.Stop()
			return err
		}
	}
	return nil
}

// Run starts the node and blocks until ctx ends, then stops it.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	n.Stop()
	return nil
}

// resume brings up a node that was in a cluster before a restart; a
// locked one (autolock) waits for Unlock.
func (n *Node) resume(ctx context.Context, m *Membership) error {
	locked, err := n.isLocked(m)
	if err != nil {
		return err
	}
	if locked {
		n.mu.Lock()
		n.member, n.locked = m, true
		n.mu.Unlock()
		n.log.Warn("this manager is locked (autolock): run 'swarmctl swarm unlock' with the unlock key", "node", m.NodeID)
		return nil
	}
	return n.resumeUnlocked(ctx, m)
}

// resumeUnlocked loads the credentials (opening a sealed key with the
// known KEK) and starts the manager, if any, and the agent.
func (n *Node) resumeUnlocked(ctx context.Context, m *Membership) error {
	n.mu.Lock()
	kek := n.kek
	n.mu.Unlock()
	creds, err := n.loadCreds(kek)
	if err != nil {
		return fmt.Errorf("load certificates: %w", err)
	}
	n.mu.Lock()
	n.member, n.creds, n.pool = m, creds, dial.NewPoolFrom(creds, dial.SourceIP(m.AdvertiseAddr))
	n.mu.Unlock()
	if creds.Identity().Role == swarmpb.NodeRole_NODE_ROLE_MANAGER && m.manager() {
		if err := n.resumeManager(ctx, m); err != nil {
			return err
		}
	} else if nodeKeySealed(n.keyPath()) {
		n.unsealNodeKey() // stopped while being demoted
	}
	n.startAgent()
	n.log.Info("rejoined cluster", "node", m.NodeID, "role", m.Role.String())
	return nil
}

// resumeManager starts the manager of a node that was a manager before a
// restart, on its Raft state.
func (n *Node) resumeManager(ctx context.Context, m *Membership) error {
	hasState, err := raft.HasState(n.raftDir())
	if err != nil {
		return err
	}
	mgr, err := n.startManager()
	if err != nil {
		return err
	}
	if !hasState {
		// Crashed between certificate renewal and joining Raft.
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := mgr.JoinRaft(jctx, m.Managers); err != nil {
			n.log.Warn("joining raft after restart failed; the agent retries", "err", err)
		}
	}
	return nil
}

func (n *Node) startManager() (*manager.Manager, error) {
	n.mu.Lock()
	m, creds, pool := n.member, n.creds, n.pool
	n.mu.Unlock()
	dek, err := n.dataKey()
	if errors.Is(err, errNeedsUnlock) {
		return nil, errLocked
	}
	if err != nil {
		return nil, err
	}
	if n.cfg.PlaintextRaft {
		dek = nil
	}
	mgr, err := manager.New(manager.Config{
		NodeID: m.NodeID, ListenAddr: m.ListenAddr, AdvertiseAddr: m.AdvertiseAddr,
		RaftDir: n.raftDir(), Creds: creds, Pool: pool, Timings: n.cfg.Timings,
		HeartbeatPeriod: n.cfg.HeartbeatPeriod, Logger: n.log, NoSync: n.cfg.NoSync,
		LeaderWork: n.cfg.LeaderWork, DEK: dek, Metrics: n.cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.mgr = mgr
	n.mu.Unlock()
	n.startKeySync(mgr.Store(), dek)
	n.dashboardSource(mgr, m.NodeID)
	return mgr, nil
}

func (n *Node) stopManager() {
	n.stopKeySync()
	n.dashboardSource(nil, "")
	n.mu.Lock()
	mgr := n.mgr
	n.mgr = nil
	n.mu.Unlock()
	if mgr != nil {
		if err := mgr.Stop(); err != nil {
			n.log.Warn("stopping manager", "err", err)
		}
	}
}

// Manager returns the running manager, or nil on a worker.
func (n *Node) Manager() *manager.Manager {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mgr
}

// NodeID returns the node's ID, "" before init or join.
func (n *Node) NodeID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.member == nil {
		return ""
	}
	return n.member.NodeID
}

// RouteControl implements api.Router for the local socket.
func (n *Node) RouteControl(ctx context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error) {
	n.mu.Lock()
	member, mgr, locked := n.member, n.mgr, n.locked
	n.mu.Unlock()
	switch {
	case member == nil:
		return nil, nil, api.ErrNotInCluster
	case locked:
		return nil, nil, errLocked
	case mgr == nil:
		return nil, nil, api.ErrNotManager
	}
	return mgr.RouteControl(ctx)
}

// LocalControl implements api.LocalControl: this node's manager's control
// server, for calls any manager answers itself (WatchEvents); nil when it
// runs none, is locked or is not in a cluster.
func (n *Node) LocalControl() swarmpb.ControlServer {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.member == nil || n.locked || n.mgr == nil {
		return nil
	}
	return n.mgr.Control()
}

// LeaderChanged implements api.LeaderWatcher for the local socket; nil
// (never ready) when this node runs no manager.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.mu.Lock()
	mgr := n.mgr
	n.mu.Unlock()
	if mgr == nil {
		return nil
	}
	return mgr.LeaderChanged()
}

// Stop stops the agent, the manager and the socket; state stays on disk.
func (n *Node) Stop() {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.stopAgent()
	n.stopManager()
	n.mu.Lock()
	pool := n.pool
	n.pool = nil
	n.mu.Unlock()
	if pool != nil {
		pool.Close()
	}
	if n.sockSrv != nil {
		n.sockSrv.Stop()
		n.sockSrv = nil
	}
	n.stopDashboard()
	n.stopMetrics()
}

func (n *Node) serveSocket() error {
	path := n.cfg.SocketPath
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket %s is in use: another daemon is running with it", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	n.sock = ln
	n.sockSrv = grpc.NewServer(n.cfg.Metrics.GRPCServerOptions(metrics.ListenerSocket)...)
	swarmpb.RegisterLocalServer(n.sockSrv, &localServer{n: n})
	swarmpb.RegisterControlServer(n.sockSrv, &api.ControlProxy{Router: n, Images: n})
	srv := n.sockSrv
	go func() {
		// Stop makes Serve return nil; any error is the socket failing.
		if err := srv.Serve(ln); err != nil {
			n.log.Error("local socket server stopped: swarmctl cannot reach this daemon", "socket", path, "err", err)
		}
	}()
	return nil
}
