// Command nodeloss times the recovery from a lost worker on an in-process
// cluster with fake container engines (internal/testcluster): 3 managers
// and 20 workers, raft.DefaultTimings(), fsync on, a 100-replica service.
//
// Each round stops the worker that runs the most of the service's tasks
// with node.Stop (its agent goes away without a word, as if it died; its
// fake containers stay behind like a real engine's would) and times, from
// that call, until the leader's store shows the node Down and until every
// replica is RUNNING again on other nodes. The node is then restarted and
// the cluster settles before the next round.
//
//	go run ./bench/nodeloss [-workers 20] [-replicas 100] [-rounds 5] [-heartbeat-period 1s]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/api"
	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
)

func main() {
	managers := flag.Int("managers", 3, "managers")
	workers := flag.Int("workers", 20, "workers (simulated nodes with fake engines)")
	replicas := flag.Int("replicas", 100, "replicas of the service")
	rounds := flag.Int("rounds", 5, "node losses")
	noSync := flag.Bool("nosync", false, "skip fsync of the Raft log")
	hb := flag.Duration("heartbeat-period", api.DefaultHeartbeatPeriod, "base heartbeat period (managerd --heartbeat-period)")
	verbose := flag.Bool("v", false, "print the tail of the cluster log (warnings) at the end")
	flag.Parse()

	level := slog.LevelError
	var logTo *os.File
	if *verbose {
		level, logTo = slog.LevelWarn, os.Stderr
	}
	t0 := time.Now()
	c, err := testcluster.Start(testcluster.StartOptions{Managers: *managers, Workers: *workers, LogLevel: level, Options: testcluster.Options{
		Timings: raft.DefaultTimings(), Sync: !*noSync, HeartbeatPeriod: *hb, SharedLoopback: true, MaxRecvMsgSize: 512 << 20,
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start cluster:", err)
		os.Exit(1)
	}
	defer c.CloseLog(logTo)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; c.CloseLog(logTo); os.Exit(130) }()
	nodes := *managers + *workers
	period := max(*hb, time.Duration(nodes)*time.Second/api.MaxHeartbeatRate)
	fmt.Printf("cluster: %d managers + %d workers, all Ready after %v (fsync %v)\n", *managers, *workers, time.Since(t0).Round(time.Millisecond), !*noSync)
	fmt.Printf("heartbeat period %v, TTL %v, leader receives about %.0f heartbeats/s\n",
		period, api.HeartbeatTTL(period), float64(nodes)/period.Seconds())

	if err := bench(c, *replicas, *rounds, nodes); err != nil {
		fmt.Fprintln(os.Stderr, err)
		c.CloseLog(os.Stderr)
		os.Exit(1)
	}
}

func bench(c *testcluster.Cluster, replicas, rounds, nodes int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	ctl := leader.Control()
	st := leader.Node.Manager().Store()
	const name = "loss"
	w := testcluster.WatchService(st, name)
	defer w.Close()
	all := w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning == replicas })
	start := time.Now()
	if _, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: name, Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}, Replicas: uint64(replicas),
	}}); err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	if _, err := all(ctx); err != nil {
		return fmt.Errorf("waiting for %d running: %+v", replicas, w.Tally())
	}
	fmt.Printf("service %q: %d/%d running after %v\n\n", name, replicas, replicas, time.Since(start).Round(time.Millisecond))

	byID := map[string]*testcluster.Member{}
	for _, m := range c.Workers() {
		byID[m.NodeID()] = m
	}
	var downs, recs []time.Duration
	fmt.Printf("%-5s %-5s %5s %9s %9s %9s\n", "round", "node", "tasks", "Stop()", "Down", "recovered")
	for r := 1; r <= rounds; r++ {
		// The worker running the most replicas.
		var victim *testcluster.Member
		most := 0
		for id, n := range w.Tally().PerNode {
			if m := byID[id]; m != nil && n > most {
				victim, most = m, n
			}
		}
		if victim == nil {
			return fmt.Errorf("no worker runs a task: %+v", w.Tally())
		}
		id := victim.NodeID()
		recovered := w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning == replicas && t.PerNode[id] == 0 })
		down := awaitDown(st, id)

		t0 := time.Now()
		victim.Stop()
		stopped := time.Since(t0)
		at, err := down(ctx)
		if err != nil {
			return fmt.Errorf("round %d: %s never marked Down: %w", r, victim.Name, err)
		}
		dDown := at.Sub(t0)
		at, err = recovered(ctx)
		if err != nil {
			return fmt.Errorf("round %d: tasks not recovered (%+v): %w", r, w.Tally(), err)
		}
		dRec := at.Sub(t0)
		downs, recs = append(downs, dDown), append(recs, dRec)
		fmt.Printf("%-5d %-5s %5d %9s %9s %9s\n", r, victim.Name, most, ms(stopped), ms(dDown), ms(dRec))

		// Bring the node back and let the cluster settle: all nodes Ready,
		// and the stale tasks on the returning node stopped.
		if err := victim.Restart(); err != nil {
			return err
		}
		sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
		err = c.WaitReady(sctx, nodes)
		if err == nil {
			_, err = w.Await(func(t *testcluster.Tally) bool { return t.Running == replicas && t.LiveRunning == replicas })(sctx)
		}
		scancel()
		if err != nil {
			return fmt.Errorf("round %d: cluster did not settle after restarting %s (%+v): %w", r, victim.Name, w.Tally(), err)
		}
	}
	sd, sr := cluster.Summarize(downs), cluster.Summarize(recs)
	fmt.Printf("\n%d rounds: node Down after min %v / median %v / max %v; all %d replicas RUNNING elsewhere after min %v / median %v / max %v (target <= 5s)\n",
		rounds, sd.Min.Round(time.Millisecond), sd.P50.Round(time.Millisecond), sd.Max.Round(time.Millisecond),
		replicas, sr.Min.Round(time.Millisecond), sr.P50.Round(time.Millisecond), sr.Max.Round(time.Millisecond))
	return nil
}

// awaitDown returns a wait for the node's status to turn Down in st,
// timed when the event is taken off the store watch.
func awaitDown(st *state.Store, id string) func(context.Context) (time.Time, error) {
	at := make(chan time.Time, 1)
	events, cancel := st.ViewAndWatch(func(tx state.ReadTx) {
		if n := tx.GetNode(id); n != nil && n.Status == swarmpb.NodeStatus_NODE_STATUS_DOWN {
			at <- time.Now()
		}
	})
	go func() {
		defer cancel()
		if len(at) > 0 {
			return
		}
		for ev := range events {
			if n := ev.Node(); n != nil && n.Id == id && n.Status == swarmpb.NodeStatus_NODE_STATUS_DOWN {
				at <- time.Now()
				return
			}
		}
	}()
	return func(ctx context.Context) (time.Time, error) {
		select {
		case t := <-at:
			return t, nil
		case <-ctx.Done():
			cancel()
			return time.Time{}, ctx.Err()
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
