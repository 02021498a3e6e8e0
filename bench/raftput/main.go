// Command raftput measures Raft write throughput and latency with fsync on:
// (a) the project's write path — three in-process managers (node.New, as
// internal/testcluster builds them, with raft.DefaultTimings and the log
// fsynced), each write a raft.Node.Apply on the leader of a StoreBatch that
// updates one small object; (b) bare hashicorp/raft v1.8.0 with
// raft-boltdb/v2, three voters on loopback TCP, a trivial FSM and entries
// of the same size. Both run in the same process, alternately.
//
// With -encryption both, (a) runs twice, on two clusters of the same
// process: with encryption at rest (the default: log entries and snapshots
// sealed under each manager's data key) and without (node.Config.
// PlaintextRaft), alternately, and the summary compares them; -bare=false
// leaves (b) out.
//
// With -metrics both, (a) runs on two clusters, alternately: one without
// metrics, one whose managers serve --metrics-addr and are scraped every
// second while it is measured, with hashicorp/raft's go-metrics global
// pointed at the Prometheus sink (a blackhole while the other runs: the
// global is process-wide), and the summary compares them.
//
//	go run ./bench/raftput [-d 10s] [-reps 3] [-writers 1,64] [-encryption on|off|both] [-metrics off|on|both] [-bare=true|false] [-cpuprofile f]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/internal/metrics"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const payloadSize = 64 // bytes of Secret.data in each project write

