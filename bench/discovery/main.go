// Command discovery measures service discovery (issue 10, docs/discovery.md)
// on a real cluster: managerd m1 and workerd w1 on 127.0.8.1 and 127.0.8.2
// sharing the machine's Docker engine, one cluster network, a server
// service (the demo app, HTTP on port 80) pinned to m1, and a global client
// service running the load generator (bench/discovery/loadgen, in "idle"
// mode) on both nodes. Every measurement runs inside a client container with
// `docker exec`, so it resolves names and connects exactly as a task does.
//
// Two benchmarks, each skippable:
//
//  1. overhead: one load generator, same runs, against
//     - direct: the server container's own address on m1's bridge
//     (container to container on one Docker bridge), from m1's client;
//     - name: http://SERVICE/ from m1's client (same node: DNS, kernel
//     redirect, the m1 daemon's proxy, the bridge);
//     - name-remote: http://SERVICE/ from w1's client (across nodes: w1's
//     proxy, the mutual-TLS tunnel, m1's daemon, the bridge);
//     - vip, vip-remote (diagnostic): the service's virtual IP, no lookup.
//     Keep-alive and a new connection per request, with 1 and 16 workers,
//     medians of -runs runs, target order alternating between rounds.
//  2. propagation: probes on both nodes' clients GET http://SERVICE/ every
//     50 ms (a new connection and lookup each); the server task is moved to
//     the other node (service update of its constraint) and the time until
//     every node is answered by the new task is recorded, -moves times; then
//     `service scale SERVICE=0` until every node is refused, -moves times.
//
// Everything it creates (images, services, containers, engine networks,
// daemons, their nftables tables, the temp dir) is removed at exit,
// including on failure or Ctrl-C.
//
//	go run ./bench/discovery [-bench overhead,propagation] [-d 10s] [-runs 3] [-c 1,16]
//	                         [-modes keepalive,newconn] [-targets direct,name,name-remote,vip,vip-remote]
//	                         [-moves 5] [-daemon-profile PREFIX] [-bin DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	"github.com/raftswarm/raftswarm/bench/internal/daemonprof"
	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
	"github.com/raftswarm/raftswarm/netplane"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

var (
	benches    = flag.String("bench", "overhead,propagation", "benchmarks to run: overhead, propagation")
	binDir     = flag.String("bin", "", "directory with managerd, workerd, swarmctl (default: build them into a temp dir)")
	ctlPort    = flag.Int("cluster-port", 2377, "daemons' TLS port")
	duration   = flag.Duration("d", 10*time.Second, "overhead: measured duration of each run")
	warmup     = flag.Duration("warmup", time.Second, "overhead: unmeasured warm-up before each run")
	runs       = flag.Int("runs", 3, "overhead: runs per target and group")
	conc       = flag.String("c", "1,16", "overhead: workers of the load generator (comma-separated)")
	modes      = flag.String("modes", "keepalive,newconn", "overhead: keepalive and/or newconn")
	targetList = flag.String("targets", "direct,name,name-remote,vip,vip-remote", "overhead: targets, in the order of odd rounds")
	moves      = flag.Int("moves", 5, "propagation: task moves, and scale-to-0 repetitions")
	period     = flag.Duration("period", 50*time.Millisecond, "propagation: probe period")
	kernelDNAT = flag.Bool("kernel-dnat", false, "overhead: also measure target kernel-dnat: what same-node traffic would cost with kernel forwarding instead of the proxy (an nftables table of this benchmark DNATs "+dnatAddr+":80 from m1's bridge to the server container)")
	daemonProf = flag.String("daemon-profile", "", "overhead: run the daemons as re-execs of this binary (node.Main) and write CPU profiles to PREFIX-{m1,w1}.pprof.N, one N per group of runs")
)

// Names of what this benchmark creates (a prefix no one else uses).
const (
	prefix     = "rsw-h8"
	imgDemo    = prefix + "-bench/demo:v1"
	imgLoad    = prefix + "-bench/loadgen:v1"
	netName    = prefix + "-net"
	srvName    = prefix + "-srv"
	clientName = prefix + "-lg"
)

