// Command scale measures raftswarm at scale: 3 managers (drained, so they
// only manage) and -workers simulated nodes, each a real node (node.New)
// with its own certificate, its own agent, its own mTLS gRPC session with
// the leader and a fake engine (agent/exec/fake). The simulated nodes
// always run in this process (internal/testcluster); the managers run
//
//   - with -daemons, as managerd processes (--engine fake, fsync on,
//     default Raft timings, --data-port 0) on 127.0.0.11, .12, ...,
//     built from this checkout (run from the module root) or taken from
//     -bin: the leader's CPU and
//     peak RSS are read from its own /proc/PID (RSS sampled every 100 ms),
//     the create and the scale to 0 are timed from the service's counts
//     (ListServices, every -poll: late by up to -poll plus one short call;
//     counts.go), and the leader's tasks are listed over its socket every
//     -poll for the checks, the update and the failover (times read from
//     listings are late by up to -poll plus one listing); each manager's
//     CPU over the create and the scale to 0 is printed, and
//     -daemon-profile profiles them over those phases and the failover;
//   - without it, in this process too (the original harness): times are
//     read from a watch on the leader's store, exact, but CPU and memory
//     are the whole process's, all managers and all nodes together.
//
// For each point of the curve (-replicas, comma-separated) it creates one
// service of that many replicas and times, each from the API call that
// starts it:
//
//   - create -> all RUNNING (in the leader's store);
//   - a rolling update of all of them (parallelism 0: the orchestrator's
//     own batches) -> all RUNNING the new spec;
//   - scale to 0 -> none live and none RUNNING;
//
// and, with -failover, a second create of the same size during which the
// leader is stopped (a managerd process: SIGKILL; in-process: Stop) once
// half the containers run on the engines: the time until a new leader is
// elected (with -daemons, from the new leader's log: see failover.go),
// until it makes progress (the store shows more tasks RUNNING
// than the engines ran at the stop), and until all run. The stopped
// manager is then started again on its state.
//
// After every create and update it checks, rather than assumes, that no
// task was lost or duplicated: in the leader's store, every slot 1..N has
// exactly one live RUNNING task and no other task is RUNNING; on the
// engines, the fake containers running add up to exactly N, one per slot.
//
// Formation: -join-report N prints the join rate every N joined nodes (a
// rate falling as nodes join is work growing with the nodes already in);
// -start-cpuprofile profiles this process during the formation; and
// -only-start stops after it and the idle sample.
//
//	go run ./bench/scale [-daemons [-bin DIR] [-poll 250ms]] [-workers 1000] [-replicas 10000,30000,100000]
//	                     [-failover] [-no-update] [-nosync] [-heartbeat-period D] [-log-level error]
//	                     [-cpuprofile FILE] [-memprofile FILE] [-trace 1s]
//	                     [-join-report 100] [-start-cpuprofile FILE] [-only-start] [-goroutine-profile FILE]
//	                     [-keep-logs DIR] [-failover-log] [-daemon-profile PREFIX] [-manager-log-level debug]
//
// After each phase it prints the tasks shut down so far by why (state and
// message; "ORPHANED node is down" is a task replaced because its node was
// marked Down). With -daemons, -keep-logs copies the managers' logs and
// the simulated nodes' log (-log-level) into DIR at the end, and the
// failover is also timed on the engines (exact, but counting containers
// of tasks being replaced too).
//
// -nosync applies to in-process managers only (managerd always fsyncs);
// -cpuprofile, -memprofile and -start-cpuprofile profile this process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // -pprof
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var traceEvery time.Duration

