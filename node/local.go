package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/raftswarm/raftswarm/agent"
	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	"github.com/raftswarm/raftswarm/internal/identity"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/internal/version"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// localServer serves the Local service on the unix socket.
type localServer struct {
	swarmpb.UnimplementedLocalServer
	n *Node
}

var errInCluster = status.Error(codes.FailedPrecondition, "this node is already part of a swarm: run 'swarmctl leave' first to join another one")

func (s *localServer) Init(ctx context.Context, req *swarmpb.InitRequest) (*swarmpb.InitResponse, error) {
	if req.ForceNewCluster {
		return s.n.forceNewCluster(ctx)
	}
	return s.n.initCluster(ctx, req.AdvertiseAddr, req.ListenAddr, req.Autolock)
}

func (s *localServer) Unlock(ctx context.Context, req *swarmpb.UnlockRequest) (*swarmpb.UnlockResponse, error) {
	if err := s.n.Unlock(ctx, req.UnlockKey); err != nil {
		return nil, err
	}
	return &swarmpb.UnlockResponse{}, nil
}

func (s *localServer) Join(ctx context.Context, req *swarmpb.JoinRequest) (*swarmpb.JoinResponse, error) {
	return s.n.Join(ctx, req.Token, req.RemoteAddr, req.AdvertiseAddr, req.ListenAddr)
}

func (s *localServer) Leave(ctx context.Context, req *swarmpb.LeaveRequest) (*swarmpb.LeaveResponse, error) {
	if err := s.n.Leave(ctx, req.Force); err != nil {
		return nil, err
	}
	return &swarmpb.LeaveResponse{}, nil
}

