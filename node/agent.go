package node

import (
	"context"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// agentRun is one running agent loop.
type agentRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	tasks  *taskAgent
}

// startAgent starts the heartbeat loop and, beside it, the task session
// loop with the node's worker (agent_tasks.go).
func (n *Node) startAgent() {
	ctx, cancel := context.WithCancel(context.Background())
	n.mu.Lock()
	nodeID := n.member.NodeID
	managers := slices.Clone(n.member.Managers)
	n.mu.Unlock()
	a := &agentRun{cancel: cancel, done: make(chan struct{}), tasks: n.newTaskAgent(ctx, nodeID, managers)}
	n.mu.Lock()
	n.agent = a
	n.mu.Unlock()
	go func() {
		defer close(a.done)
		var wg sync.WaitGroup
		wg.Go(func() { a.tasks.run(ctx) })
		n.runAgent(ctx, a.tasks)
		wg.Wait()
	}()
}

func (n *Node) stopAgent() {
	n.mu.Lock()
	a := n.agent
	n.agent = nil
	n.mu.Unlock()
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// runAgent heartbeats to the leader until ctx ends. It starts from the
// managers it knows, follows a follower's hint to the leader, moves on to
// the next manager when one fails, and acts on the role the cluster wants
// for this node.
func (n *Node) runAgent(ctx context.Context, ta *taskAgent) {
	n.mu.Lock()
	managers := slices.Clone(n.member.Managers)
	adv := n.member.AdvertiseAddr
	n.mu.Unlock()
	current := 0
	backoff := 100 * time.Millisecond
	// period is the last heartbeat period the leader asked for. Retries
	// never wait longer than it: the leader marks a node Down after a few
	// silent periods, so a live agent looking for a new leader must not
	// back off past that.
	period := api.DefaultHeartbeatPeriod
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if len(managers) == 0 {
			n.log.Error("agent knows no manager to talk to")
			return
		}
		addr := managers[current%len(managers)]
		resp, leader, err := n.heartbeat(ctx, addr, adv, ta)
		if err != nil {
			if leader != "" && leader != addr {
				if i := slices.Index(managers, leader); i >= 0 {
					current = i
				} else {
					managers = append(managers, leader)
					current = len(managers) - 1
				}
				continue
			}
			n.log.Debug("heartbeat failed; trying the next manager", "manager", addr, "err", err)
			current++
			if !wait(min(backoff, period)) {
				return
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		// It answered, so it leads: the task session follows.
		ta.leader.set(addr)
		ta.leader.setManagers(resp.Managers)
		if resp.Removed {
			n.log.Warn("this node was removed from the cluster; run 'swarmctl leave' to clear its state")
			return
		}
		if len(resp.Managers) > 0 && !slices.Equal(resp.Managers, managers) {
			managers = slices.Clone(resp.Managers)
			current = 0
			n.rememberManagers(managers)
		}
		n.reconcileRole(ctx, resp)
		n.renewIfExpiring(ctx, resp)
		period = time.Duration(resp.PeriodNs)
		if period <= 0 {
			period = api.DefaultHeartbeatPeriod
		}
		if !wait(period) {
			return
		}
	}
}

func (n *Node) heartbeat(ctx context.Context, addr, adv string, ta *taskAgent) (*swarmpb.HeartbeatResponse, string, error) {
	n.mu.Lock()
	pool := n.pool
	n.mu.Unlock()
	if pool == nil {
		return nil, "", status.Error(codes.Canceled, "node stopping")
	}
	conn, err := pool.Conn(addr)
	if err != nil {
		return nil, "", err
	}
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var trailer metadata.MD
	resp, err := swarmpb.NewDispatcherClient(conn).Heartbeat(hctx,
		&swarmpb.HeartbeatRequest{Description: n.describeWithEngine(ta), Addr: adv}, grpc.Trailer(&trailer))
	if err != nil {
		var leader string
		if v := trailer.Get(api.LeaderAddrKey); len(v) > 0 {
			leader = v[0]
		}
		return nil, leader, err
	}
	return resp, "", nil
}

func (n *Node) rememberManagers(managers []string) {
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

// reconcileRole promotes or demotes this node live. Promotion: renew the
// certificate (the CA now signs a manager one), start the manager and
// join Raft. Demotion waits until the leader has taken the node out of
// Raft and recorded it as a worker, so quorum never depends on a manager
// that already stopped; then it stops the manager, deletes the Raft state
// and renews the certificate as a worker.
func (n *Node) reconcileRole(ctx context.Context, resp *swarmpb.HeartbeatResponse) {
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
	if creds.Identity().Role == want && !expiring(creds.Leaf().NotBefore, creds.Leaf().NotAfter, time.Now()) {
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
func (n *Node) renewIfExpiring(ctx context.Context, resp *swarmpb.HeartbeatResponse) {
	n.mu.Lock()
	creds := n.creds
	n.mu.Unlock()
	if creds == nil || !expiring(creds.Leaf().NotBefore, creds.Leaf().NotAfter, time.Now()) {
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