func main() {
	managers := flag.Int("managers", 3, "managers (drained: they run no tasks)")
	workers := flag.Int("workers", 1000, "simulated nodes (real agents with fake engines)")
	curve := flag.String("replicas", "10000,30000,100000", "comma-separated replica counts, one point each")
	failover := flag.Bool("failover", false, "also time a create during which the leader is stopped")
	noUpdate := flag.Bool("no-update", false, "skip the rolling update")
	noSync := flag.Bool("nosync", false, "skip fsync of the Raft log")
	hb := flag.Duration("heartbeat-period", 0, "base heartbeat period (0: the node's default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed phases to this file")
	memprofile := flag.String("memprofile", "", "write a heap profile at the largest point's peak to this file")
	logLevel := flag.String("log-level", "error", "cluster log level")
	startProfile := flag.String("start-cpuprofile", "", "write a CPU profile of the cluster's formation to this file")
	joinEvery := flag.Int("join-report", 0, "print the join rate every this many joined nodes (0: never)")
	onlyStart := flag.Bool("only-start", false, "form the cluster, print its figures and stop")
	goroutines := flag.String("goroutine-profile", "", "write this process's goroutines (pprof, by stack) after the idle sample to this file")
	daemons := flag.Bool("daemons", false, "run the managers as managerd processes (--engine fake), the simulated nodes in this process: the leader's CPU and RSS are its own")
	binDir := flag.String("bin", "", "with -daemons: directory holding managerd and swarmctl (default: build them)")
	poll := flag.Duration("poll", 250*time.Millisecond, "with -daemons: how often the service's counts are read (times are late by up to this plus one read; tasks are listed only for the checks)")
	flag.DurationVar(&traceEvery, "trace", 0, "print the task counts at this interval during the timed phases")
	selfPprof := flag.String("pprof", "", "serve this process's pprof (the simulated nodes' agents) on this loopback address, e.g. 127.0.0.1:9199")
	gogc := flag.Int("gogc", 0, "this process's GC percent (the simulated nodes' agents; the managers keep theirs); 0: Go's default or $GOGC")
	flag.Parse()
	if *gogc > 0 {
		debug.SetGCPercent(*gogc)
	}
	if *selfPprof != "" {
		go func() {
			if err := http.ListenAndServe(*selfPprof, nil); err != nil {
				fmt.Fprintln(os.Stderr, "-pprof:", err)
			}
		}()
	}

	var points []int
	for _, s := range strings.Split(*curve, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fatalf("-replicas: %q is not a positive count", s)
		}
		points = append(points, n)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fatalf("-log-level: %v", err)
	}

	var t target
	var pid func() int // the process whose memory and CPU are the leader's
	stopStartProfile := func() {}
	if *startProfile != "" {
		stopStartProfile = startCPUProfile(*startProfile)
	}
	t0 := time.Now()
	opts := testcluster.StartOptions{Managers: *managers, Workers: *workers, LogLevel: level, JoinParallel: 32, Timeout: 30 * time.Minute,
		Joined:  joinReporter(*joinEvery, t0),
		Options: testcluster.Options{Timings: raft.DefaultTimings(), Sync: !*noSync, HeartbeatPeriod: *hb, SharedLoopback: true, MaxRecvMsgSize: 1 << 30}}
	if *daemons {
		p, token, err := startProcs(*binDir, *managers, *hb, *poll)
		if err != nil {
			fatalf("start the managerd processes: %v", err)
		}
		fmt.Printf("managers: %d managerd processes up and drained after %v; load %s\n", *managers, time.Since(t0).Round(time.Millisecond), proccpu.LoadAvg())
		t0 = time.Now()
		opts.External = p.joinTarget(token)
		c, err := testcluster.Start(opts)
		if err != nil {
			p.close()
			fatalf("start the simulated nodes: %v", err)
		}
		p.workers = c
		t = p
		pid = func() int { _, pid := p.leader(); return pid }
	} else {
		c, err := testcluster.Start(opts)
		if err != nil {
			fatalf("start cluster: %v", err)
		}
		t = inproc{c}
		pid = os.Getpid
		if err := drainManagers(c); err != nil {
			t.close()
			fatalf("drain managers: %v", err)
		}
	}
	stopStartProfile()
	mem := startMemSampler(pid, !*daemons)
	cpu := &cpuMeter{pid: pid}
	defer t.close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; t.close(); os.Exit(130) }()
	fmt.Printf("cluster: %d managers + %d workers Ready after %v (%s); load %s\n",
		*managers, *workers, time.Since(t0).Round(time.Millisecond), mode(*daemons, *noSync), proccpu.LoadAvg())
	mem.reset()
	cpu.reset()
	self := &cpuMeter{pid: os.Getpid}
	self.reset()
	time.Sleep(5 * time.Second) // the idle sample; not a timed phase
	idle := mem.peak()
	fmt.Printf("idle cluster: %s RSS %s, heap in use %s, CPU %.2f cores over 5 s; this process: RSS %s, CPU %.2f cores, %d goroutines\n",
		memWhose(*daemons), mib(idle.rss), mib(idle.heap), cpu.cores(), mib(rss(os.Getpid())), self.cores(), runtime.NumGoroutine())

	if *goroutines != "" {
		writeProfile("goroutine", *goroutines)
	}
	if *onlyStart {
		return
	}
	if *cpuprofile != "" {
		defer startCPUProfile(*cpuprofile)()
	}

	var rows []row
	for i, n := range points {
		b := &bench{t: t, mem: mem, cpu: cpu, self: self}
		r, err := b.point(fmt.Sprintf("scale-%d", i+1), n, !*noUpdate)
		if err != nil {
			fail(t, "%d replicas: %v", n, err)
		}
		if *memprofile != "" && i == len(points)-1 {
			writeHeap(*memprofile)
		}
		rows = append(rows, r)
		if *failover {
			r, err := b.failoverPoint(fmt.Sprintf("scale-fo-%d", i+1), n)
			if err != nil {
				fail(t, "%d replicas, failover: %v", n, err)
			}
			rows = append(rows, r)
		}
	}
	fmt.Printf("\n%d workers; idle RSS %s (%s). Times from the API call; rates are tasks/s; CPU in cores and RSS peak of %s; here: this process's CPU.\n",
		*workers, mib(idle.rss), memWhose(*daemons), memWhose(*daemons))
	fmt.Printf("%-9s %8s | %9s %8s | %9s | %9s | %9s %9s %9s | %9s %9s %6s %6s | %s\n", "", "tasks",
		"create", "tasks/s", "update", "scale->0", "elected", "progress", "leaderless", "peak RSS", "peak heap", "CPU", "here", "checks")
	for _, r := range rows {
		fmt.Println(r)
	}
}