// The kernel-dnat experiment: an address outside every network
// (TEST-NET-1) and the nftables table that forwards it.
const (
	dnatAddr  = "192.0.2.81"
	dnatTable = "rswh8_bench_dnat"
)

var (
	nodeIPs   = []string{"127.0.8.1", "127.0.8.2"}
	nodeNames = []string{"m1", "w1"}
)

// Environment of a re-exec'd daemon (-daemon-profile).
const (
	daemonModeEnv = "RSW_DISCBENCH_DAEMON"  // managerd | workerd
	daemonProfEnv = "RSW_DISCBENCH_PROFILE" // profile path
)

// bench is the running cluster and what to clean up.
type bench struct {
	env      *cluster.Env
	m1       *cluster.Daemon
	daemons  []*cluster.Daemon
	mu       sync.Mutex
	services []string // IDs to remove at exit
	nodeIDs  map[string]string
	netID    string
	images   []string
	imgDir   string
	dnat     bool     // dnatTable was created
	holds    []string // placeholder engine networks (holdStaleSubnets)
}

func main() {
	if role := os.Getenv(daemonModeEnv); role != "" {
		os.Exit(daemonprof.Main(role, os.Getenv(daemonProfEnv)))
	}
	flag.Parse()
	b := &bench{nodeIDs: map[string]string{}}
	var once sync.Once
	cleanup := func() { once.Do(b.cleanup) }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\n%v: cleaning up\n", s)
		cleanup()
		os.Exit(130)
	}()
	err := run(b)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery bench:", err)
		os.Exit(1)
	}
}

