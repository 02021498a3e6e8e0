// Command services times a large service end to end on an in-process
// cluster with fake container engines (internal/testcluster): 3 managers
// and 200 workers, raft.DefaultTimings(), fsync on, 1 s heartbeats.
//
// Each run creates a service of -replicas replicas through the Control API
// over the leader's unix socket and times, from the CreateService call,
// until every task is RUNNING in the leader's store (a store watch, so the
// figure is not quantised by polling); then it scales the service to 0
// with UpdateService and times until no task is live (desired RUNNING) and
// none is RUNNING. The service is then removed and the next run waits until
// its tasks are gone from the store.
//
//	go run ./bench/services [-workers 200] [-replicas 10000] [-runs 3] [-nosync] [-cpuprofile FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/protobuf/proto"
)

func main() {
	managers := flag.Int("managers", 3, "managers")
	workers := flag.Int("workers", 200, "workers (simulated nodes with fake engines)")
	replicas := flag.Int("replicas", 10000, "replicas of the service")
	runs := flag.Int("runs", 3, "create/scale-to-0 runs on the same cluster")
	noSync := flag.Bool("nosync", false, "skip fsync of the Raft log")
	hb := flag.Duration("heartbeat-period", 0, "base heartbeat period (0: the default, 1s)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed phases to this file")
	verbose := flag.Bool("v", false, "print the tail of the cluster log at the end")
	logLevel := flag.String("log-level", "", "cluster log level (default error; warn with -v)")
	flag.BoolVar(&probeBatches, "probe", false, "print what each Raft batch did to the tasks")
	flag.DurationVar(&traceEvery, "trace", 0, "print the task counts at this interval during the timed phases")
	flag.Parse()

	level := slog.LevelError
	if *verbose {
		level = slog.LevelWarn
	}
	if *logLevel != "" {
		if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	var profFile *os.File
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		profFile = f
	}
	t0 := time.Now()
	c, err := testcluster.Start(testcluster.StartOptions{Managers: *managers, Workers: *workers, LogLevel: level, Options: testcluster.Options{
		Timings: raft.DefaultTimings(), Sync: !*noSync, HeartbeatPeriod: *hb, SharedLoopback: true, MaxRecvMsgSize: 512 << 20,
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start cluster:", err)
		os.Exit(1)
	}
	var logTo *os.File
	if *verbose {
		logTo = os.Stderr
	}
	defer c.CloseLog(logTo)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; c.CloseLog(logTo); os.Exit(130) }()

	fmt.Printf("cluster: %d managers + %d workers, all Ready after %v (fsync %v, heartbeat %v)\n",
		*managers, *workers, time.Since(t0).Round(time.Millisecond), !*noSync, orDefault(*hb))

	if profFile != nil {
		if err := pprof.StartCPUProfile(profFile); err != nil {
			fmt.Fprintln(os.Stderr, err)
			c.CloseLog(logTo)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	var ups, downs []time.Duration
	fmt.Printf("%-4s %9s %9s %9s %9s %9s | %9s %9s\n", "run", "create", "created", "assigned", "RUNNING", "ListTasks", "scale->0", "all down")
	for r := 1; r <= *runs; r++ {
		res, err := run(c, fmt.Sprintf("bench-%d", r), *replicas)
		if err != nil {
			fmt.Fprintf(os.Stderr, "run %d: %v\n", r, err)
			pprof.StopCPUProfile()
			c.CloseLog(os.Stderr) // os.Exit skips the deferred Close
			os.Exit(1)
		}
		ups = append(ups, res.running)
		downs = append(downs, res.down)
		fmt.Printf("%-4d %9s %9s %9s %9s %9s | %9s %9s   (removed, tasks gone after %v)\n", r,
			ms(res.rpc), ms(res.created), ms(res.assigned), ms(res.running), ms(res.listed),
			ms(res.downRPC), ms(res.down), res.gone.Round(time.Millisecond))
	}
	su, sd := cluster.Summarize(ups), cluster.Summarize(downs)
	fmt.Printf("\n%d replicas on %d nodes, %d runs:\n", *replicas, *managers+*workers, *runs)
	fmt.Printf("  create -> all RUNNING: min %v median %v max %v (target <= 5s)\n", su.Min.Round(time.Millisecond), su.P50.Round(time.Millisecond), su.Max.Round(time.Millisecond))
	fmt.Printf("  scale to 0 -> none live or running: min %v median %v max %v (target <= 5s)\n", sd.Min.Round(time.Millisecond), sd.P50.Round(time.Millisecond), sd.Max.Round(time.Millisecond))
}

func orDefault(d time.Duration) time.Duration {
	if d == 0 {
		return time.Second
	}
	return d
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }

var (
	traceEvery   time.Duration
	probeBatches bool
)

// trace prints the watcher's counts every traceEvery until stop is closed.
func trace(w *testcluster.Watcher, start time.Time, stop chan struct{}) {
	if traceEvery <= 0 {
		return
	}
	t := time.NewTicker(traceEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			y := w.Tally()
			fmt.Printf("  +%6s total %5d live %5d assigned %5d running %5d live+running %5d\n",
				ms(time.Since(start)), y.Total, y.Live, y.Assigned, y.Running, y.LiveRunning)
		}
	}
}

type result struct {
	rpc, created, assigned, running, listed time.Duration // from the CreateService call
	downRPC, down                           time.Duration // from the UpdateService call
	gone                                    time.Duration // from RemoveService
}

func run(c *testcluster.Cluster, name string, n int) (result, error) {
	var res result
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		return res, err
	}
	ctl := leader.Control()
	w := testcluster.WatchService(leader.Node.Manager().Store(), name)
	defer w.Close()
	created := w.Await(func(t *testcluster.Tally) bool { return t.Live >= n })
	assigned := w.Await(func(t *testcluster.Tally) bool { return t.Assigned >= n })
	running := w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning >= n })

	spec := &swarmpb.ServiceSpec{
		Name:      name,
		Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"},
		Replicas:  uint64(n),
	}
	start := time.Now()
	stopTrace := make(chan struct{})
	go trace(w, start, stopTrace)
	if probeBatches {
		defer probe(leader.Node.Manager().Store(), start)()
	}
	cr, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec})
	if err != nil {
		return res, fmt.Errorf("create service: %w", err)
	}
	res.rpc = time.Since(start)
	for _, x := range []struct {
		wait func(context.Context) (time.Time, error)
		out  *time.Duration
		what string
	}{{created, &res.created, "created"}, {assigned, &res.assigned, "assigned"}, {running, &res.running, "running"}} {
		at, err := x.wait(ctx)
		if err != nil {
			return res, fmt.Errorf("waiting for all tasks %s (%+v): %w", x.what, w.Tally(), err)
		}
		*x.out = at.Sub(start)
	}
	close(stopTrace)
	// Confirm through the API, as a client would see it.
	for {
		tasks, _, err := listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Services: []string{name}})
		if err != nil {
			return res, fmt.Errorf("list tasks: %w", err)
		}
		nr := 0
		for _, t := range tasks {
			if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING {
				nr++
			}
		}
		if nr == n {
			res.listed = time.Since(start)
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("ListTasks shows %d of %d running", nr, n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Scale to 0.
	down := w.Await(func(t *testcluster.Tally) bool { return t.Live == 0 && t.Running == 0 })
	gs, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: cr.Service.Id})
	if err != nil {
		return res, err
	}
	spec0 := proto.Clone(gs.Service.Spec).(*swarmpb.ServiceSpec)
	spec0.Replicas = 0
	start = time.Now()
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: cr.Service.Id, Version: gs.Service.Meta.Version, Spec: spec0}); err != nil {
		return res, fmt.Errorf("scale to 0: %w", err)
	}
	res.downRPC = time.Since(start)
	at, err := down(ctx)
	if err != nil {
		return res, fmt.Errorf("waiting for scale to 0 (%+v): %w", w.Tally(), err)
	}
	res.down = at.Sub(start)

	// Remove it and wait until its tasks are gone, so runs do not overlap.
	gone := w.Await(func(t *testcluster.Tally) bool { return t.Total == 0 })
	start = time.Now()
	if _, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: cr.Service.Id}); err != nil {
		return res, fmt.Errorf("remove service: %w", err)
	}
	at, err = gone(ctx)
	if err != nil {
		return res, fmt.Errorf("waiting for the tasks to be removed (%+v): %w", w.Tally(), err)
	}
	res.gone = at.Sub(start)
	return res, nil
}