func startCPUProfile(path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		fatalf("%v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fatalf("%v", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// joinReporter prints, every `every` joined workers, how long the last
// `every` joins took: a rate that falls as the cluster grows is work
// that grows with the nodes already joined.
func joinReporter(every int, t0 time.Time) func(int) {
	if every <= 0 {
		return nil
	}
	var mu sync.Mutex
	last := t0
	return func(n int) {
		if n%every != 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		fmt.Printf("  joined %5d: last %d in %v (%.1f/s); load %s\n", n, every, now.Sub(last).Round(time.Millisecond), float64(every)/now.Sub(last).Seconds(), proccpu.LoadAvg())
		last = now
	}
}

func fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	os.Exit(1)
}

func fail(t target, f string, a ...any) {
	pprof.StopCPUProfile()
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	t.close()
	os.Exit(1)
}

func mode(daemons, noSync bool) string {
	if daemons {
		return "managers in managerd processes, fsync on"
	}
	return fmt.Sprintf("all in this process, fsync %v", !noSync)
}

// memWhose says whose memory and CPU the figures are.
func memWhose(daemons bool) string {
	if daemons {
		return "the leader's managerd process"
	}
	return "this whole process (3 managers and every simulated node)"
}

func writeProfile(name, path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

type row struct {
	what                      string
	n                         int
	create, update, down      time.Duration
	elected, progress, served time.Duration
	rss, heap                 uint64
	cpu, self                 float64 // cores over the point: the leader's process, this one
	checks                    string
}

func (r row) String() string {
	d := func(x time.Duration) string {
		if x == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fs", x.Seconds())
	}
	rate := "-"
	if r.create > 0 {
		rate = fmt.Sprintf("%.0f", float64(r.n)/r.create.Seconds())
	}
	return fmt.Sprintf("%-9s %8d | %9s %8s | %9s | %9s | %9s %9s %9s | %9s %9s %6.2f %6.2f | %s", r.what, r.n,
		d(r.create), rate, d(r.update), d(r.down), d(r.elected), d(r.progress), d(r.served), mib(r.rss), mib(r.heap), r.cpu, r.self, r.checks)
}

type bench struct {
	t    target
	mem  *memSampler
	cpu  *cpuMeter // the leader's process
	self *cpuMeter // this process (with -daemons: the simulated nodes)
}

// point creates, checks, updates, checks, scales to 0 and removes.
func (b *bench) point(name string, n int, update bool) (row, error) {
	r := row{what: "create", n: n}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.mem.reset()
	b.cpu.reset()
	b.self.reset()
	ctl, err := b.t.control(ctx)
	if err != nil {
		return r, err
	}
	// With -daemons the create is timed from the service's counts
	// (counts.go), and the tasks are listed only for the check after it.
	pr, counted := b.t.(*procs)
	var w *testcluster.Watcher
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	running := func(context.Context) (time.Time, error) { return time.Time{}, nil }
	stop := func() {}
	if !counted {
		w = b.t.watch(name)
		running = w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning >= n })
		stop = trace(w, name)
	}
	meter := b.phaseMeter(name + " create")
	start := time.Now()
	cr, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: name, Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}, Replicas: uint64(n),
		Update: &swarmpb.UpdateConfig{Parallelism: 0},
	}})
	if err != nil {
		stop()
		return r, fmt.Errorf("create service: %w", err)
	}
	var at time.Time
	if counted {
		at, err = pr.awaitCounts(ctx, name, name, func(si *swarmpb.ServiceInfo) bool { return si.Running >= uint64(n) })
	} else {
		at, err = running(ctx)
	}
	meter()
	stop()
	if err != nil {
		if w != nil {
			err = fmt.Errorf("%s: %w", brief(w.Tally()), err)
		}
		return r, fmt.Errorf("waiting for %d running: %w", n, err)
	}
	if counted {
		w = b.t.watch(name)
		if _, err := w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning >= n })(ctx); err != nil {
			return r, fmt.Errorf("listing the %d running tasks for the check (%s): %w", n, brief(w.Tally()), err)
		}
	}
	r.create = at.Sub(start)
	fmt.Printf("%s: %d tasks created -> RUNNING in %v (%.0f tasks/s); load %s\n", name, n, r.create.Round(time.Millisecond), float64(n)/r.create.Seconds(), proccpu.LoadAvg())
	if err := b.check(ctx, w, n, ""); err != nil {
		return r, fmt.Errorf("after the create: %w", err)
	}
	created := w.Tally().Created
	fmt.Printf("%s: the create made %s%s\n", name, extra(created, n), shutdowns(w.Tally()))
	checks := []string{fmt.Sprintf("create ok (%d made)", created)}

	if update {
		stop := func() {}
		if counted {
			// Timed from the counts (running_current), with no listing
			// of every task meanwhile: listing 100,000 tasks every poll
			// was load on the leader and on this process.
			w.Close()
		} else {
			stop = trace(w, name)
		}
		meter := b.phaseMeter(name + " update")
		start, err = updateSpec(ctx, ctl, cr.Service.Id, func(spec *swarmpb.ServiceSpec) { spec.Container.Image = "raftswarm/demo:v2" })
		if err != nil {
			stop()
			return r, fmt.Errorf("rolling update: %w", err)
		}
		var at time.Time
		if counted {
			at, err = pr.awaitCounts(ctx, name, "update", func(si *swarmpb.ServiceInfo) bool { return si.RunningCurrent >= uint64(n) })
		} else {
			at, err = b.awaitImage(ctx, w, n, "raftswarm/demo:v2")
		}
		meter()
		stop()
		if err != nil {
			return r, fmt.Errorf("rolling update: %w", err)
		}
		if counted {
			// The check below reads a listing: one that shows every task
			// on the new image.
			w = b.t.watch(name)
			if _, err := b.awaitImage(ctx, w, n, "raftswarm/demo:v2"); err != nil {
				return r, fmt.Errorf("listing the %d updated tasks for the check: %w", n, err)
			}
		}
		r.update = at.Sub(start)
		fmt.Printf("%s: rolling update of %d in %v; load %s\n", name, n, r.update.Round(time.Millisecond), proccpu.LoadAvg())
		if err := b.check(ctx, w, n, "raftswarm/demo:v2"); err != nil {
			return r, fmt.Errorf("after the update: %w", err)
		}
		made := w.Tally().Created - created
		fmt.Printf("%s: the update made %s%s\n", name, extra(made, n), shutdowns(w.Tally()))
		checks = append(checks, fmt.Sprintf("update ok (%d made)", made))
	}

	var down time.Duration
	if counted {
		// No listing while the scale-down is timed: it would be load on
		// the leader. A new watcher follows the remove.
		w.Close()
		down, err = b.scaleDownCounted(ctx, ctl, pr, name, cr.Service.Id)
		w = b.t.watch(name)
	} else {
		down, err = b.scaleDown(ctx, ctl, w, cr.Service.Id)
	}
	if err != nil {
		return r, err
	}
	r.down = down
	fmt.Printf("%s: scale to 0 in %v; load %s\n", name, down.Round(time.Millisecond), proccpu.LoadAvg())
	p := b.mem.peak()
	r.rss, r.heap = p.rss, p.heap
	r.cpu, r.self = b.cpu.cores(), b.self.cores()
	r.checks = strings.Join(checks, ", ")
	return r, b.remove(ctx, ctl, w, cr.Service.Id)
}

