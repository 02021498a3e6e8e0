package node

import (
	"context"
	"github.com/raftswarm/raftswarm/internal/clock"
	"os"
	"slices"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The node is what the agent asks for connections, role changes and the
// recording of the manager list.
var (
	_ agent.ConnSource      = (*dial.Pool)(nil)
	_ agent.RoleReconciler  = (*Node)(nil)
	_ agent.ManagerRecorder = (*Node)(nil)
)

// agentRun is one running agent.
type agentRun struct {
	agent  *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// startAgent starts the agent (package agent): heartbeats, the task
// session with the node's worker, the routing mesh and log publishing.
// The node answers its role changes (ReconcileRole) and records the
// manager list it learns (RecordManagers).
func (n *Node) startAgent() {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	m, pool := n.member, n.pool
	cfg := agent.Config{
		NodeID: m.NodeID, AdvertiseAddr: m.AdvertiseAddr, Managers: slices.Clone(m.Managers),
		Hostname: n.cfg.Hostname, IngressAddr: n.cfg.IngressAddr, Executor: n.trackExecutor(n.cfg.Executor),
		Roles: n, Recorder: n, Logger: n.log, FetchImage: n.cfg.FetchImage, DataPort: n.cfg.DataPort,
		MeshPath: n.cfg.MeshPath,
	}
	n.dataPlaneConfig(&cfg)
	n.mu.Unlock()
	if pool != nil { // it is set before the agent starts, and closed after it stops
		cfg.Conns = pool
	}
	a := agent.New(cfg)
	run := &agentRun{agent: a, cancel: cancel, done: make(chan struct{})}
	n.mu.Lock()
	n.agent = run
	n.mu.Unlock()
	go func() {
		defer close(run.done)
		a.Run(ctx)
	}()
}

func (n *Node) stopAgent() {
	n.mu.Lock()
	a := n.agent
	n.agent = nil
	n.exec = nil
	n.mu.Unlock()
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// RecordManagers implements agent.ManagerRecorder: the manager list goes
// to node.json, so a restart starts from it.
func (n *Node) RecordManagers(managers []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.member == nil {
		return
	}
	n.member.Managers = slices.Clone(managers)
	if err := n.member.save(n.cfg.StateDir); err != nil {
		n.log.Warn("saving the manager list failed", "err", err)
	}
}

// ReconcileRole implements agent.RoleReconciler. The agent calls it on a
// goroutine of its own, never inside the heartbeat loop: a promotion waits
// for the leader to reach this node over Raft (up to its join wait), and a
// node whose heartbeats stopped that long would be marked Down. Role
// changes and renewals take opMu with TryLock, so one runs at a time and
// none waits behind init, leave or stop.
func (n *Node) ReconcileRole(ctx context.Context, as agent.Assignment) {
	n.reconcileRole(ctx, as)
	n.renewIfExpiring(ctx, as)
}

// reconcileRole promotes or demotes this node live. Promotion: renew the
// certificate (the CA now signs a manager one), start the manager and
// join Raft. Demotion waits until the leader has taken the node out of
// Raft and recorded it as a worker, so quorum never depends on a manager
// that already stopped; then it stops the manager, deletes the Raft state
// and renews the certificate as a worker.
func (n *Node) reconcileRole(ctx context.Context, resp agent.Assignment) {
	if !n.opMu.TryLock() {
		return // init/leave/stop in progress; the next heartbeat retries
	}
	defer n.opMu.Unlock()
	n.mu.Lock()
	member := n.member
	running := n.mgr != nil
	n.mu.Unlock()
	if member == nil {
		return
	}
	switch {
	case resp.DesiredRole == swarmpb.NodeRole_NODE_ROLE_MANAGER && !running:
		if err := n.promote(ctx, resp.Managers); err != nil {
			n.log.Warn("promotion to manager failed; retrying on the next heartbeat", "err", err)
		}
	case resp.DesiredRole == swarmpb.NodeRole_NODE_ROLE_WORKER && running && resp.Role == swarmpb.NodeRole_NODE_ROLE_WORKER:
		if err := n.demote(ctx, resp.Managers); err != nil {
			n.log.Warn("demotion failed; retrying on the next heartbeat", "err", err)
		}
	case resp.DesiredRole == swarmpb.NodeRole_NODE_ROLE_WORKER && !running:
		// A demotion whose certificate renewal failed earlier.
		if err := n.renewCert(ctx, resp.Managers, swarmpb.NodeRole_NODE_ROLE_WORKER); err != nil {
			n.log.Warn("renewing the worker certificate failed; retrying", "err", err)
		}
	}
}

func (n *Node) renewCert(ctx context.Context, managers []string, want swarmpb.NodeRole) error {
	n.mu.Lock()
	creds, pool := n.creds, n.pool
	n.mu.Unlock()
	if creds.Identity().Role == want && !expiring(creds.Leaf().NotBefore, creds.Leaf().NotAfter, clock.Now()) {
		return nil
	}
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		return err
	}
	var lastErr error
	for _, addr := range managers {
		conn, err := pool.Conn(addr)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := swarmpb.NewCAClient(conn).RenewNodeCertificate(rctx, &swarmpb.RenewNodeCertificateRequest{CsrPem: csrPEM})
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if resp.Role != want {
			return status.Errorf(codes.FailedPrecondition, "the cluster issued a %s certificate, wanted %s", resp.Role, want)
		}
		if err := creds.Update(resp.CertPem, keyPEM); err != nil {
			return err
		}
		pool.Reset()
		return n.saveCreds(creds)
	}
	return lastErr
}

func (n *Node) promote(ctx context.Context, managers []string) error {
	if err := n.renewCert(ctx, managers, swarmpb.NodeRole_NODE_ROLE_MANAGER); err != nil {
		return err
	}
	_ = os.RemoveAll(n.raftDir())
	mgr, err := n.startManager()
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := mgr.JoinRaft(jctx, managers); err != nil {
		n.stopManager()
		return err
	}
	n.mu.Lock()
	n.member.Role = swarmpb.NodeRole_NODE_ROLE_MANAGER
	err = n.member.save(n.cfg.StateDir)
	n.mu.Unlock()
	n.log.Info("promoted to manager")
	return err
}

func (n *Node) demote(ctx context.Context, managers []string) error {
	n.mu.Lock()
	self := n.member.AdvertiseAddr
	n.mu.Unlock()
	others := slices.DeleteFunc(slices.Clone(managers), func(a string) bool { return a == self })
	n.stopManager()
	n.unsealNodeKey()
	if err := os.RemoveAll(n.raftDir()); err != nil {
		return err
	}
	n.mu.Lock()
	n.member.Role = swarmpb.NodeRole_NODE_ROLE_WORKER
	n.member.Managers = others
	err := n.member.save(n.cfg.StateDir)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	n.log.Info("demoted to worker")
	return n.renewCert(ctx, others, swarmpb.NodeRole_NODE_ROLE_WORKER)
}

// expiring reports a certificate in the last third of its validity: time
// to renew it, with weeks to spare if managers are unreachable for a while.
func expiring(notBefore, notAfter, now time.Time) bool {
	return now.After(notAfter.Add(-notAfter.Sub(notBefore) / 3))
}

// renewIfExpiring renews the node's certificate, in its current role,
// before it expires; without this a node would drop out of the cluster
// when its 90-day certificate ran out.
func (n *Node) renewIfExpiring(ctx context.Context, resp agent.Assignment) {
	n.mu.Lock()
	creds := n.creds
	n.mu.Unlock()
	if creds == nil || !expiring(creds.Leaf().NotBefore, creds.Leaf().NotAfter, clock.Now()) {
		return
	}
	if !n.opMu.TryLock() {
		return // a role change or leave is under way; the next heartbeat retries
	}
	defer n.opMu.Unlock()
	if err := n.renewCert(ctx, resp.Managers, creds.Identity().Role); err != nil {
		n.log.Warn("renewing the node certificate failed; retrying on the next heartbeat", "err", err, "expires", creds.Leaf().NotAfter)
		return
	}
	n.log.Info("node certificate renewed")
}