func main() {
	dur := flag.Duration("d", 10*time.Second, "duration of each measurement")
	reps := flag.Int("reps", 3, "repetitions of each (path, writers) measurement")
	writersFlag := flag.String("writers", "1,64", "comma-separated concurrent writer counts")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the project-path runs to this file")
	encryption := flag.String("encryption", "on", "project path with encryption at rest: on, off, or both (alternately, compared)")
	withBare := flag.Bool("bare", true, "also measure bare hashicorp/raft")
	metricsMode := flag.String("metrics", "off", "project path with --metrics-addr scraped every second: off, on, or both (alternately, compared)")
	flag.Parse()
	if *metricsMode != "on" && *metricsMode != "off" && *metricsMode != "both" {
		fmt.Fprintln(os.Stderr, "bad -metrics: use on, off or both")
		os.Exit(2)
	}
	if *metricsMode == "both" && *encryption == "both" {
		fmt.Fprintln(os.Stderr, "bad flags: -metrics both and -encryption both compare one thing at a time; pick one")
		os.Exit(2)
	}
	if *encryption != "on" && *encryption != "off" && *encryption != "both" {
		fmt.Fprintln(os.Stderr, "bad -encryption: use on, off or both")
		os.Exit(2)
	}
	var writers []int
	for _, f := range strings.Split(*writersFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "bad -writers")
			os.Exit(2)
		}
		writers = append(writers, n)
	}
	dir, err := os.MkdirTemp("", "rsw-raftput-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = run(dir, *dur, *reps, writers, *cpuprofile, *encryption, *metricsMode, *withBare)
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

// writeFn performs one write as writer w and reports when it committed.
type writeFn func(ctx context.Context, w int) error

type result struct {
	cpu      time.Duration // process CPU time (user+system) during the run
	ops      int
	errs     int
	elapsed  time.Duration
	lat      cluster.Stats
	firstErr error
}

func measure(d time.Duration, writers int, write writeFn) result {
	var stop atomic.Bool
	lats := make([][]time.Duration, writers)
	errs := make([]int, writers)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !stop.Load() {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := write(ctx, w)
				cancel()
				if err != nil {
					errs[w]++
					once.Do(func() { firstErr = err })
					continue
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}(w)
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	r := result{elapsed: time.Since(start), firstErr: firstErr, cpu: cpuTime() - cpu0}
	var all []time.Duration
	for w := range lats {
		all = append(all, lats[w]...)
		r.errs += errs[w]
	}
	r.ops = len(all)
	r.lat = cluster.Summarize(all)
	return r
}

func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// cpuPerOp is the process's CPU time per write, in microseconds: less
// sensitive than the rate to other programs on a shared machine.
func (r result) cpuPerOp() float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.ops)
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// path is one write path under measurement.
type path struct {
	name  string
	write writeFn
	// around, if set, runs a measurement (setting up what the path needs
	// while measured, such as a scraper).
	around func(measure func())
}

// loadavg is the 1-minute load average, for the record of a shared machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func run(dir string, d time.Duration, reps int, writers []int, cpuprofile, encryption, metricsMode string, withBare bool) error {
	maxW := 0
	for _, w := range writers {
		maxW = max(maxW, w)
	}
	var paths []path
	var entry int
	type variant struct {
		name           string
		plain, metrics bool
	}
	var variants []variant
	switch {
	case encryption == "both":
		variants = []variant{{"enc", false, metricsMode == "on"}, {"plain", true, metricsMode == "on"}}
	case metricsMode == "both":
		variants = []variant{{"metrics", encryption == "off", true}, {"nometric", encryption == "off", false}}
	default:
		variants = []variant{{"project", encryption == "off", metricsMode == "on"}}
	}
	for i, v := range variants {
		proj, err := startProject(filepath.Join(dir, v.name), maxW, 41+3*i, v.plain, v.metrics)
		if err != nil {
			return fmt.Errorf("%s cluster: %w", v.name, err)
		}
		defer proj.close()
		entry = proj.entrySize()
		p := path{name: v.name, write: proj.write}
		if metricsMode == "both" {
			p.around = proj.aroundMetrics
		}
		paths = append(paths, p)
	}
	if withBare {
		bare, err := startBare(filepath.Join(dir, "bare"), entry)
		if err != nil {
			return fmt.Errorf("bare cluster: %w", err)
		}
		defer bare.close()
		paths = append(paths, path{name: "bare", write: bare.write})
	}
	fmt.Printf("entry size: %d bytes (project StoreBatch envelope updating one Secret with %d data bytes; bare entries are the same length)\n", entry, payloadSize)
	fmt.Printf("encryption at rest: %s; raft timings: %+v\n", encryption, raft.DefaultTimings())

	var prof *os.File
	if cpuprofile != "" {
		var err error
		if prof, err = os.Create(cpuprofile); err != nil {
			return err
		}
		defer prof.Close()
	}
	type key struct {
		path string
		w    int
	}
	res := map[key][]result{}
	var loads []string
	for rep := 1; rep <= reps; rep++ {
		for _, w := range writers {
			// Alternate which path goes first, so that neither always
			// follows the other (a disk's write-back, a neighbour's load).
			order := slices.Clone(paths)
			if rep%2 == 0 {
				slices.Reverse(order)
			}
			for i, p := range order {
				if prof != nil && rep == 1 && w == writers[0] && i == 0 {
					if err := pprof.StartCPUProfile(prof); err != nil {
						return err
					}
				}
				l0 := loadavg()
				var r result
				if p.around != nil {
					p.around(func() { r = measure(d, w, p.write) })
				} else {
					r = measure(d, w, p.write)
				}
				loads = append(loads, l0)
				res[key{p.name, w}] = append(res[key{p.name, w}], r)
				report(rep, p.name, w, r, l0)
			}
			if prof != nil && rep == 1 && w == writers[len(writers)-1] {
				pprof.StopCPUProfile()
			}
		}
	}

	fmt.Printf("\nsummary: median over %d runs of %v each (writes/s; p50 and p99 latency in ms); 1-min load average before each run: %s\n", reps, d, strings.Join(loads, " "))
	if encryption == "both" {
		fmt.Printf("%-8s %10s %8s %8s | %10s %8s %8s | %7s %9s\n", "writers", "enc w/s", "p50", "p99", "plain w/s", "p50", "p99", "ratio", "p99 x")
		for _, w := range writers {
			e := medianResult(res[key{"enc", w}])
			p := medianResult(res[key{"plain", w}])
			ratio, p99x := e.rate/p.rate, e.p99/p.p99
			fmt.Printf("%-8d %10.0f %8.2f %8.2f | %10.0f %8.2f %8.2f | %6.2fx %8.2fx  (target >= 0.9x: %s)\n",
				w, e.rate, e.p50, e.p99, p.rate, p.p50, p.p99, ratio, p99x, verdict(ratio >= 0.9))
		}
	}
	if metricsMode == "both" {
		fmt.Printf("%-8s %10s %8s %8s %8s | %10s %8s %8s %8s | %7s %9s %9s\n", "writers", "metr w/s", "p50", "p99", "cpu us", "none w/s", "p50", "p99", "cpu us", "ratio", "p99 x", "cpu x")
		for _, w := range writers {
			e := medianResult(res[key{"metrics", w}])
			p := medianResult(res[key{"nometric", w}])
			ratio, p99x, cpux := e.rate/p.rate, e.p99/p.p99, e.cpu/p.cpu
			fmt.Printf("%-8d %10.0f %8.2f %8.2f %8.0f | %10.0f %8.2f %8.2f %8.0f | %6.2fx %8.2fx %8.2fx  (target >= 0.95x: %s)\n",
				w, e.rate, e.p50, e.p99, e.cpu, p.rate, p.p50, p.p99, p.cpu, ratio, p99x, cpux, verdict(ratio >= 0.95))
		}
	}
	if !withBare {
		return nil
	}
	fmt.Printf("%-8s %-8s %10s %8s %8s | %10s %8s %8s | %7s %9s\n", "writers", "path", "proj w/s", "p50", "p99", "bare w/s", "p50", "p99", "ratio", "p99 x")
	for _, w := range writers {
		b := medianResult(res[key{"bare", w}])
		for _, pth := range paths[:len(paths)-1] {
			p := medianResult(res[key{pth.name, w}])
			ratio := p.rate / b.rate
			p99x := p.p99 / b.p99
			fmt.Printf("%-8d %-8s %10.0f %8.2f %8.2f | %10.0f %8.2f %8.2f | %6.2fx %8.2fx  (target >= 0.8x: %s, p99 <= 2x: %s)\n",
				w, pth.name, p.rate, p.p50, p.p99, b.rate, b.p50, b.p99, ratio, p99x, verdict(ratio >= 0.8), verdict(p99x <= 2))
		}
	}
	return nil
}