func run(b *bench) error {
	want := map[string]bool{}
	for _, s := range strings.Split(*benches, ",") {
		s = strings.TrimSpace(s)
		if s != "overhead" && s != "propagation" {
			return fmt.Errorf("unknown benchmark %q: use overhead, propagation", s)
		}
		want[s] = true
	}
	fmt.Printf("load average at start: %s (nproc 2)\n", proccpu.LoadAvg())
	if err := b.buildImages(); err != nil {
		return err
	}
	if err := b.holdStaleSubnets(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := b.startCluster(); err != nil {
		return err
	}
	fmt.Printf("cluster: managerd m1 + workerd w1 on %s, Ready after %v\n", strings.Join(nodeIPs, ", "), time.Since(t0).Round(time.Millisecond))
	s, err := b.setup()
	if err != nil {
		return err
	}
	if want["overhead"] {
		if err := b.overhead(s); err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
	}
	if want["propagation"] {
		if err := b.propagation(s); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
	}
	fmt.Printf("\nload average at end: %s\n", proccpu.LoadAvg())
	return nil
}

// buildImages compiles the demo app and the load generator statically and
// builds two FROM scratch images under this benchmark's own tags.
func (b *bench) buildImages() error {
	dir, err := os.MkdirTemp("", "rsw-h8-img-")
	if err != nil {
		return err
	}
	b.imgDir = dir
	for bin, pkg := range map[string]string{"demoapp": "./deploy/demoapp", "loadgen": "./bench/discovery/loadgen"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1", "-o", filepath.Join(dir, bin), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s (run from the module root): %w", pkg, err)
		}
	}
	for _, img := range []struct{ tag, file, body string }{
		{imgDemo, "Dockerfile.demo", "FROM scratch\nCOPY demoapp /demoapp\nENV PORT=80\nEXPOSE 80\nENTRYPOINT [\"/demoapp\"]\n"},
		{imgLoad, "Dockerfile.load", "FROM scratch\nCOPY loadgen /loadgen\nENTRYPOINT [\"/loadgen\"]\nCMD [\"idle\"]\n"},
	} {
		if err := os.WriteFile(filepath.Join(dir, img.file), []byte(img.body), 0o644); err != nil {
			return err
		}
		cmd := exec.Command("docker", "build", "-q", "-f", filepath.Join(dir, img.file), "-t", img.tag, dir)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("docker build %s: %w", img.tag, err)
		}
		b.images = append(b.images, img.tag)
	}
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
		d := env.Daemon(nodeNames[i], addr(ip), "--ingress-addr", ip)
		role := "managerd"
		if i > 0 {
			d.Binary, role = workerd, "workerd"
		}
		if *daemonProf != "" {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(*daemonProf + "-" + nodeNames[i] + ".pprof")
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
		if err == nil {
			b.mu.Lock()
			for _, n := range resp.Nodes {
				b.nodeIDs[n.Node.GetDescription().GetHostname()] = n.Node.GetId()
				if n.Node.GetStatus() == swarmpb.NodeStatus_NODE_STATUS_READY && n.Node.GetDescription().GetEngineVersion() != "" {
					ready++
				}
			}
			b.mu.Unlock()
		}
		if ready == len(nodeIPs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready with an engine after 60s (last error %v)", ready, len(nodeIPs), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *bench) signalDaemons(sig syscall.Signal) {
	for _, d := range b.daemons {
		if p := d.Pid(); p > 0 {
			_ = syscall.Kill(p, sig)
		}
	}
}

// setupState is the cluster's network and services as the benchmarks use
// them.
type setupState struct {
	srvID, clientID string
	clients         map[string]string // node name -> client container ID
	srvTask         *swarmpb.Task
	srvIP           string // the server container's address on its bridge
	srvName         string // the server container's name (Docker's DNS answers it)
	m1Bridge        string // m1's bridge interface on the network
	vip             string
}

func (b *bench) setup() (*setupState, error) {
	out, err := b.m1.Swarmctl("network", "create", netName)
	if err != nil {
		return nil, err
	}
	b.netID = lastField(out)
	s := &setupState{clients: map[string]string{}}
	if s.srvID, err = b.createService("--name", srvName, "--network", netName, "--constraint", "node.hostname==m1",
		"--stop-grace-period", "2s", imgDemo); err != nil {
		return nil, err
	}
	if s.clientID, err = b.createService("--name", clientName, "--network", netName, "--mode", "global",
		"--stop-grace-period", "2s", imgLoad); err != nil {
		return nil, err
	}
	// Wait for both clients and the server, and for both clients to be
	// answered by name.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var last error
		cts, err := b.runningTasks(s.clientID)
		sts, err2 := b.runningTasks(s.srvID)
		switch {
		case err != nil || err2 != nil:
			last = errors.Join(err, err2)
		case len(cts) != len(nodeIPs) || len(sts) != 1:
			last = fmt.Errorf("%d of %d clients and %d of 1 server running", len(cts), len(nodeIPs), len(sts))
		default:
			for _, t := range cts {
				s.clients[b.nodeName(t.GetNodeId())] = t.GetStatus().GetContainerId()
			}
			s.srvTask = sts[0]
			for _, n := range nodeNames {
				if _, err := b.exec(s.clients[n], 10*time.Second, "probe", "-url", "http://"+srvName+"/", "-until", "answer", "-timeout", "5s"); err != nil {
					last = fmt.Errorf("client on %s: %w", n, err)
					break
				}
			}
		}
		if last == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("services not ready after 90s: %v", last)
		}
		time.Sleep(300 * time.Millisecond)
	}
	ip, err := exec.Command("docker", "inspect", "-f", "{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", s.srvTask.GetStatus().GetContainerId()).Output()
	if err != nil {
		return nil, fmt.Errorf("inspect the server container: %w", err)
	}
	if f := strings.Fields(string(ip)); len(f) >= 2 {
		s.srvName, s.srvIP = strings.TrimPrefix(f[0], "/"), f[1]
	} else {
		return nil, fmt.Errorf("server container: no name and address in %q", ip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nw, err := b.m1.Control().GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: netName})
	if err != nil {
		return nil, err
	}
	for _, sv := range nw.GetServices() {
		if sv.GetServiceId() == s.srvID {
			s.vip = sv.GetVip()
		}
	}
	fmt.Printf("network %s (%s): subnet %s; server %s VIP %s, task %s on m1 at %s (container %.12s)\n",
		netName, b.netID, nw.GetNetwork().GetSubnet(), srvName, s.vip, s.srvTask.GetId(), s.srvIP, s.srvTask.GetStatus().GetContainerId())
	for _, ni := range nw.GetNodes() {
		st := ni.GetState()
		if ni.GetHostname() == "m1" {
			s.m1Bridge = st.GetBridge()
		}
		fmt.Printf("  node %s: engine network %s, bridge %s, subnet %s, gateway %s, %d tasks\n",
			ni.GetHostname(), st.GetDockerNetwork(), st.GetBridge(), st.GetSubnet(), st.GetGateway(), st.GetTasks())
	}
	for _, n := range nodeNames {
		fmt.Printf("  client on %s: container %.12s\n", n, s.clients[n])
	}
	return s, nil
}

