// Command heartbeat measures the leader's cost of agent heartbeats: one
// real managerd process and N simulated agents in this process. Each agent
// joins through the real CA path (its own key, CSR and worker-token
// certificate), holds its own mutual-TLS connection and heartbeats at the
// period the manager hands out. The manager's CPU is read from
// /proc/PID/stat over a fixed window.
//
//	go run ./bench/heartbeat [-nodes 2000] [-window 30s]
//
// With -profile FILE the manager runs as this binary re-executed in
// manager mode (the same node.Main as managerd) with a CPU profile.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const managerModeEnv = "RSW_BENCH_MANAGER_PROFILE"

func main() {
	if path := os.Getenv(managerModeEnv); path != "" {
		os.Exit(managerMode(path))
	}
	nodes := flag.Int("nodes", 2000, "simulated agents")
	window := flag.Duration("window", 30*time.Second, "CPU measurement window")
	warmup := flag.Duration("warmup", 6*time.Second, "steady-state wait after every node is Ready")
	port := flag.Int("port", 26377, "manager port on 127.0.0.51")
	joiners := flag.Int("join-concurrency", 64, "concurrent joins")
	profile := flag.String("profile", "", "run the manager as a profiling re-exec of this binary and write its CPU profile (steady-state window only) here")
	binDir := flag.String("bin", "", "directory with prebuilt managerd and swarmctl (default: build them)")
	flag.Parse()

	env, err := cluster.NewEnv(*binDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; env.Close(); os.Exit(130) }()
	code := 0
	if err := run(env, *nodes, *window, *warmup, *port, *joiners, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	env.Close()
	os.Exit(code)
}

// managerMode is managerd with a CPU profile that starts on SIGUSR1 and
// is written on SIGUSR2.
func managerMode(path string) int {
	usr := make(chan os.Signal, 2)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range usr {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(path); err == nil {
					_ = pprof.StartCPUProfile(f)
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
	}()
	return node.Main("managerd", os.Args[1:], os.Stderr)
}

type agent struct {
	id    string
	creds *ca.Creds
	conn  *grpc.ClientConn
	desc  *swarmpb.NodeDescription
	addr  string
}

type counters struct {
	ok, fail atomic.Int64
	lastErr  atomic.Value
	period   atomic.Int64
}

func run(env *cluster.Env, n int, window, warmup time.Duration, port, joiners int, profile string) error {
	m := env.Daemon("m1", fmt.Sprintf("127.0.0.51:%d", port))
	if profile != "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		m.Binary = self
		abs, _ := filepath.Abs(profile)
		m.Env = []string{managerModeEnv + "=" + abs}
	}
	if err := m.Start(); err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := m.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: m.Addr}); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	tok, err := m.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		return err
	}
	rootPEM, err := fetchRoot(m.Addr, tok.Token)
	if err != nil {
		return err
	}
	root, err := ca.ParseRootCA(rootPEM, nil)
	if err != nil {
		return err
	}

	// Joins: N key pairs + IssueNodeCertificate calls with the worker token,
	// over a few bootstrap connections (a joining node has no certificate yet).
	t0 := time.Now()
	var boot []*grpc.ClientConn
	for i := 0; i < 8; i++ {
		c, err := grpc.NewClient("passthrough:///"+m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLSConfig(root.Pool()))))
		if err != nil {
			return err
		}
		defer c.Close()
		boot = append(boot, c)
	}
	agents := make([]*agent, n)
	var joinErr atomic.Value
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for j := 0; j < joiners; j++ {
		wg.Add(1)
		go func(j int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || joinErr.Load() != nil {
					return
				}
				a, err := join(boot[j%len(boot)], tok.Token, rootPEM, i)
				if err != nil {
					joinErr.Store(err)
					return
				}
				agents[i] = a
			}
		}(j)
	}
	wg.Wait()
	if err, _ := joinErr.Load().(error); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	joinTime := time.Since(t0)
	fmt.Printf("%d agents joined through CA.IssueNodeCertificate in %.1f s (%.0f joins/s, %d concurrent)\n",
		n, joinTime.Seconds(), float64(n)/joinTime.Seconds(), joiners)

	// Heartbeat loops, each over the agent's own mTLS connection.
	var c counters
	stop := make(chan struct{})
	var hbwg sync.WaitGroup
	t1 := time.Now()
	for _, a := range agents {
		conn, err := grpc.NewClient("passthrough:///"+m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(a.creds.ClientTLSConfig("h2"))))
		if err != nil {
			return err
		}
		a.conn = conn
		hbwg.Add(1)
		go func(a *agent) {
			defer hbwg.Done()
			heartbeatLoop(a, &c, stop)
		}(a)
	}
	defer func() {
		close(stop)
		hbwg.Wait()
		for _, a := range agents {
			a.conn.Close()
		}
	}()

	ready, total, err := countReady(m)
	for deadline := time.Now().Add(90 * time.Second); err != nil || ready < total || total < n+1; {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready after 90 s (last error %v, heartbeat error %v)", ready, total, err, c.lastErr.Load())
		}
		time.Sleep(time.Second)
		ready, total, err = countReady(m)
	}
	fmt.Printf("all %d nodes Ready %.1f s after the agents started (heartbeat period handed out: %v)\n",
		total, time.Since(t1).Seconds(), time.Duration(c.period.Load()))
	time.Sleep(warmup)

	pid := m.Pid()
	if profile != "" {
		_ = syscall.Kill(pid, syscall.SIGUSR1)
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return err
	}
	self0, _ := procCPU(os.Getpid())
	ok0, fail0 := c.ok.Load(), c.fail.Load()
	w0 := time.Now()
	time.Sleep(window)
	cpu1, err := procCPU(pid)
	if err != nil {
		return err
	}
	self1, _ := procCPU(os.Getpid())
	el := time.Since(w0)
	ok1, fail1 := c.ok.Load(), c.fail.Load()
	if profile != "" {
		_ = syscall.Kill(pid, syscall.SIGUSR2)
	}
	rss := procRSS(pid)

	cores := (cpu1 - cpu0).Seconds() / el.Seconds()
	selfCores := (self1 - self0).Seconds() / el.Seconds()
	rate := float64(ok1-ok0) / el.Seconds()
	ready, total, err = countReady(m)
	if err != nil {
		return err
	}
	lsReady, lsTotal, lsErr := swarmctlReady(m)

	fmt.Printf("\nsteady state over %.1f s (after %v warm-up):\n", el.Seconds(), warmup)
	fmt.Printf("  manager process CPU: %.3f cores (utime+stime from /proc/%d/stat; target <= 0.5: %s)\n", cores, pid, verdict(cores <= 0.5))
	fmt.Printf("  heartbeats answered: %.0f /s (%d failed); expected about %d nodes / %v = %.0f /s\n",
		rate, fail1-fail0, n, time.Duration(c.period.Load()), float64(n)/time.Duration(c.period.Load()).Seconds())
	fmt.Printf("  manager RSS: %s\n", rss)
	fmt.Printf("  agent process (this one, %d TLS clients) CPU: %.3f cores\n", n, selfCores)
	fmt.Printf("  nodes Ready (ListNodes): %d of %d\n", ready, total)
	if lsErr != nil {
		fmt.Printf("  swarmctl node ls: %v\n", lsErr)
	} else {
		fmt.Printf("  nodes Ready (swarmctl node ls): %d of %d\n", lsReady, lsTotal)
	}
	if ready != total || total != n+1 {
		return fmt.Errorf("not every node is Ready")
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func fetchRoot(addr, token string) ([]byte, error) {
	tok, err := ca.ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(ca.BootstrapTLSConfig(nil))))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := swarmpb.NewCAClient(c).GetRootCACertificate(ctx, &swarmpb.GetRootCACertificateRequest{})
	if err != nil {
		return nil, err
	}
	return resp.CertPem, ca.CheckDigest(resp.CertPem, tok.Digest)
}