// failoverPoint creates n replicas and stops the leader once half run;
// then restarts the stopped manager and waits for it to be back.
func (b *bench) failoverPoint(name string, n int) (row, error) {
	r := row{what: "failover", n: n}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.mem.reset()
	b.cpu.reset()
	b.self.reset()
	ctl, err := b.t.control(ctx)
	if err != nil {
		return r, err
	}
	start := time.Now()
	cr, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: name, Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}, Replicas: uint64(n),
	}})
	if err != nil {
		return r, fmt.Errorf("create service: %w", err)
	}
	// Half running is read from the engines, which are in this process
	// and exact at once (with -daemons the leader's store is only
	// polled): the leader is stopped once n/2 containers run.
	seen := map[string]bool{}
	for {
		if b.engineRunning() >= n/2 {
			for _, f := range b.t.engines() {
				for _, id := range f.RunningTasks() {
					seen[id] = true
				}
			}
			break
		}
		if !retry.Sleep(ctx, 5*time.Millisecond) {
			return r, fmt.Errorf("waiting for half running on the engines (%d): %w", b.engineRunning(), ctx.Err())
		}
	}
	old, _ := b.t.leader()
	fmt.Printf("%s: %d of %d running after %v: stopping the leader %s\n", name, len(seen), n, time.Since(start).Round(time.Millisecond), old)
	pr, daemons := b.t.(*procs)
	if daemons {
		pr.signalSurvivors(syscall.SIGUSR1) // the survivors' profiles cover the failover
		defer pr.signalSurvivors(syscall.SIGUSR2)
	}
	killed := time.Now()
	old, restart, err := b.t.stopLeader(ctx)
	if err != nil {
		return r, fmt.Errorf("stop the leader: %w", err)
	}
	engines := b.engineTimeline(ctx, killed, len(seen), n)
	var nl string
	for {
		// With -daemons, the new leader's log says when it took office
		// (Info over a loaded manager's socket answers seconds late).
		if daemons {
			if who, at, ok := pr.electedAt(killed); ok {
				nl, r.elected = who, at.Sub(killed)
				fmt.Printf("%s: %s's log: leadership acquired %v after the kill (seen %v after it)\n", name, who, r.elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
				pr.printFailoverLog(killed, at)
				break
			}
		} else if l, _ := b.t.leader(); l != "" && l != old {
			nl, r.elected = l, time.Since(killed)
			break
		}
		if !retry.Sleep(ctx, 10*time.Millisecond) {
			return r, fmt.Errorf("no new leader: %w", ctx.Err())
		}
	}
	// With -daemons progress and the end are read from the service's
	// counts (counts.go): a listing of every task each poll was load on a
	// new leader that is busy resuming 1,000 nodes, and its figure was late
	// by as much as a listing took. The tasks are listed for the check
	// after; the listing then holds every task the store has.
	var w *testcluster.Watcher
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var progress, running func(context.Context) (time.Time, error)
	stop := func() {}
	if daemons {
		progress = func(ctx context.Context) (time.Time, error) {
			return pr.awaitCounts(ctx, name, name+" progress", func(si *swarmpb.ServiceInfo) bool { return si.Running > uint64(len(seen)) })
		}
		running = func(ctx context.Context) (time.Time, error) {
			return pr.awaitCounts(ctx, name, name+" running", func(si *swarmpb.ServiceInfo) bool { return si.Running >= uint64(n) })
		}
	} else {
		w = b.t.watch(name)
		progress = w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning > len(seen) })
		running = w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning >= n })
		stop = trace(w, name)
	}
	// With -daemons the tasks are polled: all may have been seen RUNNING
	// already when the leader was stopped, and there is no progress to time.
	if len(seen) < n {
		at, err := progress(ctx)
		if err != nil {
			stop()
			return r, fmt.Errorf("no progress under %s: %w", nl, err)
		}
		r.progress = at.Sub(killed)
	}
	at, err := running(ctx)
	if daemons {
		pr.signalSurvivors(syscall.SIGUSR2) // profiles written while the processes run
	}
	stop()
	if err != nil {
		return r, fmt.Errorf("waiting for %d running under %s: %w", n, nl, err)
	}
	if w == nil {
		w = b.t.watch(name)
		if _, err := w.Await(func(t *testcluster.Tally) bool { return t.LiveRunning >= n })(ctx); err != nil {
			return r, fmt.Errorf("listing the %d running tasks for the check (%s): %w", n, brief(w.Tally()), err)
		}
	}
	r.create = at.Sub(start)
	r.served = at.Sub(killed)
	fmt.Printf("%s: %s\n", name, engines())
	fmt.Printf("%s: new leader %s elected %v after the stop, progress after %v, all %d RUNNING %v after the create (%v after the stop); load %s\n",
		name, nl, r.elected.Round(time.Millisecond), r.progress.Round(time.Millisecond), n, r.create.Round(time.Millisecond), r.served.Round(time.Millisecond), proccpu.LoadAvg())
	if err := b.check(ctx, w, n, ""); err != nil {
		return r, fmt.Errorf("after the failover: %w", err)
	}
	p := b.mem.peak()
	r.rss, r.heap = p.rss, p.heap
	r.cpu, r.self = b.cpu.cores(), b.self.cores()
	// The watch began on the new leader, after the stop: it counts the
	// tasks in its store then and every one created since.
	made := w.Tally().Created
	fmt.Printf("%s: the create, across the failover, made %s%s\n", name, extra(made, n), shutdowns(w.Tally()))
	r.checks = fmt.Sprintf("failover ok (%d made)", made)
	ctl, err = b.t.control(ctx)
	if err != nil {
		return r, err
	}
	if err := b.remove(ctx, ctl, w, cr.Service.Id); err != nil {
		return r, err
	}
	// Bring the old leader back, so that the next point has every manager.
	if err := restart(ctx); err != nil {
		return r, fmt.Errorf("after restarting %s: %w", old, err)
	}
	return r, nil
}

