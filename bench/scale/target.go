package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// target is the cluster under measurement: the managers either in this
// process (inproc) or as managerd processes (procs); the simulated
// nodes are in this process either way.
type target interface {
	// control is a Control client of the current leader.
	control(ctx context.Context) (swarmpb.ControlClient, error)
	// leader names the current leader ("" when there is none) and gives
	// its process ID (0 in-process: it shares this process).
	leader() (name string, pid int)
	// watch follows a service's tasks as the leader holds them.
	watch(service string) *testcluster.Watcher
	// stopLeader stops the leader (a process: SIGKILL) and returns its
	// name and how to start it again.
	stopLeader(ctx context.Context) (name string, restart func(context.Context) error, err error)
	// engines are the simulated nodes' fake engines.
	engines() []*fake.Executor
	close()
}

// ---------------------------------------------------------------- inproc

type inproc struct{ c *testcluster.Cluster }

func (t inproc) control(ctx context.Context) (swarmpb.ControlClient, error) {
	l, err := t.c.WaitLeader(ctx)
	if err != nil {
		return nil, err
	}
	return l.Control(), nil
}

func (t inproc) leader() (string, int) {
	for _, m := range t.c.Managers() {
		if m.Running() {
			if ok, _ := m.Node.Manager().Raft().Leadership(); ok {
				return m.Name, 0
			}
		}
	}
	return "", 0
}

func (t inproc) watch(service string) *testcluster.Watcher {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := t.c.WaitLeader(ctx)
	if err != nil {
		fatalf("watch %s: %v", service, err)
	}
	return testcluster.WatchService(l.Node.Manager().Store(), service)
}

func (t inproc) stopLeader(ctx context.Context) (string, func(context.Context) error, error) {
	l, err := t.c.WaitLeader(ctx)
	if err != nil {
		return "", nil, err
	}
	l.Stop()
	return l.Name, func(ctx context.Context) error {
		if err := l.Restart(); err != nil {
			return fmt.Errorf("restart %s: %w", l.Name, err)
		}
		return t.c.WaitReady(ctx, len(t.c.Members))
	}, nil
}

func (t inproc) engines() []*fake.Executor {
	var out []*fake.Executor
	for _, m := range t.c.Members {
		if f := m.Fake(); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func (t inproc) close() { t.c.CloseLog(os.Stderr) }

// ---------------------------------------------------------------- procs

// procs runs the managers as managerd processes (--engine fake, fsync
// on, default Raft timings) on 127.0.0.11, .12, ...; the simulated nodes
// join them from this process.
type procs struct {
	env     *cluster.Env
	ds      []*cluster.Daemon
	workers *testcluster.Cluster
	poll    time.Duration

	mu   sync.Mutex
	last *cluster.Daemon // the leader last found
}

// startProcs starts the managers, forms their cluster and drains them
// (they only manage), and returns before any worker joins.
func startProcs(binDir string, managers int, heartbeat, poll time.Duration) (*procs, string, error) {
	env, err := cluster.NewEnv(binDir)
	if err != nil {
		return nil, "", err
	}
	p := &procs{env: env, poll: poll}
	for i := 1; i <= managers; i++ {
		args := append([]string{"--engine", "fake", "--data-port", "0"}, managerdArgs()...)
		if heartbeat > 0 {
			args = append(args, "--heartbeat-period", heartbeat.String())
		}
		if *daemonPprof > 0 {
			args = append(args, "--debug", "--metrics-addr", fmt.Sprintf("127.0.0.%d:%d", 10+i, *daemonPprof))
		}
		addr, err := freePort(fmt.Sprintf("127.0.0.%d", 10+i))
		if err != nil {
			p.close()
			return nil, "", err
		}
		d := env.Daemon(fmt.Sprintf("m%d", i), addr, args...)
		d.MaxRecvMsgSize = 1 << 30
		d.Binary, d.Env = profileDaemon(d.Name)
		if err := d.Start(); err != nil {
			p.close()
			return nil, "", err
		}
		p.ds = append(p.ds, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m1 := p.ds[0]
	if _, err := m1.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: m1.Addr}); err != nil {
		p.close()
		return nil, "", fmt.Errorf("init %s: %w", m1.Name, err)
	}
	mtok, err := m1.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		p.close()
		return nil, "", fmt.Errorf("manager join token: %w", err)
	}
	for _, d := range p.ds[1:] {
		if _, err := d.Local().Join(ctx, &swarmpb.JoinRequest{Token: mtok.Token, RemoteAddr: m1.Addr, AdvertiseAddr: d.Addr}); err != nil {
			p.close()
			return nil, "", fmt.Errorf("join %s: %w", d.Name, err)
		}
	}
	wtok, err := m1.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		p.close()
		return nil, "", fmt.Errorf("worker join token: %w", err)
	}
	ctl, err := p.control(ctx)
	if err != nil {
		p.close()
		return nil, "", err
	}
	if err := drain(ctx, ctl, p.managerIDs(ctx)); err != nil {
		p.close()
		return nil, "", fmt.Errorf("drain managers: %w", err)
	}
	return p, wtok.Token, nil
}

func (p *procs) managerIDs(ctx context.Context) []string {
	var ids []string
	for _, d := range p.ds {
		if info, err := d.Local().Info(ctx, &swarmpb.InfoRequest{}); err == nil {
			ids = append(ids, info.NodeId)
		}
	}
	return ids
}

