// Package inproc runs a whole cluster inside the benchmark process: real
// nodes (node.New, the code managerd and workerd run) talking mutual TLS
// over loopback, each with an in-memory fake container engine
// (agent/exec/fake). It is internal/testcluster without testing.TB, and
// with the production Raft timings and fsync by default.
//
// Managers serve their unix socket, so the benchmarks drive the cluster
// through the Control API exactly as swarmctl does. Workers have no socket:
// they join by calling node.Join directly, which is what the socket's
// Local.Join does.
package inproc

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

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Options configure a cluster.
type Options struct {
	Managers, Workers int
	// Timings are the Raft timings; raft.DefaultTimings() when zero.
	Timings raft.Timings
	// NoSync skips fsync of the Raft log (false: fsync on, as in production).
	NoSync bool
	// HeartbeatPeriod is the base heartbeat period; 0 is the default (1 s).
	HeartbeatPeriod time.Duration
	// JoinParallel is how many workers join at once (default 16).
	JoinParallel int
	// LogLevel is the level of the cluster log (Dir/cluster.log).
	LogLevel slog.Level
}

// Member is one node of the cluster.
type Member struct {
	Name   string
	Addr   string // advertise address
	Socket string // "" for workers
	cfg    node.Config

	mu   sync.Mutex
	node *node.Node

	fakeMu   sync.Mutex
	fake     *fake.Executor
	fakeNode string
}

// Cluster is a running in-process cluster.
type Cluster struct {
	Dir      string
	Managers []*Member
	Workers  []*Member
	LogPath  string

	opts  Options
	logf  *os.File
	log   *slog.Logger
	conns map[string]*grpc.ClientConn
	mu    sync.Mutex
}

// Start creates a temp dir, starts the managers (the first inits, the others
// join with the manager token) and then the workers, and waits until every
// node is Ready in the leader's store.
func Start(opts Options) (*Cluster, error) {
	if opts.Managers < 1 {
		return nil, errors.New("need at least one manager")
	}
	if opts.Timings.HeartbeatTimeout == 0 {
		opts.Timings = raft.DefaultTimings()
	}
	if opts.JoinParallel <= 0 {
		opts.JoinParallel = 16
	}
	dir, err := os.MkdirTemp("", "rsw-inproc-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, opts: opts, LogPath: filepath.Join(dir, "cluster.log"), conns: map[string]*grpc.ClientConn{}}
	c.logf, err = os.Create(c.LogPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.log = slog.New(slog.NewTextHandler(c.logf, &slog.HandlerOptions{Level: opts.LogLevel}))
	if err := c.start(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 1; i <= c.opts.Managers; i++ {
		m, err := c.newMember(fmt.Sprintf("m%d", i), true)
		if err != nil {
			return err
		}
		c.Managers = append(c.Managers, m)
	}
	m1 := c.Managers[0]
	if _, err := m1.Node().Init(ctx, m1.Addr, ""); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	mtok, err := c.Control(m1).GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		return fmt.Errorf("manager join token: %w", err)
	}
	for _, m := range c.Managers[1:] {
		if _, err := m.Node().Join(ctx, mtok.Token, m1.Addr, m.Addr, ""); err != nil {
			return fmt.Errorf("join %s: %w", m.Name, err)
		}
	}
	wtok, err := c.Control(m1).GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		return fmt.Errorf("worker join token: %w", err)
	}
	for i := 1; i <= c.opts.Workers; i++ {
		m, err := c.newMember(fmt.Sprintf("w%d", i), false)
		if err != nil {
			return err
		}
		c.Workers = append(c.Workers, m)
	}
	sem := make(chan struct{}, c.opts.JoinParallel)
	errc := make(chan error, len(c.Workers))
	var wg sync.WaitGroup
	for _, w := range c.Workers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := w.Node().Join(ctx, wtok.Token, m1.Addr, w.Addr, ""); err != nil {
				errc <- fmt.Errorf("join %s: %w", w.Name, err)
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return c.WaitReady(ctx, c.opts.Managers+c.opts.Workers)
}

// freeAddr reserves a loopback port for a member's advertise address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (c *Cluster) newMember(name string, manager bool) (*Member, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m := &Member{Name: name, Addr: addr}
	if manager {
		m.Socket = filepath.Join(c.Dir, name+".sock")
	}
	m.cfg = node.Config{
		StateDir: filepath.Join(c.Dir, name), SocketPath: m.Socket, Hostname: name,
		Timings: c.opts.Timings, NoSync: c.opts.NoSync, HeartbeatPeriod: c.opts.HeartbeatPeriod,
		Logger:   c.log.With("node", name),
		Executor: m.executor,
	}
	return m, m.Start()
}

// executor is the member's engine factory: one fake engine per node ID,
// kept across restarts of the member like a real engine's containers.
func (m *Member) executor(nodeID string) (exec.Executor, error) {
	m.fakeMu.Lock()
	defer m.fakeMu.Unlock()
	if m.fake == nil || m.fakeNode != nodeID {
		m.fake, m.fakeNode = fake.New(nodeID), nodeID
	}
	return m.fake, nil
}

// Fake returns the member's fake engine (nil before its agent started).
func (m *Member) Fake() *fake.Executor {
	m.fakeMu.Lock()
	defer m.fakeMu.Unlock()
	return m.fake
}

// Start (re)starts the member's node on its state dir.
func (m *Member) Start() error {
	n, err := node.New(m.cfg)
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	m.mu.Lock()
	m.node = n
	m.mu.Unlock()
	return nil
}

// Stop stops the member's node (agent, manager, socket); its state stays.
func (m *Member) Stop() {
	m.mu.Lock()
	n := m.node
	m.node = nil
	m.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

// Node is the running node, nil when stopped.
func (m *Member) Node() *node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// NodeID is the member's node ID.
func (m *Member) NodeID() string {
	if n := m.Node(); n != nil {
		return n.NodeID()
	}
	return ""
}

// Control is a Control client over a manager's unix socket.
func (c *Cluster) Control(m *Member) swarmpb.ControlClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn := c.conns[m.Socket]
	if conn == nil {
		var err error
		conn, err = grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20)))
		if err != nil {
			panic(err) // only fails on a malformed target
		}
		c.conns[m.Socket] = conn
	}
	return swarmpb.NewControlClient(conn)
}