func (b *bench) scaleDown(ctx context.Context, ctl swarmpb.ControlClient, w *testcluster.Watcher, id string) (time.Duration, error) {
	down := w.Await(func(t *testcluster.Tally) bool { return t.Live == 0 && t.Running == 0 })
	stop := trace(w, "scale->0")
	defer stop()
	meter := b.phaseMeter("scale->0")
	start, err := updateSpec(ctx, ctl, id, func(spec *swarmpb.ServiceSpec) { spec.Replicas = 0 })
	if err != nil {
		return 0, fmt.Errorf("scale to 0: %w", err)
	}
	at, err := down(ctx)
	meter()
	if err != nil {
		return 0, fmt.Errorf("waiting for scale to 0 (%s): %w", brief(w.Tally()), err)
	}
	return at.Sub(start), nil
}

// updateSpec changes the service's spec with change and returns when the
// update call was made. The orchestrator writes the service too (its
// update status), so a call refused as Aborted (the version read is
// stale) is read and made again; the time is that of the call that
// succeeded.
func updateSpec(ctx context.Context, ctl swarmpb.ControlClient, id string, change func(*swarmpb.ServiceSpec)) (time.Time, error) {
	for attempt := 1; ; attempt++ {
		gs, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
		if err != nil {
			return time.Time{}, err
		}
		spec := proto.Clone(gs.Service.Spec).(*swarmpb.ServiceSpec)
		change(spec)
		start := time.Now()
		_, err = ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: id, Version: gs.Service.Meta.Version, Spec: spec})
		if err == nil {
			return start, nil
		}
		if status.Code(err) != codes.Aborted || attempt == 10 {
			return time.Time{}, err
		}
	}
}