func join(boot *grpc.ClientConn, token string, rootPEM []byte, i int) (*agent, error) {
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("sim-%04d", i)
	// The simulated agents all connect from one address; they advertise
	// none and the manager records the one it sees (a distinct advertised
	// IP would be refused: it is not where they connect from).
	addr := ""
	var resp *swarmpb.IssueNodeCertificateResponse
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err = swarmpb.NewCAClient(boot).IssueNodeCertificate(ctx, &swarmpb.IssueNodeCertificateRequest{
			Token: token, CsrPem: csrPEM, Hostname: host, Addr: addr,
		})
		cancel()
		if err == nil {
			break
		}
		if attempt == 3 {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	creds, err := ca.NewCreds(rootPEM, resp.CertPem, keyPEM)
	if err != nil {
		return nil, err
	}
	return &agent{
		id: resp.NodeId, creds: creds, addr: addr,
		desc: &swarmpb.NodeDescription{
			Hostname: host, Os: runtime.GOOS, Arch: runtime.GOARCH,
			Resources: &swarmpb.Resources{NanoCpus: 2e9, MemoryBytes: 4 << 30},
		},
	}, nil
}

// heartbeatLoop sends Heartbeat at the period the manager returns, the
// first one at a random point of the first second so the load is spread.
func heartbeatLoop(a *agent, c *counters, stop <-chan struct{}) {
	client := swarmpb.NewDispatcherClient(a.conn)
	wait := time.Duration(rand.Int64N(int64(time.Second)))
	for {
		if !retry.SleepOrWake(context.Background(), wait, stop) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Description: a.desc, Addr: a.addr})
		cancel()
		if err != nil {
			c.fail.Add(1)
			c.lastErr.Store(err.Error())
			wait = time.Second
			continue
		}
		c.ok.Add(1)
		wait = time.Duration(resp.PeriodNs)
		if wait <= 0 {
			wait = api.DefaultHeartbeatPeriod
		}
		c.period.Store(int64(wait))
	}
}

func countReady(m *cluster.Daemon) (ready, total int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return 0, 0, err
	}
	for _, n := range resp.Nodes {
		if n.Node.Status == swarmpb.NodeStatus_NODE_STATUS_READY {
			ready++
		}
	}
	return ready, len(resp.Nodes), nil
}

func swarmctlReady(m *cluster.Daemon) (ready, total int, err error) {
	out, err := m.Swarmctl("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		total++
		if f[1] == "Ready" {
			ready++
		}
	}
	return ready, total, nil
}

// procCPU is utime+stime of a process (clock ticks of 1/100 s).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, 12 and 13 after ")".
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

func procRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	return "?"
}