// Leader waits for a leader among the running managers.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	for {
		for _, m := range c.Managers {
			if n := m.Node(); n != nil {
				if mgr := n.Manager(); mgr != nil {
					if ok, _ := mgr.Raft().Leadership(); ok {
						return m, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitReady waits until the store lists want nodes, all Ready with their
// engine described.
func (c *Cluster) WaitReady(ctx context.Context, want int) error {
	var last string
	for {
		if l, err := c.Leader(ctx); err == nil {
			resp, err := c.Control(l).ListNodes(ctx, &swarmpb.ListNodesRequest{})
			if err == nil {
				ready := 0
				for _, n := range resp.Nodes {
					// Ready, and its heartbeat already carries the engine's
					// description: until then a later heartbeat still
					// rewrites the node, which would land in a timed phase.
					if n.Node.Status == swarmpb.NodeStatus_NODE_STATUS_READY && n.Node.GetDescription().GetEngineVersion() != "" {
						ready++
					}
				}
				if ready == want && len(resp.Nodes) == want {
					return nil
				}
				last = fmt.Sprintf("%d nodes, %d ready", len(resp.Nodes), ready)
			} else {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d ready nodes (%s): %w", want, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// All returns managers then workers.
func (c *Cluster) All() []*Member { return append(append([]*Member(nil), c.Managers...), c.Workers...) }

// Close stops every node (workers first, in parallel) and removes the dir.
// It prints the tail of the cluster log to w first, if w is not nil and the
// log is not empty.
func (c *Cluster) Close() { c.CloseLog(nil) }

// CloseLog is Close, copying the cluster log to w first.
func (c *Cluster) CloseLog(w io.Writer) {
	c.mu.Lock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range c.Workers {
		wg.Go(m.Stop)
	}
	wg.Wait()
	for i := len(c.Managers) - 1; i >= 0; i-- {
		c.Managers[i].Stop()
	}
	if c.logf != nil {
		c.logf.Close()
		if w != nil {
			if b, err := os.ReadFile(c.LogPath); err == nil && len(b) > 0 {
				const max = 8 << 10
				if len(b) > max {
					b = b[len(b)-max:]
				}
				fmt.Fprintf(w, "--- tail of the cluster log ---\n%s--- end ---\n", b)
			}
		}
	}
	os.RemoveAll(c.Dir)
}
