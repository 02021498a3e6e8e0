// Command mesh measures the routing mesh on a real cluster of daemon
// processes: 1 managerd and 2 workerd on 127.0.0.71-73, each with
// --ingress-addr set to its own address, running raftswarm/demo containers
// on the local Docker engine.
//
// Two benchmarks, each skippable:
//
//  1. overhead: a 3-replica service publishing a free port; one in-process HTTP
//     load generator alternates runs against the tasks' own published host
//     ports ("direct", round robin over the three host_ip:host_port of the
//     task status) and against the mesh (round robin over the three nodes'
//     ingress addresses), in keep-alive and connection-per-request modes.
//     Each run also reads the CPU time every process on the path used
//     (load generator, daemons, docker-proxy, demo app) from /proc.
//     With -inproc a third target runs the mesh package inside this process
//     (on 127.0.0.74, same backends), so -cpuprofile shows the mesh's own
//     costs. With -daemon-profile PREFIX the three daemons run as re-execs
//     of this binary (node.Main, as managerd/workerd) and write a CPU
//     profile per group of runs.
//
//     Client addresses: each target connects from its own loopback
//     address (-client-ips): direct from one, the mesh from one per ingress
//     address. With the kernel's choice (127.0.0.1 for every destination),
//     direct and mesh connections, and mesh connections through different
//     ingress addresses, reach the same docker-proxy host_ip:host_port from
//     the same client address, so after the kernel path's DNAT a new
//     connection can reuse the 4-tuple of an earlier one still in TIME-WAIT
//     there. Linux derives a SYN's timestamp offset (and its initial
//     sequence number) from the addresses the client sees, before DNAT, so
//     the TIME-WAIT socket can find the SYN older than its last segment,
//     refuse it (PAWS; the counters showed TCPSynRetrans = PAWSTimewait) and
//     the client sends the SYN again a second later: the 1 s outliers of
//     section 13 of BENCHMARKS.md. The sockets bound to these addresses set
//     IP_BIND_ADDRESS_NO_PORT (bindNoPort). A real client, on another
//     host, never shares tuples with a "direct" client, and reaches a task
//     through the ingress address of the task's own node only (other nodes
//     hand its share to their userspace proxies). Each run's line is
//     followed by the host's TCP and conntrack counters that moved during it
//     (netCounters: SYN retransmits, PAWS rejects, TIME-WAIT, conntrack
//     clashes).
//
//  2. update: a 7-replica service under a steady paced load through the mesh
//     (new connection per request, all ingress addresses round robin),
//     timed `swarmctl service update --image ... --update-parallelism 1
//     --update-delay 0s --update-order ORDER`, counting failed requests.
//
// Every container, process and temp dir it creates is removed at exit,
// including on failure or Ctrl-C.
//
//	go run ./bench/mesh [-bench overhead,update] [-d 10s] [-runs 3] [-c 1,16] [-inproc] [-client-ips A,B,C,D|kernel]
//	                    [-cpuprofile F] [-daemon-profile PREFIX] [-rate 200] [-update-runs 3] [-bin DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/bench/internal/daemonprof"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

var (
	benches    = flag.String("bench", "overhead,update", "benchmarks to run: overhead, update")
	binDir     = flag.String("bin", "", "directory with managerd, workerd, swarmctl (default: build them into a temp dir)")
	ctlPort    = flag.Int("cluster-port", 2377, "daemons' TLS port (on 127.0.0.71-73)")
	duration   = flag.Duration("d", 10*time.Second, "overhead: measured duration of each run")
	warmup     = flag.Duration("warmup", time.Second, "overhead: unmeasured warm-up before each run")
	runs       = flag.Int("runs", 3, "overhead: runs per target and mode; update: runs per order")
	conc       = flag.String("c", "1,16", "overhead: concurrent workers of the load generator (comma-separated list)")
	modes      = flag.String("modes", "keepalive,newconn", "overhead: keepalive and/or newconn")
	inproc     = flag.Bool("inproc", false, "overhead: also measure the mesh package run inside this process")
	cpuprofile = flag.String("cpuprofile", "", "overhead: CPU profile of this process (load generator, and the in-process mesh with -inproc) over the measured runs")
	updRate    = flag.Int("rate", 200, "update: requests per second of the steady load")
	updWorkers = flag.Int("rate-workers", 16, "update: goroutines sending the paced load")
	updRuns    = flag.Int("update-runs", 3, "update: runs per --update-order")
	ipsFlag    = flag.String("ips", "127.0.0.71,127.0.0.72,127.0.0.73", "the three daemons' loopback addresses (m1, w1, w2)")
	clientFlag = flag.String("client-ips", "127.0.0.81,127.0.0.82,127.0.0.83,127.0.0.84", "overhead: four loopback addresses the load generator connects from: the first for direct, one per ingress address (in -ips order) for the mesh; \"kernel\": the kernel's choice (127.0.0.1) for all, so that mesh connections can land on direct ones' TIME-WAIT tuples")
	meshPath   = flag.String("mesh-path", "", "the daemons' --mesh-path (auto: the kernel path where nftables can be used; userspace); empty: their default")
	daemonProf = flag.String("daemon-profile", "", "overhead: run the three daemons as re-execs of this binary (the same node.Main as managerd/workerd) and write their CPU profiles to PREFIX-{m1,w1,w2}.pprof.N, one N per -c/-modes group of runs in order")
)