func (b *bench) nodeName(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n, i := range b.nodeIDs {
		if i == id {
			return n
		}
	}
	return id
}

// createService runs `swarmctl service create --detach ARGS` and records
// the service for removal.
func (b *bench) createService(args ...string) (string, error) {
	out, err := b.m1.Swarmctl(append([]string{"service", "create", "--detach"}, args...)...)
	if err != nil {
		return "", err
	}
	id := lastField(out)
	b.mu.Lock()
	b.services = append(b.services, id)
	b.mu.Unlock()
	return id, nil
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
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

// exec runs the load generator in a client container and returns its
// stdout.
func (b *bench) exec(cid string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", cid, "/loadgen"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("loadgen %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// cleanup removes the services, waits for their containers to go, stops
// the daemons, then removes whatever is left: containers of our nodes,
// engine networks of our cluster network, our nodes' nftables tables, the
// images and the temp dirs.
func (b *bench) cleanup() {
	b.mu.Lock()
	svcs := b.services
	var nodeIDs []string
	for _, id := range b.nodeIDs {
		nodeIDs = append(nodeIDs, id)
	}
	b.mu.Unlock()
	if b.m1 != nil && b.m1.Conn() != nil {
		for _, id := range svcs {
			if _, err := b.m1.Swarmctl("service", "rm", id); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && len(listIDs("raftswarm.service.id", svcs, "ps", "-aq")) > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		if b.netID != "" {
			if _, err := b.m1.Swarmctl("network", "rm", b.netID); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
			// Give the nodes time to remove their bridges themselves.
			t0 := time.Now()
			for time.Since(t0) < 30*time.Second && len(listIDs("raftswarm.network.id", []string{b.netID}, "network", "ls", "-q")) > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			if len(listIDs("raftswarm.network.id", []string{b.netID}, "network", "ls", "-q")) == 0 {
				fmt.Printf("cleanup: the nodes removed their engine networks %v after the containers were gone\n", time.Since(t0).Round(100*time.Millisecond))
			} else {
				fmt.Println("cleanup: the nodes' engine networks were still there 30s after the containers were gone and the network was removed")
			}
		}
	}
	if b.env != nil {
		for _, d := range b.daemons {
			d.Terminate(10 * time.Second)
		}
		b.env.Close()
	}
	if left := append(listIDs("raftswarm.service.id", svcs, "ps", "-aq"), listIDs("raftswarm.node.id", nodeIDs, "ps", "-aq")...); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cleanup: force-removing %d leftover container(s)\n", len(left))
		_ = exec.Command("docker", append([]string{"rm", "-f"}, left...)...).Run()
	}
	if b.netID != "" {
		if left := listIDs("raftswarm.network.id", []string{b.netID}, "network", "ls", "-q"); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "cleanup: removing %d leftover engine network(s)\n", len(left))
			_ = exec.Command("docker", append([]string{"network", "rm"}, left...)...).Run()
		}
	}
	if b.dnat {
		if err := exec.Command("nft", "delete", "table", "ip", dnatTable).Run(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: nft delete table ip %s: %v\n", dnatTable, err)
		}
	}
	tablesLeft := 0
	for _, id := range nodeIDs {
		if t := netplane.TableName(id); t != "" && exec.Command("nft", "list", "table", "ip", t).Run() == nil {
			tablesLeft++
			if err := exec.Command("nft", "delete", "table", "ip", t).Run(); err != nil {
				fmt.Fprintf(os.Stderr, "cleanup: nft delete table ip %s: %v\n", t, err)
			}
		}
	}
	if len(b.holds) > 0 {
		_ = exec.Command("docker", append([]string{"network", "rm"}, b.holds...)...).Run()
	}
	if len(b.images) > 0 {
		_ = exec.Command("docker", append([]string{"rmi"}, b.images...)...).Run()
	}
	if b.imgDir != "" {
		os.RemoveAll(b.imgDir)
	}
	fmt.Printf("cleanup: %d service(s) removed, daemons stopped, %d nftables table(s) left by the daemons deleted, images %v removed\n",
		len(svcs), tablesLeft, b.images)
}

