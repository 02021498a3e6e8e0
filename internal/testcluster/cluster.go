package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/manager"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Member is one node of a test cluster.
type Member struct {
	Name   string
	Dir    string
	Socket string
	Addr   string // host:port it advertises and listens on, on its Ingress IP
	// Ingress is the member's own loopback IP; its routing mesh binds
	// published ports on it.
	Ingress string
	Node    *node.Node
	// JoinedAs is the role the member joined with (m1 inits as a
	// manager); promotions and demotions do not change it.
	JoinedAs swarmpb.NodeRole
	cfg      node.Config
	conn     *grpc.ClientConn

	maxRecv int
	stopMu  sync.Mutex

	fakeMu   sync.Mutex
	fake     *fake.Executor
	fakeNode string
}

// Options tune a cluster.
type Options struct {
	// HeartbeatPeriod is the base heartbeat period; New makes 0 mean
	// 100ms, Start the node's default.
	HeartbeatPeriod time.Duration
	LeaderWork      []func(ctx context.Context, m *manager.Manager) error
	// Configure, if set, adjusts each member's config before it starts.
	Configure func(name string, cfg *node.Config)
	// Docker runs each member's tasks on the real Docker engine. Without
	// it each member gets an in-memory engine (Member.Fake) that survives
	// the member's restarts, like a real engine's containers do.
	Docker bool
	// IPs, if set, are the members' own addresses in the order they are
	// added (instead of 127.0.0.100, .101, ...): tests that program the
	// kernel for those addresses keep to a range of their own.
	IPs []string

	// The options below serve the benchmark commands (Start); tests
	// rarely need them.

	// Timings are the Raft timings; raft.FastTimings() when zero.
	Timings raft.Timings
	// Sync fsyncs the Raft log, as production does. Off by default: tests
	// need no durability across a power cut.
	Sync bool
	// SharedLoopback puts every member on 127.0.0.1 with no ingress
	// address of its own (published ports bind on all addresses), for
	// clusters larger than the loopback addresses New hands out.
	SharedLoopback bool
	// MaxRecvMsgSize bounds the replies the members' clients accept
	// (gRPC's default, 4 MiB, when zero); listing thousands of nodes needs
	// more.
	MaxRecvMsgSize int
	// BaseDir is the parent of the members' state dirs (t.TempDir() when
	// empty); the full-disk tests put it on a small tmpfs.
	BaseDir string
}

// StartOptions configure a cluster started without a testing.TB (Start).
type StartOptions struct {
	Options
	Managers, Workers int
	// JoinParallel is how many workers join at once (default 16).
	JoinParallel int
	// LogLevel is the level of the cluster log (Cluster.LogPath).
	LogLevel slog.Level
	// Timeout bounds the start (default 5 minutes); a thousand nodes
	// joining on a loaded machine take longer.
	Timeout time.Duration
	// External, if set, is a cluster already running elsewhere (managers
	// in their own processes): Start then starts no manager, and the
	// workers join it.
	External *External
	// Joined, if set, is called after each worker's join returned, with
	// the number of workers joined so far (from several goroutines).
	Joined func(joined int)
}

// External is a cluster whose managers run outside this process.
type External struct {
	Addr  string // a manager's address the workers join through
	Token string // the worker join token
	// Control is a client of a manager, for the wait until every node is
	// Ready; it should follow the leader (a proxying follower does).
	Control swarmpb.ControlClient
	// Managers is how many nodes the cluster has besides the workers.
	Managers int
}

// Cluster is a set of members sharing a test or a benchmark run.
type Cluster struct {
	t       testing.TB // nil for a cluster from Start
	opts    Options
	Members []*Member
	sockDir string
	baseDir string

	// Set by Start: the cluster's directory and its log file.
	Dir     string
	LogPath string
	logf    *os.File
	log     *slog.Logger

	external *External // set by Start for a cluster whose managers run elsewhere
}

// New starts managers+workers nodes: the first inits, the rest join.
func New(t testing.TB, managers, workers int, opts Options) *Cluster {
	t.Helper()
	// The state dirs' parent is created before the cleanup that stops the
	// members is registered, so it is removed after they stopped (cleanups
	// run last-registered first).
	baseDir := opts.BaseDir
	if baseDir == "" {
		baseDir = t.TempDir()
	}
	sockDir, err := os.MkdirTemp("", "rsw")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: opts, sockDir: sockDir, baseDir: baseDir}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Stop()
		}
		os.RemoveAll(sockDir)
	})
	first := c.Add("m1")
	first.JoinedAs = swarmpb.NodeRole_NODE_ROLE_MANAGER
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := first.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: first.Addr}); err != nil {
		t.Fatalf("init: %v", err)
	}
	for i := 2; i <= managers; i++ {
		c.Join(fmt.Sprintf("m%d", i), swarmpb.NodeRole_NODE_ROLE_MANAGER)
	}
	for i := 1; i <= workers; i++ {
		c.Join(fmt.Sprintf("w%d", i), swarmpb.NodeRole_NODE_ROLE_WORKER)
	}
	// A joined node is Ready only after its first heartbeat; tests that
	// place tasks right away must see every node, or a loaded machine
	// decides where they land.
	if err := c.waitReady(ctx, managers+workers, false); err != nil {
		t.Fatalf("cluster of %d nodes: %v", managers+workers, err)
	}
	return c
}