func (s *localServer) Info(ctx context.Context, req *swarmpb.InfoRequest) (*swarmpb.InfoResponse, error) {
	n := s.n
	var running []string
	var engErr string
	if req.GetEngineTasks() {
		running, engErr = n.engineRunningTasks(ctx)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	v := version.Get()
	if n.member == nil {
		return &swarmpb.InfoResponse{State: "inactive", Version: v.Version, GitCommit: v.Commit, GoVersion: v.GoVersion, ApiVersion: v.API}, nil
	}
	var routes []*swarmpb.ServiceEndpoint
	if n.agent != nil {
		routes = n.agent.agent.RoutingTable()
	}
	st := "active"
	if n.locked {
		st = "locked"
	}
	resp := &swarmpb.InfoResponse{
		NodeId: n.member.NodeID, ClusterId: n.member.ClusterID, Role: n.member.Role,
		State: st, Addr: n.member.AdvertiseAddr, Managers: n.member.Managers,
		EngineHost: engineHost(n.cfg.DockerHost), RoutingTable: routes,
		EngineRunningTasks: running, EngineTasksError: engErr,
		Version: v.Version, GitCommit: v.Commit, GoVersion: v.GoVersion, ApiVersion: v.API,
	}
	if n.mgr != nil {
		// This replica's Raft position, for 'swarmctl info'; no quorum
		// needed, so a manager cut off still tells where it stands.
		r := n.mgr.Raft()
		resp.RaftIndex, resp.RaftTerm = r.AppliedIndex(), r.Term()
		_, resp.RaftLeader = r.Leader()
	}
	return resp, nil
}

// engineRunningTasks lists the tasks whose containers run on the node's
// engine, within 5 s.
func (n *Node) engineRunningTasks(ctx context.Context) ([]string, string) {
	n.mu.Lock()
	e := n.exec
	n.mu.Unlock()
	if e == nil {
		return nil, "the node runs no engine"
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cs, err := e.Containers(cctx)
	if err != nil {
		return nil, err.Error()
	}
	var ids []string
	for _, c := range cs {
		if c.Running {
			ids = append(ids, c.TaskID)
		}
	}
	return ids, ""
}

// engineHost is the Docker Engine address the executor uses: the
// --docker-host flag, else the daemon's $DOCKER_HOST, else "" (the local
// socket).
func engineHost(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("DOCKER_HOST")
}

func invalid(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

// Init creates a new cluster with this node as its only manager.
func (n *Node) Init(ctx context.Context, advertise, listen string) (*swarmpb.InitResponse, error) {
	return n.initCluster(ctx, advertise, listen, false)
}

// initCluster is Init, with autolock on from the start when asked.
func (n *Node) initCluster(ctx context.Context, advertise, listen string, autolock bool) (*swarmpb.InitResponse, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if n.Locked() {
		return nil, errLocked
	}
	if n.NodeID() != "" {
		return nil, errInCluster
	}
	adv, err := normalizeAddr("--advertise-addr", advertise)
	if err != nil {
		return nil, invalid(err)
	}
	if listen == "" {
		listen = defaultListen(adv)
	} else if listen, err = normalizeAddr("--listen-addr", listen); err != nil {
		return nil, invalid(err)
	}
	root, err := ca.NewRootCA()
	if err != nil {
		return nil, err
	}
	digest, err := ca.Digest(root.CertPEM)
	if err != nil {
		return nil, err
	}
	workerTok, err := ca.GenerateJoinToken(root.CertPEM)
	if err != nil {
		return nil, err
	}
	managerTok, err := ca.GenerateJoinToken(root.CertPEM)
	if err != nil {
		return nil, err
	}
	clusterID, nodeID := identity.NewID(), identity.NewID()
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		return nil, err
	}
	certPEM, err := root.IssueNodeCert(csrPEM, nodeID, clusterID, swarmpb.NodeRole_NODE_ROLE_MANAGER)
	if err != nil {
		return nil, err
	}
	creds, err := ca.NewCreds(root.CertPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	m := &Membership{NodeID: nodeID, ClusterID: clusterID, Role: swarmpb.NodeRole_NODE_ROLE_MANAGER,
		AdvertiseAddr: adv, ListenAddr: listen, Managers: []string{adv}}
	ok := false
	defer func() {
		if !ok {
			n.reset()
		}
	}()
	if err := creds.Save(n.certDir()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.member, n.creds, n.pool = m, creds, dial.NewPoolFrom(creds, dial.SourceIP(adv))
	n.mu.Unlock()
	mgr, err := n.startManager()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	cluster := &swarmpb.Cluster{
		Id: clusterID, Name: "default",
		RootCa:     &swarmpb.RootCA{CertPem: root.CertPEM, KeyPem: root.KeyPEM, Digest: digest},
		JoinTokens: &swarmpb.JoinTokens{Worker: workerTok, Manager: managerTok},
		Settings:   &swarmpb.ClusterSettings{TaskHistoryLimit: 5, Autolock: autolock},
	}
	if autolock {
		if cluster.UnlockKey, err = raft.NewKey(); err != nil {
			return nil, err
		}
	}
	self := &swarmpb.Node{
		Id:          nodeID,
		Spec:        &swarmpb.NodeSpec{DesiredRole: swarmpb.NodeRole_NODE_ROLE_MANAGER},
		Description: agent.Describe(n.cfg.Hostname),
		Role:        swarmpb.NodeRole_NODE_ROLE_MANAGER,
		Status:      swarmpb.NodeStatus_NODE_STATUS_READY,
		Addr:        adv,
	}
	bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := mgr.Bootstrap(bctx, state.Create(cluster), state.Create(self)); err != nil {
		return nil, err
	}
	// Wrap the data key now rather than when the key sync sees the
	// cluster object: the unlock key is printed only once it works.
	n.syncKeys(cluster)
	if err := m.save(n.cfg.StateDir); err != nil {
		return nil, err
	}
	ok = true
	n.startAgent()
	n.log.Info("cluster initialized", "cluster", clusterID, "node", nodeID, "addr", adv)
	return &swarmpb.InitResponse{NodeId: nodeID, WorkerToken: workerTok, ManagerAddr: adv, UnlockKey: raft.FormatUnlockKey(cluster.UnlockKey)}, nil
}

// reset stops whatever a failed init or join started and removes its state,
// so that nothing is left half-done.
func (n *Node) reset() {
	n.stopAgent()
	n.stopManager()
	n.mu.Lock()
	pool := n.pool
	n.member, n.creds, n.pool = nil, nil, nil
	n.locked, n.kek = false, nil
	n.mu.Unlock()
	if pool != nil {
		pool.Close()
	}
	_ = os.RemoveAll(n.certDir())
	_ = os.RemoveAll(n.raftDir())
	_ = os.Remove(n.cfg.StateDir + "/" + membershipFile)
}

// Join exchanges a join token for a certificate from the manager at
// remote, after checking the manager's root CA against the token, and
// starts this node in the role the token grants.
func (n *Node) Join(ctx context.Context, token, remote, advertise, listen string) (*swarmpb.JoinResponse, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if n.Locked() {
		return nil, errLocked
	}
	if n.NodeID() != "" {
		return nil, errInCluster
	}
	tok, err := ca.ParseJoinToken(token)
	if err != nil {
		return nil, invalid(err)
	}
	remote, err = normalizeAddr("manager address", remote)
	if err != nil {
		return nil, invalid(err)
	}
	if advertise == "" {
		if listen != "" {
			advertise = listen
		} else if advertise, err = localAddrToward(remote); err != nil {
			return nil, invalid(fmt.Errorf("cannot work out this node's address; pass --advertise-addr: %v", err))
		}
	}
	adv, err := normalizeAddr("--advertise-addr", advertise)
	if err != nil {
		return nil, invalid(err)
	}
	if listen == "" {
		listen = defaultListen(adv)
	} else if listen, err = normalizeAddr("--listen-addr", listen); err != nil {
		return nil, invalid(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rootPEM, err := fetchRootCA(cctx, remote, adv)
	if err != nil {
		return nil, err
	}
	if err := ca.CheckDigest(rootPEM, tok.Digest); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	creds, resp, err := n.requestCert(cctx, remote, rootPEM, token, adv)
	if err != nil {
		return nil, err
	}
	managers := resp.Managers
	if len(managers) == 0 {
		managers = []string{remote}
	}
	m := &Membership{NodeID: resp.NodeId, ClusterID: resp.ClusterId, Role: resp.Role,
		AdvertiseAddr: adv, ListenAddr: listen, Managers: managers}
	ok := false
	defer func() {
		if !ok {
			n.reset()
		}
	}()
	if err := creds.Save(n.certDir()); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.member, n.creds, n.pool = m, creds, dial.NewPoolFrom(creds, dial.SourceIP(adv))
	n.mu.Unlock()
	if m.manager() {
		mgr, err := n.startManager()
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := mgr.JoinRaft(jctx, managers); err != nil {
			return nil, err
		}
	}
	if err := m.save(n.cfg.StateDir); err != nil {
		return nil, err
	}
	ok = true
	n.startAgent()
	n.log.Info("joined cluster", "node", m.NodeID, "role", m.Role.String())
	return &swarmpb.JoinResponse{NodeId: m.NodeID, Role: m.Role}, nil
}

func unreachable(addr string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded {
		return err
	}
	return status.Errorf(codes.Unavailable, "cannot reach a manager at %s: %v", addr, errMessage(err))
}

func errMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// fetchRootCA reads the manager's root certificate over an unverified TLS
// connection; the caller trusts it only after checking the token's digest.
// Like every connection to a manager, it is made from the node's own
// address (adv) when several nodes share a host (see dial.SourceIP).
func fetchRootCA(ctx context.Context, remote, adv string) ([]byte, error) {
	opts := append(dial.DialOptions(dial.SourceIP(adv)), grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLSConfig(nil))))
	conn, err := grpc.NewClient("passthrough:///"+remote, opts...)
	if err != nil {
		return nil, invalid(err)
	}
	defer conn.Close()
	resp, err := swarmpb.NewCAClient(conn).GetRootCACertificate(ctx, &swarmpb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, unreachable(remote, err)
	}
	return resp.CertPem, nil
}

// requestCert sends a CSR with the token over TLS verified against the
// now-trusted root, and returns the node's credentials.
func (n *Node) requestCert(ctx context.Context, remote string, rootPEM []byte, token, adv string) (*ca.Creds, *swarmpb.IssueNodeCertificateResponse, error) {
	root, err := ca.ParseRootCA(rootPEM, nil)
	if err != nil {
		return nil, nil, err
	}
	// The manager records this node's address from this connection.
	opts := append(dial.DialOptions(dial.SourceIP(adv)), grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLSConfig(root.Pool()))))
	conn, err := grpc.NewClient("passthrough:///"+remote, opts...)
	if err != nil {
		return nil, nil, invalid(err)
	}
	defer conn.Close()
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		return nil, nil, err
	}
	resp, err := swarmpb.NewCAClient(conn).IssueNodeCertificate(ctx, &swarmpb.IssueNodeCertificateRequest{
		Token: token, CsrPem: csrPEM, Hostname: n.cfg.Hostname, Addr: adv,
	})
	if err != nil {
		return nil, nil, unreachable(remote, err)
	}
	creds, err := ca.NewCreds(rootPEM, resp.CertPem, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate from %s: %w", remote, err)
	}
	return creds, resp, nil
}

// Leave takes the node out of its cluster and deletes its state. A manager
// must be demoted first (with --force it demotes itself, when that keeps
// quorum); the last manager cannot leave.
func (n *Node) Leave(ctx context.Context, force bool) error {
	n.mu.Lock()
	member, mgr, locked := n.member, n.mgr, n.locked
	n.mu.Unlock()
	if member == nil {
		return status.Error(codes.FailedPrecondition, "this node is not part of a swarm")
	}
	if locked {
		if !force {
			return status.Error(codes.FailedPrecondition, "this manager is locked: run 'swarmctl swarm unlock' with the unlock key, or 'leave --force' to delete its state without demoting it (then remove it from the cluster on another manager)")
		}
		n.opMu.Lock()
		defer n.opMu.Unlock()
		n.reset()
		n.log.Warn("a locked manager left the cluster: its state is deleted; demote and remove it on another manager")
		return nil
	}
	if mgr != nil {
		if !force {
			return status.Error(codes.FailedPrecondition, "this node is a manager: demote it first ('swarmctl node demote "+member.NodeID+"' on a manager), or use 'leave --force' to demote it and leave")
		}
		role := swarmpb.NodeRole_NODE_ROLE_WORKER
		if _, err := mgr.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: member.NodeID, DesiredRole: &role}); err != nil {
			if !errors.Is(api.FromStatus(err), raft.ErrNotLeader) {
				return err
			}
			conn, cerr := mgrRouteConn(ctx, mgr)
			if cerr != nil {
				return cerr
			}
			if _, err := swarmpb.NewControlClient(conn).UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: member.NodeID, DesiredRole: &role}); err != nil {
				return err
			}
		}
		if err := n.waitDemoted(ctx); err != nil {
			return err
		}
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.reset()
	n.log.Info("left the cluster")
	return nil
}