const (
	imgV1 = "raftswarm/demo:v1"
	imgV2 = "raftswarm/demo:v2"
)

var (
	nodeIPs   []string // -ips
	clientIPs []string // -client-ips; nil: the kernel's choice
)

// bench is the running cluster and what to clean up.
type bench struct {
	env      *cluster.Env
	m1       *cluster.Daemon
	daemons  []*cluster.Daemon
	mu       sync.Mutex
	services []string // IDs to remove at exit
	nodeIDs  []string
	builtImg []string // images this run built (removed at exit)
}

// Environment of a re-exec'd daemon (-daemon-profile).
const (
	daemonModeEnv = "RSW_MESHBENCH_DAEMON"  // managerd | workerd
	daemonProfEnv = "RSW_MESHBENCH_PROFILE" // profile path
)

func main() {
	if role := os.Getenv(daemonModeEnv); role != "" {
		os.Exit(daemonprof.Main(role, os.Getenv(daemonProfEnv)))
	}
	flag.Parse()
	nodeIPs = strings.Split(*ipsFlag, ",")
	if len(nodeIPs) != 3 {
		fmt.Fprintln(os.Stderr, "mesh bench: -ips takes three addresses")
		os.Exit(2)
	}
	if *clientFlag != "kernel" {
		clientIPs = strings.Split(*clientFlag, ",")
		ok := len(clientIPs) == 4
		for _, ip := range clientIPs {
			if a := net.ParseIP(ip); a == nil || !a.IsLoopback() || a.To4() == nil {
				ok = false
			}
		}
		if !ok {
			fmt.Fprintln(os.Stderr, "mesh bench: -client-ips takes four IPv4 loopback addresses, or \"kernel\"")
			os.Exit(2)
		}
	}
	b := &bench{}
	var once sync.Once
	cleanup := func() { once.Do(b.cleanup) }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\n%v: cleaning up\n", s)
		pprof.StopCPUProfile()
		cleanup()
		os.Exit(130)
	}()
	err := run(b)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mesh bench:", err)
		os.Exit(1)
	}
}

