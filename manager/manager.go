package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	"github.com/raftswarm/raftswarm/internal/metrics"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/orchestrator"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	schedloop "github.com/raftswarm/raftswarm/scheduler/loop"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/events"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Config configures a Manager.
type Config struct {
	NodeID        string
	ListenAddr    string // host:port to bind
	AdvertiseAddr string // host:port other nodes dial
	RaftDir       string
	Creds         *ca.Creds
	Pool          *dial.Pool
	Timings       raft.Timings
	// HeartbeatPeriod is the agents' base heartbeat period.
	HeartbeatPeriod time.Duration
	Logger          *slog.Logger
	NoSync          bool
	// DEK seals the Raft log and snapshots on disk (raft.Config.DEK).
	DEK []byte
	// LeaderWork, when set, runs extra leader-only components for a term
	// (orchestrator, scheduler, ...). It must return when ctx ends.
	LeaderWork []func(ctx context.Context, m *Manager) error
	// Metrics records the gRPC server's calls and the leader components'
	// failures; nil records nothing.
	Metrics *metrics.Registry
}

// Manager is a running manager.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	store      *state.Store
	raft       *raft.Node
	ln         net.Listener
	grpc       *grpc.Server
	stream     *raft.StreamLayer
	control    *api.ControlServer
	dispatcher *api.Dispatcher
	authz      *api.Authorizer
	health     *health.Server
	events     *events.Journal

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New binds the manager's port and starts Raft on cfg.RaftDir (which may
// be empty: the caller then bootstraps or joins).
func New(cfg Config) (*Manager, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("invalid advertise address %q: %w", cfg.AdvertiseAddr, err)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", cfg.ListenAddr, err)
	}
	m := &Manager{cfg: cfg, log: log, store: state.New(), ln: ln, stop: make(chan struct{})}
	// The journal watches the store before Raft replays anything, so it
	// holds every event this replica applies from now on.
	m.events = events.New(m.store, events.Config{})
	m.stream = raft.NewStreamLayer(adv, func() *tls.Config { return cfg.Creds.ClientTLSConfig(ca.ALPNRaft) })
	m.raft, err = raft.Open(raft.Config{
		NodeID: cfg.NodeID, Addr: cfg.AdvertiseAddr, Dir: cfg.RaftDir, Stream: m.stream,
		Store: m.store, Forwarder: forwarder{cfg.Pool}, Pinger: cfg.Pool, Prober: forwarder{cfg.Pool},
		Timings: cfg.Timings, Logger: log, NoSync: cfg.NoSync, DEK: cfg.DEK,
	})
	if err != nil {
		m.events.Close()
		ln.Close()
		return nil, err
	}
	m.control = &api.ControlServer{Store: m.store, Raft: m.raft, Events: m.events}
	m.dispatcher = &api.Dispatcher{Store: m.store, Raft: m.raft, Period: cfg.HeartbeatPeriod, Logger: log}
	m.control.Logs = m.dispatcher
	m.control.Volumes = m.dispatcher
	m.authz = api.NewAuthorizer(m.store, m.raft, cfg.Creds.Identity().ClusterID)
	// The metrics interceptors come first, so calls the authorization
	// interceptors refuse are counted too.
	opts := append(cfg.Metrics.GRPCServerOptions(metrics.ListenerCluster), api.ServerOptions(m.authz)...)
	m.grpc = grpc.NewServer(append(opts, grpc.Creds(ca.AlreadyTLS()))...)
	swarmpb.RegisterCAServer(m.grpc, &api.CAServer{Store: m.store, Raft: m.raft, Dialer: cfg.Pool})
	swarmpb.RegisterRaftMembershipServer(m.grpc, &api.RaftServer{NodeID: cfg.NodeID, Store: m.store, Raft: m.raft, Dialer: cfg.Pool})
	swarmpb.RegisterDispatcherServer(m.grpc, m.dispatcher)
	swarmpb.RegisterControlServer(m.grpc, m.control)
	m.health = health.NewServer()
	healthpb.RegisterHealthServer(m.grpc, m.health)

	gl := newConnListener(ln.Addr())
	mx := &mux{ln: ln, tlsCfg: cfg.Creds.ServerTLSConfig(), raft: m.stream, grpc: gl, authz: m.authz, log: log, limits: defaultHandshakeLimits()}
	actx, acancel := context.WithCancel(context.Background())
	m.wg.Add(6)
	go func() { defer m.wg.Done(); m.reportHealth() }()
	go func() { defer m.wg.Done(); <-m.stop; acancel() }()
	go func() { defer m.wg.Done(); _ = m.authz.Run(actx) }()
	go func() { defer m.wg.Done(); mx.serve() }()
	go func() {
		defer m.wg.Done()
		if err := m.grpc.Serve(gl); err != nil && !m.stopping() {
			m.log.Error("manager gRPC server stopped", "err", err)
		}
	}()
	go func() { defer m.wg.Done(); m.leaderLoop() }()
	return m, nil
}