// listIDs runs `docker ARGS --filter label=key=v` for each value.
func listIDs(key string, vals []string, args ...string) []string {
	var ids []string
	for _, v := range vals {
		if v == "" {
			continue
		}
		out, err := exec.Command("docker", append(append([]string(nil), args...), "--filter", "label="+key+"="+v)...).Output()
		if err != nil {
			continue
		}
		ids = append(ids, strings.Fields(string(out))...)
	}
	return ids
}

// addKernelDNAT installs the kernel-dnat experiment: TCP from m1's bridge to
// dnatAddr:80 is DNATed to the server container in the kernel (as the
// node's rules could do for local backends, kube-proxy style), before the
// node's own nat chain (priority dstnat - 5) sees it. The reply crosses the
// bridge directly and conntrack (br_netfilter) restores the source.
func (b *bench) addKernelDNAT(s *setupState) error {
	if s.m1Bridge == "" {
		return errors.New("kernel-dnat: m1's bridge interface is unknown")
	}
	rules := fmt.Sprintf(`table ip %s {
	chain prerouting {
		type nat hook prerouting priority dstnat - 10; policy accept;
		iifname "%s" ip daddr %s tcp dport 80 dnat to %s
	}
}
`, dnatTable, s.m1Bridge, dnatAddr, s.srvIP)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kernel-dnat: nft: %v: %s", err, out)
	}
	b.dnat = true
	return nil
}

// holdStaleSubnets works around other daemons on this shared machine: a
// node daemon whose bridge was removed under it may keep its DNS socket
// bound to the old gateway address (x.x.x.1:53, no interface has it any
// more). The engine would then give that free /24 to one of our nodes,
// whose DNS responder cannot bind and whose tasks are rejected. Each such
// /24 of 172.16.0.0/16 is held by a placeholder engine network for the
// run (removed at exit).
func (b *bench) holdStaleSubnets() error {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return nil // not Linux /proc: nothing to do
	}
	have := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				have[p.Addr().Unmap()] = true
			}
		}
	}
	held := map[netip.Prefix]bool{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasSuffix(f[1], ":0035") {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(f[1], ":0035"), 16, 32)
		if err != nil {
			continue
		}
		ip := netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) // little endian
		pfx := netip.PrefixFrom(ip, 24).Masked()
		if have[ip] || held[pfx] || !netip.MustParsePrefix("172.16.0.0/16").Contains(ip) {
			continue
		}
		held[pfx] = true
		name := fmt.Sprintf("%s-hold-%d", prefix, ip.As4()[2])
		if out, err := exec.Command("docker", "network", "create", "--subnet", pfx.String(), name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "hold %s (stale DNS socket on %s): %v: %s\n", pfx, ip, err, strings.TrimSpace(string(out)))
			continue
		}
		b.holds = append(b.holds, name)
		fmt.Printf("subnet %s held by placeholder network %s: a process still has a DNS socket on %s, which no interface has\n", pfx, name, ip)
	}
	return nil
}