// joinTarget is what the workers join: m1, and the leader's Control to
// wait for them to be Ready.
func (p *procs) joinTarget(token string) *testcluster.External {
	return &testcluster.External{Addr: p.ds[0].Addr, Token: token, Managers: len(p.ds), Control: proxyControl{p: p}}
}

func (p *procs) find() *cluster.Daemon {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, d := range p.ds {
		conn := d.Conn() // nil while stopped
		if conn == nil {
			continue
		}
		info, err := swarmpb.NewLocalClient(conn).Info(ctx, &swarmpb.InfoRequest{})
		if err == nil && info.RaftLeader == d.Addr {
			return d
		}
	}
	return nil
}

func (p *procs) leaderDaemon(ctx context.Context) (*cluster.Daemon, error) {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if last != nil && last.Conn() != nil {
		return last, nil
	}
	for {
		if d := p.find(); d != nil {
			p.mu.Lock()
			p.last = d
			p.mu.Unlock()
			return d, nil
		}
		if !retry.Sleep(ctx, 10*time.Millisecond) {
			return nil, fmt.Errorf("no leader among the managerd processes: %w", ctx.Err())
		}
	}
}

func (p *procs) control(ctx context.Context) (swarmpb.ControlClient, error) {
	d, err := p.leaderDaemon(ctx)
	if err != nil {
		return nil, err
	}
	conn := d.Conn()
	if conn == nil {
		return nil, status.Errorf(codes.Unavailable, "%s was stopped", d.Name)
	}
	return swarmpb.NewControlClient(conn), nil
}

func (p *procs) leader() (string, int) {
	d := p.find()
	if d == nil {
		return "", 0
	}
	p.mu.Lock()
	p.last = d
	p.mu.Unlock()
	return d.Name, d.Pid()
}

func (p *procs) watch(service string) *testcluster.Watcher {
	return testcluster.PollService(func() swarmpb.ControlClient { return proxyControl{p: p} }, service, p.poll)
}

func (p *procs) stopLeader(ctx context.Context) (string, func(context.Context) error, error) {
	d, err := p.leaderDaemon(ctx)
	if err != nil {
		return "", nil, err
	}
	d.Kill()
	p.mu.Lock()
	p.last = nil
	p.mu.Unlock()
	return d.Name, func(ctx context.Context) error {
		if err := d.Start(); err != nil {
			return fmt.Errorf("restart %s: %w", d.Name, err)
		}
		return p.workers.WaitReady(ctx, len(p.ds)+len(p.workers.Members))
	}, nil
}

func (p *procs) engines() []*fake.Executor { return inproc{p.workers}.engines() }

// close kills the managerd processes first (what must not outlive the
// run), then stops the simulated nodes and removes the directories.
func (p *procs) close() {
	if *keepLogs != "" {
		if err := os.MkdirAll(*keepLogs, 0o755); err == nil {
			for _, d := range p.ds {
				if b, err := os.ReadFile(d.LogPath); err == nil {
					_ = os.WriteFile(filepath.Join(*keepLogs, d.Name+".log"), b, 0o644)
				}
			}
		}
	}
	for _, d := range p.ds {
		if b, err := os.ReadFile(d.LogPath); err == nil && len(b) > 0 {
			const max = 4 << 10
			if len(b) > max {
				b = b[len(b)-max:]
			}
			fmt.Fprintf(os.Stderr, "--- tail of %s's log ---\n%s\n", d.Name, b)
		}
	}
	p.env.Close()
	if p.workers != nil {
		if *keepLogs != "" && p.workers.LogPath != "" {
			// The simulated nodes' log (-log-level), read before it is
			// removed; it is complete once the nodes have stopped, so the
			// copy misses at most their last lines.
			if b, err := os.ReadFile(p.workers.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(*keepLogs, "nodes.log"), b, 0o644)
			}
		}
		p.workers.CloseLog(os.Stderr)
	}
}

// proxyControl sends the listings (ListNodes, ListTasks: all that
// testcluster calls) to the current leader's socket, finding it again
// after a failover. Other methods are not served (nil embedded client).
type proxyControl struct {
	swarmpb.ControlClient
	p *procs
}

func (c proxyControl) ListNodes(ctx context.Context, in *swarmpb.ListNodesRequest, opts ...grpc.CallOption) (*swarmpb.ListNodesResponse, error) {
	ctl, err := c.p.control(ctx)
	if err != nil {
		return nil, err
	}
	return ctl.ListNodes(ctx, in, opts...)
}

func (c proxyControl) ListTasks(ctx context.Context, in *swarmpb.ListTasksRequest, opts ...grpc.CallOption) (*swarmpb.ListTasksResponse, error) {
	ctl, err := c.p.control(ctx)
	if err != nil {
		return nil, err
	}
	return ctl.ListTasks(ctx, in, opts...)
}

// ---------------------------------------------------------------- helpers

func drain(ctx context.Context, ctl swarmpb.ControlClient, ids []string) error {
	d := swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
	for _, id := range ids {
		if _, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: id, Availability: &d}); err != nil {
			return fmt.Errorf("drain %s: %w", id, err)
		}
	}
	return nil
}

// freePort is a free host:port on ip.
func freePort(ip string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