// stopping reports whether Stop has been called.
func (m *Manager) stopping() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

// Store is the manager's replicated state.
func (m *Manager) Store() *state.Store { return m.store }

// Events is the manager's event journal ('swarmctl events', the dashboard).
func (m *Manager) Events() *events.Journal { return m.events }

// Raft is the manager's Raft node.
func (m *Manager) Raft() *raft.Node { return m.raft }

// desiredPatchesReadable reports whether every Raft member applies task
// desired-state patches (store-batch payload version 3): until then, as in
// a rolling upgrade, the orchestrator writes whole tasks.
func (m *Manager) desiredPatchesReadable() bool {
	return raft.ConfigurationReads(m.raft, m.store, raft.BatchVersionDesiredPatch)
}

// Control is the leader-local control server.
func (m *Manager) Control() *api.ControlServer { return m.control }

// Addr is the bound address (useful with port 0).
func (m *Manager) Addr() string { return m.ln.Addr().String() }

// Bootstrap starts a new cluster with this manager as its only member and
// writes the initial objects.
func (m *Manager) Bootstrap(ctx context.Context, objs ...*swarmpb.StoreAction) error {
	if err := m.raft.BootstrapSelf(); err != nil {
		return err
	}
	if err := m.WaitLeader(ctx); err != nil {
		return err
	}
	if _, err := m.raft.Apply(ctx, state.Batch(objs...)); err != nil {
		return fmt.Errorf("write initial cluster state: %w", err)
	}
	return nil
}

// WaitLeader waits until this manager leads with its term barrier applied.
func (m *Manager) WaitLeader(ctx context.Context) error {
	for {
		leader, ch := m.raft.Leadership()
		if leader {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting to become leader: %w", ctx.Err())
		}
	}
}

// JoinRaft asks the cluster (through any of managers) to add this manager
// as a voter, then waits until this replica has caught up with the cluster
// object.
func (m *Manager) JoinRaft(ctx context.Context, managers []string) error {
	// Joining is idempotent (the leader re-adds a voter it already has), so
	// transient failures, such as a leader change during the join, are
	// retried over every known manager until ctx ends.
	var lastErr error
	for round := 0; ; round++ {
		for _, addr := range managers {
			if addr == m.cfg.AdvertiseAddr {
				continue
			}
			conn, err := m.cfg.Pool.Conn(addr)
			if err != nil {
				lastErr = err
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err = swarmpb.NewRaftMembershipClient(conn).Join(cctx, &swarmpb.RaftJoinRequest{Addr: m.cfg.AdvertiseAddr})
			cancel()
			if err != nil {
				lastErr = fmt.Errorf("join raft via %s: %w", addr, err)
				if final(err) {
					return err
				}
				continue
			}
			return m.waitReplica(ctx)
		}
		if lastErr == nil {
			return errors.New("no manager address known")
		}
		if !retry.Sleep(ctx, time.Duration(200*(round+1))*time.Millisecond) {
			return lastErr
		}
	}
}

// final reports a join error that trying again cannot fix: the cluster
// refused this manager, or the leader could not reach it over Raft (the
// leader has undone the addition; the error names the address).
func final(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return true
	case codes.FailedPrecondition:
		return !errors.Is(api.FromStatus(err), raft.ErrNotLeader)
	}
	return false
}