type med struct{ rate, p50, p99, cpu float64 }

// medianResult takes the median of each figure over the runs separately.
func medianResult(rs []result) med {
	var rate, p50, p99, cpu []time.Duration // reuse Summarize for medians
	for _, r := range rs {
		cpu = append(cpu, time.Duration(r.cpuPerOp()*1000))
		rate = append(rate, time.Duration(r.rate()*1000))
		p50 = append(p50, r.lat.P50)
		p99 = append(p99, r.lat.P99)
	}
	return med{
		rate: float64(cluster.Summarize(rate).P50) / 1000,
		p50:  ms(cluster.Summarize(p50).P50),
		p99:  ms(cluster.Summarize(p99).P50),
		cpu:  float64(cluster.Summarize(cpu).P50) / 1000,
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func report(rep int, path string, w int, r result, load string) {
	fmt.Printf("run %d %-7s writers=%-3d %7.0f writes/s  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  cpu %5.0f us/write  errors %d  load %s",
		rep, path, w, r.rate(), ms(r.lat.P50), ms(r.lat.P99), ms(r.lat.Max), r.cpuPerOp(), r.errs, load)
	if r.firstErr != nil {
		fmt.Printf(" (first: %v)", r.firstErr)
	}
	fmt.Println()
}

// ---------------------------------------------------------------- project

type project struct {
	metrics bool // managers serve --metrics-addr
	nodes   []*node.Node
	leader  *raft.Node
	store   *state.Store // the leader's
	mu      sync.Mutex
	version []uint64 // per writer: Meta.Version of its Secret
	payload []byte
}

func (p *project) batch(w int, version uint64) *swarmpb.StoreBatch {
	kind := swarmpb.StoreAction_KIND_UPDATE
	if version == 0 {
		kind = swarmpb.StoreAction_KIND_CREATE
	}
	return &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{{
		Kind: kind,
		Target: &swarmpb.StoreAction_Secret{Secret: &swarmpb.Secret{
			Id:   fmt.Sprintf("bench-secret-%04d", w),
			Meta: &swarmpb.Meta{Version: version},
			Name: fmt.Sprintf("bench-%04d", w),
			Data: p.payload,
		}},
	}}}
}

func (p *project) entrySize() int {
	b, err := raft.EncodeBatch(p.batch(0, 1<<20))
	if err != nil {
		panic(err)
	}
	return len(b)
}

// write updates writer w's own Secret; the version it must quote is the
// index of its previous write.
func (p *project) write(ctx context.Context, w int) error {
	idx, err := p.leader.Apply(ctx, p.batch(w, p.version[w]))
	if err != nil {
		// A write that timed out may still have been applied: quote the
		// version the store holds next time, or every later write of this
		// writer would be refused as out of sequence.
		p.store.View(func(tx state.ReadTx) {
			if s := tx.GetSecret(fmt.Sprintf("bench-secret-%04d", w)); s != nil {
				p.version[w] = s.GetMeta().GetVersion()
			}
		})
		return err
	}
	p.version[w] = idx
	return nil
}

// startProject starts three managers on 127.0.0.<first>..<first+2>.
func startProject(dir string, writers, first int, plaintext, withMetrics bool) (*project, error) {
	p := &project{payload: make([]byte, payloadSize), version: make([]uint64, writers), metrics: withMetrics}
	for i := range p.payload {
		p.payload[i] = byte('a' + i%26)
	}
	var socks []string
	var addrs []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("m%d", i)
		sock := filepath.Join(dir, name+".sock")
		cfg := node.Config{
			StateDir: filepath.Join(dir, name), SocketPath: sock, Hostname: name,
			Timings: raft.DefaultTimings(), NoSync: false, PlaintextRaft: plaintext,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		}
		if withMetrics {
			cfg.MetricsAddr = fmt.Sprintf("127.0.0.%d:0", first-1+i)
		}
		n, err := node.New(cfg)
		if err != nil {
			return p, err
		}
		if err := n.Start(context.Background()); err != nil {
			return p, err
		}
		p.nodes = append(p.nodes, n)
		socks = append(socks, sock)
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d:%d", first-1+i, 25377))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := func(i int) (swarmpb.LocalClient, swarmpb.ControlClient, func()) {
		c, err := grpc.NewClient("unix://"+socks[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err)
		}
		return swarmpb.NewLocalClient(c), swarmpb.NewControlClient(c), func() { c.Close() }
	}
	l0, c0, close0 := local(0)
	defer close0()
	if _, err := l0.Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: addrs[0]}); err != nil {
		return p, fmt.Errorf("init: %w", err)
	}
	tok, err := c0.GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		return p, err
	}
	for i := 1; i < 3; i++ {
		li, _, closei := local(i)
		_, err := li.Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: addrs[0], AdvertiseAddr: addrs[i]})
		closei()
		if err != nil {
			return p, fmt.Errorf("join m%d: %w", i+1, err)
		}
	}
	for p.leader == nil {
		for _, n := range p.nodes {
			if m := n.Manager(); m != nil {
				if ok, _ := m.Raft().Leadership(); ok {
					p.leader, p.store = m.Raft(), m.Store()
				}
			}
		}
		if ctx.Err() != nil {
			return p, errors.New("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ms, err := p.leader.Members(); err != nil || len(ms) != 3 {
		return p, fmt.Errorf("members %v: %v", ms, err)
	}
	for w := range p.version {
		if err := p.write(ctx, w); err != nil {
			return p, fmt.Errorf("create secret %d: %w", w, err)
		}
	}
	return p, nil
}

// aroundMetrics runs one measurement of p: with metrics, Raft's go-metrics
// global points at the Prometheus sink and every manager's /metrics is
// scraped once a second meanwhile; without, the global is a blackhole.
func (p *project) aroundMetrics(measure func()) {
	if err := metrics.SetRaftSink(p.metrics); err != nil {
		panic(err)
	}
	if !p.metrics {
		measure()
		return
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl := &http.Client{Timeout: 5 * time.Second}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			for _, n := range p.nodes {
				resp, err := cl.Get("http://" + n.MetricsAddr() + "/metrics")
				if err != nil {
					fmt.Fprintln(os.Stderr, "scrape:", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	measure()
	close(stop)
	<-done
}

func (p *project) close() {
	for _, n := range p.nodes {
		n.Stop()
	}
}

// ---------------------------------------------------------------- bare

type bare struct {
	rafts  []*hraft.Raft
	trans  []*hraft.NetworkTransport
	stores []*raftboltdb.BoltStore
	leader *hraft.Raft
	entry  []byte
}

type nopFSM struct{ n atomic.Uint64 }

func (f *nopFSM) Apply(l *hraft.Log) interface{}       { f.n.Add(1); return nil }
func (f *nopFSM) Snapshot() (hraft.FSMSnapshot, error) { return nopSnap{}, nil }
func (f *nopFSM) Restore(rc io.ReadCloser) error       { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s hraft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                           {}

func (b *bare) write(ctx context.Context, w int) error {
	return b.leader.Apply(b.entry, 10*time.Second).Error()
}

func startBare(dir string, entrySize int) (*bare, error) {
	b := &bare{entry: make([]byte, entrySize)}
	for i := range b.entry {
		b.entry[i] = byte(i)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "bare", Level: hclog.Warn, Output: os.Stderr})
	t := raft.DefaultTimings()
	var servers []hraft.Server
	for i := 0; i < 3; i++ {
		tr, err := hraft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
		if err != nil {
			return b, err
		}
		b.trans = append(b.trans, tr)
		servers = append(servers, hraft.Server{ID: hraft.ServerID(fmt.Sprint("b", i)), Address: tr.LocalAddr(), Suffrage: hraft.Voter})
	}
	for i := 0; i < 3; i++ {
		d := filepath.Join(dir, fmt.Sprint("b", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return b, err
		}
		st, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(d, "raft.db")})
		if err != nil {
			return b, err
		}
		b.stores = append(b.stores, st)
		snaps, err := hraft.NewFileSnapshotStoreWithLogger(d, 2, logger)
		if err != nil {
			return b, err
		}
		c := hraft.DefaultConfig()
		c.LocalID = servers[i].ID
		c.HeartbeatTimeout = t.HeartbeatTimeout
		c.ElectionTimeout = t.ElectionTimeout
		c.LeaderLeaseTimeout = t.LeaderLeaseTimeout
		c.CommitTimeout = t.CommitTimeout
		c.SnapshotThreshold = t.SnapshotThreshold
		c.SnapshotInterval = t.SnapshotInterval
		c.Logger = logger
		if err := hraft.BootstrapCluster(c, st, st, snaps, b.trans[i], hraft.Configuration{Servers: servers}); err != nil {
			return b, err
		}
		r, err := hraft.NewRaft(c, &nopFSM{}, st, st, snaps, b.trans[i])
		if err != nil {
			return b, err
		}
		b.rafts = append(b.rafts, r)
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.leader == nil {
		for _, r := range b.rafts {
			if r.State() == hraft.Leader {
				b.leader = r
			}
		}
		if time.Now().After(deadline) {
			return b, errors.New("bare cluster elected no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b, b.leader.Barrier(10 * time.Second).Error()
}

func (b *bare) close() {
	for _, r := range b.rafts {
		_ = r.Shutdown().Error()
	}
	for _, t := range b.trans {
		t.Close()
	}
	for _, s := range b.stores {
		s.Close()
	}
}
