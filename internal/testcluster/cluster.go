// Package testcluster runs in-process clusters of real nodes over loopback
// mutual TLS with fast Raft timings, for tests of every layer above Raft.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/manager"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
	cfg     node.Config
	conn    *grpc.ClientConn

	fakeMu   sync.Mutex
	fake     *fake.Executor
	fakeNode string
}

// Options tune a cluster.
type Options struct {
	HeartbeatPeriod time.Duration
	LeaderWork      []func(ctx context.Context, m *manager.Manager) error
	// Configure, if set, adjusts each member's config before it starts.
	Configure func(name string, cfg *node.Config)
	// Docker runs each member's tasks on the real Docker engine. Without
	// it each member gets an in-memory engine (Member.Fake) that survives
	// the member's restarts, like a real engine's containers do.
	Docker bool
}

// Cluster is a set of members sharing a test.
type Cluster struct {
	t       testing.TB
	opts    Options
	Members []*Member
	sockDir string
	baseDir string
}

// New starts managers+workers nodes: the first inits, the rest join.
func New(t testing.TB, managers, workers int, opts Options) *Cluster {
	t.Helper()
	// The state dirs' parent is created before the cleanup that stops the
	// members is registered, so it is removed after they stopped (cleanups
	// run last-registered first).
	baseDir := t.TempDir()
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
	return c
}

// freeAddr is a free port on ip.
func freeAddr(t testing.TB, ip string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Add starts a new, inactive member.
func (c *Cluster) Add(name string) *Member {
	c.t.Helper()
	m := &Member{Name: name, Dir: filepath.Join(c.baseDir, name), Socket: filepath.Join(c.sockDir, name+".sock")}
	// Each member has a loopback address of its own, as nodes on separate
	// hosts would: it advertises and listens there, connects to managers
	// from there (managers record a node's address from its connections)
	// and binds published ports there.
	m.Ingress = fmt.Sprintf("127.0.0.%d", 100+len(c.Members))
	m.Addr = freeAddr(c.t, m.Ingress)
	m.cfg = node.Config{
		StateDir: m.Dir, SocketPath: m.Socket, Hostname: name, IngressAddr: m.Ingress,
		Timings: raft.FastTimings(), HeartbeatPeriod: c.opts.HeartbeatPeriod, NoSync: true,
		LeaderWork: c.opts.LeaderWork,
		Logger:     slog.New(slog.NewTextHandler(testWriter{c.t, name}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if !c.opts.Docker {
		m.cfg.Executor = m.fakeExecutor
	}
	if m.cfg.HeartbeatPeriod == 0 {
		m.cfg.HeartbeatPeriod = 100 * time.Millisecond
	}
	if c.opts.Configure != nil {
		c.opts.Configure(name, &m.cfg)
	}
	m.Start(c.t)
	c.Members = append(c.Members, m)
	return m
}

// Join adds a member that joins with the token for role.
func (c *Cluster) Join(name string, role swarmpb.NodeRole) *Member {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: role})
	if err != nil {
		c.t.Fatalf("join-token: %v", err)
	}
	m := c.Add(name)
	if _, err := m.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: tok.Managers[0], AdvertiseAddr: m.Addr}); err != nil {
		c.t.Fatalf("join %s: %v", name, err)
	}
	return m
}

// Start (re)starts the member's daemon on its state dir.
func (m *Member) Start(t testing.TB) {
	t.Helper()
	n, err := node.New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", m.Name, err)
	}
	m.Node = n
	conn, err := grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	m.conn = conn
}

// Stop stops the member's daemon, keeping its state dir.
func (m *Member) Stop() {
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	if m.Node != nil {
		m.Node.Stop()
		m.Node = nil
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

type testWriter struct {
	t    testing.TB
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("[%s] %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