// waitReplica waits until the local store holds the cluster object.
func (m *Manager) waitReplica(ctx context.Context) error {
	events, cancel := m.store.ViewAndWatch(func(state.ReadTx) {})
	defer cancel()
	for {
		var ok bool
		m.store.View(func(tx state.ReadTx) { ok = tx.Cluster() != nil })
		if ok {
			return nil
		}
		select {
		case _, open := <-events:
			if !open {
				events, cancel = m.store.ViewAndWatch(func(state.ReadTx) {})
				defer cancel()
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for the cluster state to replicate: %w", ctx.Err())
		}
	}
}

// leaderLoop runs the leader-only work for each term this manager leads,
// under one errgroup: when any part fails, the whole term's work stops,
// is logged at Error, and is restarted with backoff if leadership
// continues.
func (m *Manager) leaderLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	runLeaderTerms(leaderTerms{
		leadership: m.raft.LeaderTerm,
		stop:       m.stop,
		work:       m.leaderWork,
		log:        m.log,
		backoff:    retry.NewBackoff(100*time.Millisecond, 10*time.Second),
		restarted:  m.cfg.Metrics.WorkRestarted,
		sleep: func(d time.Duration, wake <-chan struct{}) bool {
			return retry.SleepOrWake(ctx, d, wake)
		},
	})
}