func run(b *bench) error {
	want := map[string]bool{}
	for _, s := range strings.Split(*benches, ",") {
		s = strings.TrimSpace(s)
		if s != "overhead" && s != "update" {
			return fmt.Errorf("unknown benchmark %q", s)
		}
		want[s] = true
	}
	if err := b.ensureImages(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.startCluster(); err != nil {
		return err
	}
	fmt.Printf("cluster: managerd m1 + workerd w1, w2 on %s (port %d), Ready after %v\n",
		strings.Join(nodeIPs, ", "), *ctlPort, time.Since(t0).Round(time.Millisecond))
	if want["overhead"] {
		if err := b.overhead(); err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
	}
	if want["update"] {
		if err := b.update(); err != nil {
			return fmt.Errorf("update: %w", err)
		}
	}
	return nil
}

// ensureImages builds the demo images with deploy/build-images.sh only if
// they are missing, and then removes them at exit.
func (b *bench) ensureImages() error {
	missing := false
	for _, img := range []string{imgV1, imgV2} {
		if exec.Command("docker", "image", "inspect", img).Run() != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	fmt.Println("building the demo images (deploy/build-images.sh)")
	cmd := exec.Command("sh", "deploy/build-images.sh")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build images (run from the module root): %w", err)
	}
	b.builtImg = []string{imgV1, imgV2, "raftswarm/demo:crash"}
	return nil
}

func (b *bench) startCluster() error {
	env, err := cluster.NewEnv(*binDir)
	if err != nil {
		return err
	}
	b.env = env
	workerd := filepath.Join(env.BinDir, "workerd")
	if *binDir == "" {
		cmd := exec.Command("go", "build", "-o", workerd, "./cmd/workerd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build workerd: %w", err)
		}
	}
	addr := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(*ctlPort)) }
	for i, ip := range nodeIPs {
		name := "m1"
		if i > 0 {
			name = fmt.Sprintf("w%d", i)
		}
		args := []string{"--ingress-addr", ip}
		if *meshPath != "" {
			args = append(args, "--mesh-path", *meshPath)
		}
		d := env.Daemon(name, addr(ip), args...)
		if i > 0 {
			d.Binary = workerd
		}
		if *daemonProf != "" {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			role := "managerd"
			if i > 0 {
				role = "workerd"
			}
			abs, _ := filepath.Abs(*daemonProf + "-" + name + ".pprof")
			d.Binary = self
			d.Env = []string{daemonModeEnv + "=" + role, daemonProfEnv + "=" + abs}
		}
		if err := d.Start(); err != nil {
			return err
		}
		b.daemons = append(b.daemons, d)
	}
	b.m1 = b.daemons[0]
	if _, err := b.m1.Swarmctl("init", "--advertise-addr", addr(nodeIPs[0])); err != nil {
		return err
	}
	tok, err := b.m1.Swarmctl("join-token", "-q", "worker")
	if err != nil {
		return err
	}
	for i, d := range b.daemons[1:] {
		if _, err := d.Swarmctl("join", "--token", strings.TrimSpace(tok), "--advertise-addr", addr(nodeIPs[i+1]), addr(nodeIPs[0])); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := b.m1.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
		cancel()
		ready := 0
		var ids []string
		if err == nil {
			for _, n := range resp.Nodes {
				ids = append(ids, n.Node.GetId())
				if n.Node.GetStatus() == swarmpb.NodeStatus_NODE_STATUS_READY && n.Node.GetDescription().GetEngineVersion() != "" {
					ready++
				}
			}
		}
		b.mu.Lock()
		b.nodeIDs = ids
		b.mu.Unlock()
		if ready == len(nodeIPs) {
			for _, n := range resp.Nodes {
				d := n.Node.GetDescription()
				fmt.Printf("node %s: routing mesh path %q %s\n", d.GetHostname(), d.GetMeshPath(), d.GetMeshPathReason())
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready with an engine after 60s (last error %v)", ready, len(nodeIPs), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// signalDaemons sends sig to every daemon (profile start/stop).
func (b *bench) signalDaemons(sig syscall.Signal) {
	for _, d := range b.daemons {
		if p := d.Pid(); p > 0 {
			_ = syscall.Kill(p, sig)
		}
	}
}

// createService creates a service with swarmctl and waits until replicas
// tasks run and every node's ingress answers.
func (b *bench) createService(name string, replicas int, port int, image string) (string, error) {
	out, err := b.m1.Swarmctl("service", "create", "--detach", "--name", name, "--replicas", strconv.Itoa(replicas),
		"-p", fmt.Sprintf("%d:80", port), image)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	if f := strings.Fields(id); len(f) > 0 {
		id = f[len(f)-1]
	}
	b.mu.Lock()
	b.services = append(b.services, id)
	b.mu.Unlock()
	if _, err := b.waitRunning(id, replicas, strings.TrimPrefix(image, "raftswarm/demo:"), port, 90*time.Second); err != nil {
		return id, err
	}
	return id, nil
}

// runningTasks lists the service's tasks desired and actually RUNNING.
func (b *bench) runningTasks(id string) ([]*swarmpb.Task, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := b.m1.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{id}})
	if err != nil {
		return nil, err
	}
	var ts []*swarmpb.Task
	for _, t := range resp.Tasks {
		if t.GetDesiredState() == swarmpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING {
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// directAddrs is the host_ip:host_port each running task's port 80 is
// published on (from the task status, as `service inspect` shows it).
func directAddrs(ts []*swarmpb.Task) []string {
	var as []string
	for _, t := range ts {
		for _, p := range t.GetStatus().GetPorts() {
			if p.GetTargetPort() == 80 && p.GetHostPort() != 0 {
				as = append(as, net.JoinHostPort(p.GetHostIp(), strconv.Itoa(int(p.GetHostPort()))))
			}
		}
	}
	return as
}

func ingressAddrs(port int) []string {
	var as []string
	for _, ip := range nodeIPs {
		as = append(as, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	return as
}

// waitRunning waits until exactly n tasks run, each publishes its port, and
// every ingress address answers version from the service's tasks.
func (b *bench) waitRunning(id string, n int, version string, port int, timeout time.Duration) ([]*swarmpb.Task, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ts, err := b.runningTasks(id)
		switch {
		case err != nil:
			last = err
		case len(ts) != n || len(directAddrs(ts)) != n:
			last = fmt.Errorf("%d of %d tasks running with a published port", len(directAddrs(ts)), n)
		default:
			last = checkAnswers(ingressAddrs(port), version, 3)
			if last == nil {
				return ts, nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, fmt.Errorf("service %s not converged after %v: %v", id, timeout, last)
}

// checkAnswers asks every address `per` times (new connections) and wants
// version in every answer.
func checkAnswers(addrs []string, version string, per int) error {
	for _, a := range addrs {
		for i := 0; i < per; i++ {
			body, err := getOnce(a)
			if err != nil {
				return fmt.Errorf("%s: %v", a, err)
			}
			if v := field(body, "version"); v != version {
				return fmt.Errorf("%s answered version %q, want %q", a, v, version)
			}
		}
	}
	return nil
}

// freePort returns a TCP port bindable on every node address.
func freePort() (int, error) {
	for try := 0; try < 20; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, ip := range append(append([]string(nil), nodeIPs...), inprocIP) {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free port on the node addresses")
}

// cleanup removes the services, waits for their containers to go, kills the
// daemons, removes leftover containers of our nodes and the temp dir.
func (b *bench) cleanup() {
	b.mu.Lock()
	svcs, nodeIDs := b.services, b.nodeIDs
	b.mu.Unlock()
	if b.m1 != nil && b.m1.Conn() != nil {
		for _, id := range svcs {
			if _, err := b.m1.Swarmctl("service", "rm", id); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && len(containersOf("raftswarm.service.id", svcs)) > 0 {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if b.env != nil {
		for _, d := range b.daemons {
			d.Terminate(5 * time.Second)
		}
		b.env.Close()
	}
	for _, id := range nodeIDs {
		// The daemons remove their routing-mesh tables when they stop;
		// one killed on the way leaves it.
		if table := mesh.NFTTableName(id); table != "" && exec.Command("nft", "list", "table", "ip", table).Run() == nil {
			fmt.Fprintf(os.Stderr, "cleanup: removing the nftables table %s left behind\n", table)
			_ = exec.Command("nft", "delete", "table", "ip", table).Run()
		}
	}
	left := append(containersOf("raftswarm.service.id", svcs), containersOf("raftswarm.node.id", nodeIDs)...)
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cleanup: force-removing %d leftover container(s)\n", len(left))
		_ = exec.Command("docker", append([]string{"rm", "-f"}, left...)...).Run()
	}
	if *binDir == "" && b.env != nil {
		os.RemoveAll(b.env.BinDir) // inside env.Dir, already gone; harmless
	}
	if len(b.builtImg) > 0 {
		_ = exec.Command("docker", append([]string{"rmi"}, b.builtImg...)...).Run()
	}
	if len(svcs) > 0 {
		fmt.Printf("cleanup: services removed (%d), containers gone: %v, daemons stopped\n", len(svcs), len(containersOf("raftswarm.service.id", svcs)) == 0)
	}
}

// containersOf lists containers (any state) whose label key has one of vals.
func containersOf(key string, vals []string) []string {
	var ids []string
	for _, v := range vals {
		if v == "" {
			continue
		}
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+key+"="+v).Output()
		if err != nil {
			continue
		}
		ids = append(ids, strings.Fields(string(out))...)
	}
	return ids
}