// freeAddr is a free port on ip. A manager advertising an address that is
// not loopback listens on every address, so such a port must be free on
// all of them (Options.IPs).
func freeAddr(ip string) (string, error) {
	probe := ip
	if a := net.ParseIP(ip); a != nil && !a.IsLoopback() {
		probe = "0.0.0.0"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(probe, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return net.JoinHostPort(ip, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// Add starts a new, inactive member.
func (c *Cluster) Add(name string) *Member {
	c.t.Helper()
	m, err := c.add(name, true)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// add starts a new, inactive member, serving its local socket if socket.
func (c *Cluster) add(name string, socket bool) (*Member, error) {
	m := &Member{Name: name, Dir: filepath.Join(c.baseDir, name)}
	if socket {
		m.Socket = filepath.Join(c.sockDir, name+".sock")
	}
	// Each member has a loopback address of its own, as nodes on separate
	// hosts would: it advertises and listens there, connects to managers
	// from there (managers record a node's address from its connections)
	// and binds published ports there.
	ip := fmt.Sprintf("127.0.0.%d", 100+len(c.Members))
	if len(c.Members) < len(c.opts.IPs) {
		ip = c.opts.IPs[len(c.Members)]
	}
	if c.opts.SharedLoopback {
		ip = "127.0.0.1"
	} else {
		m.Ingress = ip
	}
	var err error
	if m.Addr, err = freeAddr(ip); err != nil {
		return nil, err
	}
	timings := c.opts.Timings
	if timings.HeartbeatTimeout == 0 {
		timings = raft.FastTimings()
	}
	m.cfg = node.Config{
		StateDir: m.Dir, SocketPath: m.Socket, Hostname: name, IngressAddr: m.Ingress,
		Timings: timings, HeartbeatPeriod: c.opts.HeartbeatPeriod, NoSync: !c.opts.Sync,
		LeaderWork: c.opts.LeaderWork,
	}
	if c.log != nil {
		m.cfg.Logger = c.log.With("node", name)
	} else {
		m.cfg.Logger = slog.New(slog.NewTextHandler(testWriter{c.t, name}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if !c.opts.Docker {
		m.cfg.Executor = m.fakeExecutor
	}
	if m.cfg.HeartbeatPeriod == 0 && c.t != nil {
		m.cfg.HeartbeatPeriod = 100 * time.Millisecond
	}
	if c.opts.Configure != nil {
		c.opts.Configure(name, &m.cfg)
	}
	if err := m.start(c.opts.MaxRecvMsgSize); err != nil {
		return nil, err
	}
	c.Members = append(c.Members, m)
	return m, nil
}

// Join adds a member that joins with the token for role.
func (c *Cluster) Join(name string, role swarmpb.NodeRole) *Member {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := c.Add(name)
	m.JoinedAs = role
	// A loaded machine can cost the fast-timed cluster its leader for a
	// moment: a join refused as Unavailable (no leader to check the token)
	// took no effect and is tried again, until the deadline.
	for {
		tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: role})
		if err == nil {
			_, err = m.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: tok.Managers[0], AdvertiseAddr: m.Addr})
			if err == nil {
				return m
			}
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			c.t.Fatalf("join %s: %v", name, err)
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("join %s: %v", name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Start (re)starts the member's daemon on its state dir.
func (m *Member) Start(t testing.TB) {
	t.Helper()
	if err := m.start(m.maxRecv); err != nil {
		t.Fatal(err)
	}
}

// Restart is Start for callers without a testing.TB: it (re)starts the
// member's daemon on its state dir and returns what failed.
func (m *Member) Restart() error { return m.start(m.maxRecv) }

func (m *Member) start(maxRecv int) error {
	m.maxRecv = maxRecv
	n, err := node.New(m.cfg)
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	m.Node = n
	if m.Socket == "" {
		return nil // a member without a local socket has no client
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if maxRecv > 0 {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv)))
	}
	conn, err := grpc.NewClient("unix://"+m.Socket, opts...)
	if err != nil {
		return err
	}
	m.conn = conn
	return nil
}

// Stop stops the member's daemon, keeping its state dir. It is safe to call
// twice at once (a benchmark's signal handler and its deferred Close).
func (m *Member) Stop() {
	m.stopMu.Lock()
	conn, n := m.conn, m.Node
	m.conn, m.Node = nil, nil
	m.stopMu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if n != nil {
		n.Stop()
	}
}

// fakeExecutor is the member's executor factory without Options.Docker: one
// fake engine per node ID, kept across restarts.
func (m *Member) fakeExecutor(nodeID string) (exec.Executor, error) {
	m.fakeMu.Lock()
	defer m.fakeMu.Unlock()
	if m.fake == nil || m.fakeNode != nodeID {
		m.fake, m.fakeNode = fake.New(nodeID), nodeID
	}
	return m.fake, nil
}

// Fake returns the member's fake engine (the default, without Options.Docker), nil
// before its agent first started.
func (m *Member) Fake() *fake.Executor {
	m.fakeMu.Lock()
	defer m.fakeMu.Unlock()
	return m.fake
}

// Running reports whether the member's daemon runs.
func (m *Member) Running() bool { return m.Node != nil }

// Local is the member's Local client over its socket.
func (m *Member) Local() swarmpb.LocalClient { return swarmpb.NewLocalClient(m.conn) }

// Control is the member's Control client over its socket.
func (m *Member) Control() swarmpb.ControlClient { return swarmpb.NewControlClient(m.conn) }

// Get returns the member by name.
func (c *Cluster) Get(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	c.t.Fatalf("no member %s", name)
	return nil
}

// Control returns a Control client on some running manager.
func (c *Cluster) Control() swarmpb.ControlClient {
	for _, m := range c.Members {
		if m.Running() && m.Node.Manager() != nil {
			return m.Control()
		}
	}
	c.t.Fatal("no running manager")
	return nil
}

// Leader waits for a leader among the running members and returns it.
func (c *Cluster) Leader(timeout time.Duration) *Member {
	c.t.Helper()
	var leader *Member
	testutil.Eventually(c.t, timeout, func() error {
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			if mgr := m.Node.Manager(); mgr != nil {
				if ok, _ := mgr.Raft().Leadership(); ok {
					leader = m
					return nil
				}
			}
		}
		return fmt.Errorf("no leader")
	})
	return leader
}

// NodeID returns the member's node ID.
func (m *Member) NodeID() string { return m.Node.NodeID() }

// Managers returns the members that joined as managers, in join order.
func (c *Cluster) Managers() []*Member { return c.joinedAs(swarmpb.NodeRole_NODE_ROLE_MANAGER) }

// Workers returns the members that joined as workers, in join order.
func (c *Cluster) Workers() []*Member { return c.joinedAs(swarmpb.NodeRole_NODE_ROLE_WORKER) }

func (c *Cluster) joinedAs(role swarmpb.NodeRole) []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.JoinedAs == role {
			out = append(out, m)
		}
	}
	return out
}

// WaitLeader waits for a leader among the running members, or until ctx
// ends; it is Leader for callers without a testing.TB.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	for {
		for _, m := range c.Members {
			if !m.Running() {
				continue
			}
			if mgr := m.Node.Manager(); mgr != nil {
				if ok, _ := mgr.Raft().Leadership(); ok {
					return m, nil
				}
			}
		}
		if !retry.Sleep(ctx, 10*time.Millisecond) {
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		}
	}
}

// WaitReady waits until the leader's store lists want nodes, all Ready
// with their engine described, or until ctx ends.
func (c *Cluster) WaitReady(ctx context.Context, want int) error {
	return c.waitReady(ctx, want, true)
}

// waitReady is WaitReady; needEngine also waits for each node's engine
// description.
func (c *Cluster) waitReady(ctx context.Context, want int, needEngine bool) error {
	return c.waitReadyMode(ctx, want, needEngine, false)
}

// waitReadyAtLeast is WaitReady that tolerates more nodes than want (a
// registration repeated after a leadership loss leaves one behind) as
// long as want of them are Ready with their engine described.
func (c *Cluster) waitReadyAtLeast(ctx context.Context, want int) error {
	return c.waitReadyMode(ctx, want, true, true)
}

func (c *Cluster) waitReadyMode(ctx context.Context, want int, needEngine, atLeast bool) error {
	control := func(ctx context.Context) (swarmpb.ControlClient, error) {
		l, err := c.WaitLeader(ctx)
		if err != nil {
			return nil, err
		}
		return l.Control(), nil
	}
	if c.external != nil {
		control = func(context.Context) (swarmpb.ControlClient, error) { return c.external.Control, nil }
	}
	var last string
	for {
		if ctl, err := control(ctx); err == nil {
			// Every page: a benchmark's cluster has more nodes than one.
			nodes, err := listing.Nodes(ctx, ctl)
			if err == nil {
				ready := 0
				for _, n := range nodes {
					// Ready, and its heartbeat already carries the engine's
					// description: until then a later heartbeat still
					// rewrites the node, which would land in a timed phase.
					if n.Node.Status == swarmpb.NodeStatus_NODE_STATUS_READY && (!needEngine || n.Node.GetDescription().GetEngineVersion() != "") {
						ready++
					}
				}
				if (ready == want && len(nodes) == want) || (atLeast && ready >= want) {
					return nil
				}
				last = fmt.Sprintf("%d nodes, %d ready", len(nodes), ready)
			} else {
				last = err.Error()
			}
		}
		if !retry.Sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("waiting for %d ready nodes (%s): %w", want, last, ctx.Err())
		}
	}
}

type testWriter struct {
	t    testing.TB
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("[%s] %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