// leaderWork runs one term's leader components until ctx ends or one of
// them fails.
func (m *Manager) leaderWork(ctx context.Context) error {
	// Work restarted within a term plans from a store holding the last
	// write of the work it replaces (raft.Node.Settle).
	if err := m.raft.Settle(ctx); err != nil {
		return fmt.Errorf("leader work waits for this manager's store to catch up with its log: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	// run counts a component's failure (raftswarm_leader_component_failures_total).
	run := func(component string, f func(context.Context) error) {
		g.Go(func() error {
			err := f(gctx)
			// Only the first failure of a term counts: the others return
			// because it cancelled gctx.
			if err != nil && gctx.Err() == nil && !errors.Is(err, context.Canceled) {
				m.cfg.Metrics.ComponentFailed(component)
			}
			return err
		})
	}
	run("dispatcher", m.dispatcher.Run)
	run("role_manager", m.runRoleManager)
	run("orchestrator", func(ctx context.Context) error {
		return orchestrator.RunOrchestratorWith(ctx, m.store, m.raft, m.log, orchestrator.Options{
			Observe: observer(m.cfg.Metrics.Reconcile()), DesiredPatches: m.desiredPatchesReadable})
	})
	run("scheduler", func(ctx context.Context) error {
		return schedloop.RunObserved(ctx, m.store, m.raft, m.log, observer(m.cfg.Metrics.Scheduling()))
	})
	for i, w := range m.cfg.LeaderWork {
		run(fmt.Sprintf("extra_%d", i), func(ctx context.Context) error { return w(ctx, m) })
	}
	return g.Wait()
}

// leaderTerms is what runLeaderTerms needs from a manager; tests fake it.
type leaderTerms struct {
	// leadership is raft.Node.LeaderTerm: the term this manager leads in
	// (0: it does not lead) and a channel closed at the next change.
	leadership func() (uint64, <-chan struct{})
	stop       <-chan struct{}
	// work runs the term's leader work until ctx ends or it fails.
	work func(ctx context.Context) error
	log  *slog.Logger
	// backoff spaces restarts of failed work within a term.
	backoff *retry.Backoff
	// sleep waits d, or until wake or stop; it reports whether d passed.
	sleep func(d time.Duration, wake <-chan struct{}) bool
	// restarted, if set, is called for each restart after a failure.
	restarted func()
}

// errWorkEnded stands for leader work that returned while still leader.
var errWorkEnded = errors.New("leader work returned while this manager still leads")

// runLeaderTerms starts lt.work whenever this manager leads and stops it
// when leadership ends. Work that fails (or returns on its own) while
// leadership continues is logged at Error and restarted after a backoff
// delay, so that a component failing at once does not spin; the delays
// start again from the minimum in each new term, and after a run that
// lasted longer than the maximum delay.
func runLeaderTerms(lt leaderTerms) {
	inTerm := false
	for {
		term, changed := lt.leadership()
		if term == 0 {
			inTerm = false
			select {
			case <-changed:
				continue
			case <-lt.stop:
				return
			}
		}
		if !inTerm {
			lt.backoff.Reset()
			inTerm = true
		}
		// The work's writes are fenced to its term (raft.WithLeaderTerm):
		// work still running after the term ended writes nothing.
		ctx, cancel := context.WithCancel(raft.WithLeaderTerm(context.Background(), term))
		done := make(chan error, 1)
		started := time.Now()
		go func() { done <- lt.work(ctx) }()
		lt.log.Info("leadership acquired: leader work started")
		var failed error
	wait:
		for {
			select {
			case <-changed:
				// Still leader, but in a later term (the end of this one
				// went unnoticed): the work is restarted for the new term.
				if now, ch := lt.leadership(); now == term {
					changed = ch
					continue
				}
				break wait
			case err := <-done:
				failed = err
				if failed == nil {
					failed = errWorkEnded
				}
				done <- err
				break wait
			case <-lt.stop:
				break wait
			}
		}
		cancel()
		if err := <-done; failed == nil && err != nil && !errors.Is(err, context.Canceled) {
			lt.log.Warn("leader work stopped", "err", err)
		}
		lt.log.Info("leader work stopped")
		select {
		case <-lt.stop:
			return
		default:
		}
		if failed == nil {
			continue
		}
		if time.Since(started) > lt.backoff.Max {
			lt.backoff.Reset()
		}
		d := lt.backoff.Next()
		lt.log.Error("leader work failed; restarting it", "in", d, "err", failed)
		if lt.restarted != nil {
			lt.restarted()
		}
		deadline := time.Now().Add(d)
		for {
			// Wait out the delay unless leadership ends or the manager stops.
			now, ch := lt.leadership()
			if now != term || lt.sleep(time.Until(deadline), ch) {
				break
			}
			select {
			case <-lt.stop:
				return
			default:
			}
		}
	}
}

// RouteControl implements api.Router for a manager.
func (m *Manager) RouteControl(ctx context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error) {
	if m.raft.IsLeader() {
		return m.control, nil, nil
	}
	_, addr := m.raft.Leader()
	if addr == "" {
		var err error
		if addr, err = m.raft.WaitLeader(ctx); err != nil {
			return nil, nil, err
		}
		if m.raft.IsLeader() {
			return m.control, nil, nil
		}
	}
	conn, err := m.cfg.Pool.Conn(addr)
	return nil, conn, err
}

// Stop shuts the manager down: gRPC, the port, Raft.
func (m *Manager) Stop() error {
	var err error
	m.stopOnce.Do(func() {
		close(m.stop)
		// Ending the event streams first lets the gRPC server's graceful
		// stop below finish without waiting for them to time out.
		m.events.Close()
		err = m.raft.Shutdown()
		m.stream.Close()
		m.ln.Close()
		stopped := make(chan struct{})
		go func() { m.grpc.GracefulStop(); close(stopped) }()
		t := time.NewTimer(2 * time.Second)
		select {
		case <-stopped:
		case <-t.C:
			m.grpc.Stop()
		}
		t.Stop()
		m.wg.Wait()
	})
	return err
}

// forwarder sends writes to the leader's RaftMembership.Forward.
type forwarder struct{ pool *dial.Pool }

func (f forwarder) Forward(ctx context.Context, addr string, cmd []byte) (uint64, error) {
	conn, err := f.pool.Conn(addr)
	if err != nil {
		return 0, err
	}
	resp, err := swarmpb.NewRaftMembershipClient(conn).Forward(ctx, &swarmpb.ForwardRequest{Command: cmd})
	if err != nil {
		return 0, api.FromStatus(err)
	}
	return resp.Index, nil
}

// RaftLeader implements raft.Prober: it asks the manager at addr which
// leader it last heard from over Raft.
func (f forwarder) RaftLeader(ctx context.Context, addr string) (string, error) {
	conn, err := f.pool.Conn(addr)
	if err != nil {
		return "", err
	}
	resp, err := swarmpb.NewRaftMembershipClient(conn).Ping(ctx, &swarmpb.PingRequest{})
	if err != nil {
		return "", errors.New(status.Convert(err).Message())
	}
	return resp.LeaderAddr, nil
}

// LeaderChanged implements api.LeaderWatcher: the channel closes at the
// next change of the leader this manager knows.
func (m *Manager) LeaderChanged() <-chan struct{} {
	_, ch := m.raft.Leadership()
	return ch
}