func (b *bench) remove(ctx context.Context, ctl swarmpb.ControlClient, w *testcluster.Watcher, id string) error {
	gone := w.Await(func(t *testcluster.Tally) bool { return t.Total == 0 })
	if _, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: id}); err != nil {
		return fmt.Errorf("remove service: %w", err)
	}
	if _, err := gone(ctx); err != nil {
		return fmt.Errorf("waiting for the tasks to be removed (%s): %w", brief(w.Tally()), err)
	}
	// The engines must be empty too before the next point.
	for {
		if c := b.engineRunning(); c == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("containers still running on the engines after the remove")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitImage waits until n live tasks run image, polling the watcher's
// copy (every 20 ms: the figure is quantised by that much).
func (b *bench) awaitImage(ctx context.Context, w *testcluster.Watcher, n int, image string) (time.Time, error) {
	for {
		c := 0
		for _, t := range w.Tasks() {
			if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING &&
				t.GetSpec().GetContainer().GetImage() == image {
				c++
			}
		}
		if c >= n {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%d of %d running %s: %w", c, n, image, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// engineTimeline follows the containers running on the engines (in this
// process: exact, unlike a listing of a loaded leader's store) from the
// kill, and returns a function that describes when more than seen ran and
// when n ran, each after the kill.
func (b *bench) engineTimeline(ctx context.Context, killed time.Time, seen, n int) func() string {
	var mu sync.Mutex
	var more, all time.Duration
	go func() {
		for ctx.Err() == nil {
			c := b.engineRunning()
			mu.Lock()
			if more == 0 && c > seen {
				more = time.Since(killed)
			}
			if all == 0 && c >= n {
				all = time.Since(killed)
			}
			done := all != 0
			mu.Unlock()
			if done || !retry.Sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("on the engines (exact): more than %d containers running %v after the kill, %d running %v after it (0: not yet)",
			seen, more.Round(time.Millisecond), n, all.Round(time.Millisecond))
	}
}

func (b *bench) engineRunning() int {
	total := 0
	for _, f := range b.t.engines() {
		total += f.Running()
	}
	return total
}

// check verifies, once the store shows n live RUNNING tasks, that no task
// is lost or duplicated: in the store, one live RUNNING task per slot
// 1..n and no other live RUNNING task (of this service; replaced ones may
// still be stopping); on the engines, the running containers are exactly
// those tasks, once the replaced ones have stopped. Engines
// may lag the store by a status report, so the engine side is polled
// until it agrees or ctx ends.
func (b *bench) check(ctx context.Context, w *testcluster.Watcher, n int, image string) error {
	tasks := w.Tasks()
	bySlot := make(map[uint64]string, n)
	byID := make(map[string]uint64, n)
	for _, t := range tasks {
		if t.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		if t.DesiredState != swarmpb.TaskState_TASK_STATE_RUNNING {
			continue // being stopped (replaced by an update): its engine check waits for it
		}
		if t.Slot < 1 || t.Slot > uint64(n) {
			return fmt.Errorf("task %s RUNNING in slot %d, outside 1..%d", t.Id, t.Slot, n)
		}
		if o, dup := bySlot[t.Slot]; dup {
			return fmt.Errorf("slot %d has two RUNNING tasks: %s and %s", t.Slot, o, t.Id)
		}
		if image != "" && t.GetSpec().GetContainer().GetImage() != image {
			return fmt.Errorf("task %s (slot %d) RUNNING %s, not %s", t.Id, t.Slot, t.GetSpec().GetContainer().GetImage(), image)
		}
		bySlot[t.Slot] = t.Id
		byID[t.Id] = t.Slot
	}
	if len(bySlot) != n {
		return fmt.Errorf("store: %d of %d slots have a RUNNING task", len(bySlot), n)
	}
	var last string
	for {
		seen := make(map[uint64]bool, n)
		extra, dup := 0, 0
		for _, f := range b.t.engines() {
			for _, id := range f.RunningTasks() {
				slot, ok := byID[id]
				if !ok {
					extra++
					continue
				}
				if seen[slot] {
					dup++
				}
				seen[slot] = true
			}
		}
		if extra == 0 && dup == 0 && len(seen) == n {
			return nil
		}
		last = fmt.Sprintf("engines: %d of %d slots running, %d containers of no live RUNNING task, %d duplicates", len(seen), n, extra, dup)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func brief(t testcluster.Tally) string {
	b := fmt.Sprintf("total %d live %d assigned %d running %d live+running %d created %d", t.Total, t.Live, t.Assigned, t.Running, t.LiveRunning, t.Created)
	if t.ListErr != "" {
		b += " (last listing failed: " + t.ListErr + ")"
	}
	return b
}

// extra says how many tasks a phase created against the n it needed:
// more are tasks created and shut down again (duplicates, or restarts).
// shutdowns lists the tasks shut down so far by why (state and message),
// most first: where tasks beyond the replicas went.
func shutdowns(t testcluster.Tally) string {
	if len(t.Shutdowns) == 0 {
		return ""
	}
	whys := make([]string, 0, len(t.Shutdowns))
	for k := range t.Shutdowns {
		whys = append(whys, k)
	}
	sort.Slice(whys, func(i, j int) bool { return t.Shutdowns[whys[i]] > t.Shutdowns[whys[j]] })
	var b strings.Builder
	b.WriteString("; shut down so far:")
	for _, k := range whys {
		fmt.Fprintf(&b, " %d %q,", t.Shutdowns[k], k)
	}
	return strings.TrimSuffix(b.String(), ",")
}

func extra(made, n int) string {
	if made == n {
		return fmt.Sprintf("%d tasks, one per replica", made)
	}
	return fmt.Sprintf("%d tasks for %d replicas (%+d)", made, n, made-n)
}

// trace prints the watcher's counts every traceEvery until the returned
// function is called.
func trace(w *testcluster.Watcher, what string) func() {
	if traceEvery <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	var once sync.Once
	go func() {
		start := time.Now()
		t := time.NewTicker(traceEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Printf("  %s +%.1fs %s\n", what, time.Since(start).Seconds(), brief(w.Tally()))
			}
		}
	}()
	return func() { once.Do(func() { close(stop) }) }
}

func drainManagers(c *testcluster.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	drain := swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
	for _, m := range c.Managers() {
		if _, err := l.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: m.NodeID(), Availability: &drain}); err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	return nil
}