func mgrRouteConn(ctx context.Context, mgr interface {
	RouteControl(context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error)
}) (*grpc.ClientConn, error) {
	_, conn, err := mgr.RouteControl(ctx)
	if err != nil {
		return nil, api.Status(err)
	}
	if conn == nil {
		return nil, status.Error(codes.Unavailable, "leadership is changing; try again")
	}
	return conn, nil
}

// waitDemoted waits until the agent has stopped this node's manager.
func (n *Node) waitDemoted(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for n.Manager() != nil {
		if !retry.Sleep(dctx, 100*time.Millisecond) {
			return status.Error(codes.DeadlineExceeded, "timed out waiting for this manager to be demoted; check 'swarmctl node ls'")
		}
	}
	return nil
}

// forceNewCluster rewrites the Raft configuration so that this manager is
// the only voter, keeping all state: recovery from permanent quorum loss.
func (n *Node) forceNewCluster(ctx context.Context) (*swarmpb.InitResponse, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	member, locked := n.member, n.locked
	n.mu.Unlock()
	if locked {
		return nil, errLocked
	}
	if member == nil || !member.manager() {
		return nil, status.Error(codes.FailedPrecondition, "--force-new-cluster needs a manager's state to recover: this node is not a manager of any cluster")
	}
	n.stopAgent()
	n.stopManager()
	dek, err := n.dataKey()
	if errors.Is(err, errNeedsUnlock) {
		return nil, errLocked
	}
	if err != nil {
		return nil, err
	}
	if err := raft.RecoverSingle(raft.Config{NodeID: member.NodeID, Addr: member.AdvertiseAddr, Dir: n.raftDir(), Timings: n.cfg.Timings, Logger: n.log, DEK: dek}); err != nil {
		return nil, err
	}
	mgr, err := n.startManager()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := mgr.WaitLeader(wctx); err != nil {
		return nil, err
	}
	// The other managers are gone from Raft; record them as workers so the
	// node list and future promotions reflect the new configuration.
	var actions []*swarmpb.StoreAction
	var workerTok string
	mgr.Store().View(func(tx state.ReadTx) {
		workerTok = tx.Cluster().GetJoinTokens().GetWorker()
		for _, nd := range tx.ListNodes() {
			if nd.Id == member.NodeID {
				continue
			}
			if nd.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER || nd.GetSpec().GetDesiredRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER {
				c := proto.Clone(nd).(*swarmpb.Node)
				c.Role = swarmpb.NodeRole_NODE_ROLE_WORKER
				c.Spec.DesiredRole = swarmpb.NodeRole_NODE_ROLE_WORKER
				actions = append(actions, state.Update(c))
			}
		}
	})
	if len(actions) > 0 {
		if _, err := mgr.Raft().Apply(wctx, state.Batch(actions...)); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	n.member.Managers = []string{member.AdvertiseAddr}
	err = n.member.save(n.cfg.StateDir)
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.startAgent()
	n.log.Info("forced a new cluster from this manager's state")
	return &swarmpb.InitResponse{NodeId: member.NodeID, WorkerToken: workerTok, ManagerAddr: member.AdvertiseAddr}, nil
}
