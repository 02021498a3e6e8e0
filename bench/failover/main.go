// Command failover measures leader failover on a three-manager cluster of
// real managerd processes: it SIGKILLs the leader and times how long until
// a write through a surviving manager succeeds.
//
//	go run ./bench/failover [-rounds 10] [-port 24377] [-addr-prefix 127.0.0.3]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
)

func main() {
	rounds := flag.Int("rounds", 10, "number of leader kills")
	port := flag.Int("port", 24377, "manager port (each manager has its own address, PREFIX1 to PREFIX3)")
	prefix := flag.String("addr-prefix", "127.0.0.3", "managers listen on PREFIX1, PREFIX2, PREFIX3")
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
	if err := run(env, *rounds, *port, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		fmt.Fprintln(os.Stderr, "daemon logs were in", env.Dir)
		code = 1
	}
	env.Close()
	os.Exit(code)
}

type round struct {
	leader   string
	via      string
	failover time.Duration
	attempts int
	rejoin   time.Duration
}

func run(env *cluster.Env, rounds, port int, prefix string) error {
	t := raft.DefaultTimings()
	fmt.Printf("raft timings: heartbeat %v, election %v, leader lease %v, commit %v\n",
		t.HeartbeatTimeout, t.ElectionTimeout, t.LeaderLeaseTimeout, t.CommitTimeout)
	var ds []*cluster.Daemon
	for i := 1; i <= 3; i++ {
		d := env.Daemon(fmt.Sprintf("m%d", i), fmt.Sprintf("%s%d:%d", prefix, i, port))
		if err := d.Start(); err != nil {
			return err
		}
		ds = append(ds, d)
	}
	if _, err := ds[0].Swarmctl("init", "--advertise-addr", ds[0].Addr); err != nil {
		return err
	}
	tok, err := ds[0].Swarmctl("join-token", "-q", "manager")
	if err != nil {
		return err
	}
	tok = strings.TrimSpace(tok)
	for _, d := range ds[1:] {
		if _, err := d.Swarmctl("join", "--token", tok, "--advertise-addr", d.Addr, ds[0].Addr); err != nil {
			return err
		}
	}
	if err := waitHealthy(ds, ds[0], 30*time.Second); err != nil {
		return err
	}
	fmt.Println("cluster of 3 managers up")

	var results []round
	for i := 1; i <= rounds; i++ {
		leader, err := findLeader(ds)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		var survivors []*cluster.Daemon
		for _, d := range ds {
			if d != leader {
				survivors = append(survivors, d)
			}
		}
		via := survivors[i%2]
		target := survivors[(i+1)%2].Name
		r := round{leader: leader.Name, via: via.Name}

		start := time.Now()
		if err := leader.KillNoWait(); err != nil {
			return err
		}
		var lastErr error
		deadline := start.Add(30 * time.Second)
		for {
			r.attempts++
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := via.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{
				Node: target, LabelAdd: map[string]string{"k": fmt.Sprint(i)},
			})
			cancel()
			if err == nil {
				break
			}
			lastErr = err
			if time.Now().After(deadline) {
				return fmt.Errorf("round %d: no write through %s within 30s after killing %s: %v", i, via.Name, leader.Name, lastErr)
			}
			time.Sleep(5 * time.Millisecond)
		}
		r.failover = time.Since(start)
		leader.Kill() // reap

		rs := time.Now()
		if err := leader.Start(); err != nil {
			return fmt.Errorf("round %d: restart %s: %w", i, leader.Name, err)
		}
		if err := waitHealthy(ds, via, 60*time.Second); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		if err := waitFollowing(leader, via, 60*time.Second); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		r.rejoin = time.Since(rs)
		results = append(results, r)
		fmt.Printf("round %2d: killed %s, write via %s ok after %7.1f ms (%d attempts); %s Reachable again %6.0f ms after restart\n",
			i, r.leader, r.via, ms(r.failover), r.attempts, r.leader, ms(r.rejoin))
	}

	var fo, rj []time.Duration
	for _, r := range results {
		fo = append(fo, r.failover)
		rj = append(rj, r.rejoin)
	}
	s := cluster.Summarize(fo)
	sr := cluster.Summarize(rj)
	fmt.Printf("\nfailover (SIGKILL leader -> first successful write via a survivor), %d rounds:\n", s.N)
	fmt.Printf("  min %.0f ms  median %.0f ms  mean %.0f ms  max %.0f ms\n", ms(s.Min), ms(s.P50), ms(s.Mean), ms(s.Max))
	fmt.Printf("  target: median <= 2000 ms (%s), max <= 3000 ms (%s)\n", verdict(s.P50 <= 2*time.Second), verdict(s.Max <= 3*time.Second))
	fmt.Printf("restart -> Reachable: median %.0f ms, max %.0f ms\n", ms(sr.P50), ms(sr.Max))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// findLeader asks `swarmctl node ls` on the running managers.
func findLeader(ds []*cluster.Daemon) (*cluster.Daemon, error) {
	var lastErr error
	for _, d := range ds {
		if d.Pid() == 0 {
			continue
		}
		out, err := d.Swarmctl("node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}")
		if err != nil {
			lastErr = err
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[1] == "Leader" {
				for _, c := range ds {
					if c.Name == f[0] {
						return c, nil
					}
				}
			}
		}
		lastErr = fmt.Errorf("no leader in node ls:\n%s", out)
	}
	return nil, lastErr
}

// waitHealthy waits until node ls (via d) shows every manager as Leader or
// Reachable and Ready.
func waitHealthy(ds []*cluster.Daemon, via *cluster.Daemon, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := via.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
		cancel()
		if err != nil {
			last = err.Error()
		} else {
			ok := 0
			var b strings.Builder
			for _, n := range resp.Nodes {
				st := n.ManagerStatus
				fmt.Fprintf(&b, "%s %s %s; ", n.Node.GetDescription().GetHostname(), st, n.Node.Status)
				if (st == "Leader" || st == "Reachable") && n.Node.Status == swarmpb.NodeStatus_NODE_STATUS_READY {
					ok++
				}
			}
			last = b.String()
			if ok == len(ds) && len(resp.Nodes) == len(ds) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("managers not all Reachable after %v: %s", timeout, last)
}

// waitFollowing waits until the restarted manager d has heard from the
// current leader (its RaftMembership.Ping names the same leader as via's),
// so "Reachable" is not just the leader not having noticed the crash yet.
func waitFollowing(d, via *cluster.Daemon, timeout time.Duration) error {
	creds, err := ca.LoadCreds(filepath.Join(d.StateDir, "certs"))
	if err != nil {
		return err
	}
	pool := dial.NewPool(creds)
	defer pool.Close()
	ping := func(addr string) (*swarmpb.PingResponse, error) {
		c, err := pool.Conn(addr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return swarmpb.NewRaftMembershipClient(c).Ping(ctx, &swarmpb.PingRequest{})
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		a, err1 := ping(d.Addr)
		b, err2 := ping(via.Addr)
		switch {
		case err1 != nil:
			last = err1.Error()
		case err2 != nil:
			last = err2.Error()
		case a.LeaderAddr != "" && a.LeaderAddr == b.LeaderAddr:
			return nil
		default:
			last = fmt.Sprintf("%s sees leader %q, %s sees %q", d.Name, a.LeaderAddr, via.Name, b.LeaderAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not following the leader after %v: %s", d.Name, timeout, last)
}
