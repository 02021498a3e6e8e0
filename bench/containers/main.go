// Command containers times a small service on real containers: one
// managerd and two workerd processes on 127.0.0.61-63 (port 27377), each
// with its own state dir and socket under a temp dir, running tasks on the
// local Docker engine.
//
// Each run times `swarmctl service create --name bench --replicas 7
// raftswarm/demo:v1` from its start to its exit (it waits until 7/7 tasks
// run), and, measured from the same start by polling Control.ListServices
// on the manager's socket every 10 ms, until the service shows 7/7 running,
// which is what `swarmctl service ls` prints. The service is then removed
// and the run waits until its containers are gone from the engine.
//
// Daemons, containers (found by their raftswarm.node.id labels) and the
// temp dir are removed at exit, also on failure or Ctrl-C.
//
//	make build && go run ./bench/containers [-runs 5] [-replicas 7] [-bin bin]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	agentexec "github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/bench/internal/cluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	image   = "raftswarm/demo:v1"
	service = "bench"
	port    = "27377"
)

func main() {
	runs := flag.Int("runs", 5, "runs")
	replicas := flag.Int("replicas", 7, "replicas")
	bin := flag.String("bin", "bin", "directory with managerd, workerd and swarmctl (from make build)")
	build := flag.Bool("build", true, "run make build first (only with -bin bin)")
	flag.Parse()

	if *build && *bin == "bin" {
		cmd := exec.Command("make", "build")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "make build:", err)
			os.Exit(1)
		}
	}
	if err := exec.Command("docker", "image", "inspect", image).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s missing; running deploy/build-images.sh\n", image)
		cmd := exec.Command("deploy/build-images.sh")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build images:", err)
			os.Exit(1)
		}
	}
	env, err := cluster.NewEnv(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var nodeIDs []string
	cleanup := func() {
		env.Close()
		removeContainers(nodeIDs)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; cleanup(); os.Exit(130) }()

	err = bench(env, *runs, *replicas, &nodeIDs)
	cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func bench(env *cluster.Env, runs, replicas int, nodeIDs *[]string) error {
	m1 := env.Daemon("m1", "127.0.0.61:"+port, "--ingress-addr", "127.0.0.61")
	w1 := env.Daemon("w1", "127.0.0.62:"+port, "--ingress-addr", "127.0.0.62")
	w2 := env.Daemon("w2", "127.0.0.63:"+port, "--ingress-addr", "127.0.0.63")
	for _, w := range []*cluster.Daemon{w1, w2} {
		w.Binary = env.BinDir + "/workerd"
	}
	t0 := time.Now()
	for _, d := range []*cluster.Daemon{m1, w1, w2} {
		if err := d.Start(); err != nil {
			return err
		}
	}
	if _, err := m1.Swarmctl("init", "--advertise-addr", m1.Addr); err != nil {
		return err
	}
	tok, err := m1.Swarmctl("join-token", "-q", "worker")
	if err != nil {
		return err
	}
	for _, w := range []*cluster.Daemon{w1, w2} {
		if _, err := w.Swarmctl("join", "--token", strings.TrimSpace(tok), "--advertise-addr", w.Addr, m1.Addr); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for {
		ln, err := m1.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
		if err != nil {
			return err
		}
		ready := 0
		*nodeIDs = (*nodeIDs)[:0]
		for _, n := range ln.Nodes {
			*nodeIDs = append(*nodeIDs, n.Node.Id)
			if n.Node.Status == swarmpb.NodeStatus_NODE_STATUS_READY && n.Node.GetDescription().GetEngineVersion() != "" {
				ready++
			}
		}
		if ready == 3 && len(ln.Nodes) == 3 {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nodes not ready: %v", ln.Nodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("cluster: managerd m1 + workerd w1, w2 on 127.0.0.61-63:%s, Ready after %v\n", port, time.Since(t0).Round(time.Millisecond))
	if n := len(containers(*nodeIDs, false)); n != 0 {
		return fmt.Errorf("%d containers of this cluster exist before the first run", n)
	}

	var creates, lss []time.Duration
	fmt.Printf("%-4s %14s %14s %20s %12s %10s\n", "run", "create (exit)", "service ls 7/7", "task RUNNING 1st/last", "rm -> gone", "per node")
	for r := 1; r <= runs; r++ {
		lsAt := make(chan time.Time, 1)
		pctx, pcancel := context.WithCancel(ctx)
		start := time.Now()
		go func() { lsAt <- pollServiceLs(pctx, m1, replicas) }()
		out, err := m1.Swarmctl("service", "create", "--name", service, "--replicas", fmt.Sprint(replicas), image)
		created := time.Since(start)
		if err != nil {
			pcancel()
			return fmt.Errorf("run %d: %v\n%s", r, err, out)
		}
		var ls time.Duration
		select {
		case at := <-lsAt:
			ls = at.Sub(start)
		case <-time.After(60 * time.Second):
			pcancel()
			return fmt.Errorf("run %d: service ls never showed %d/%d", r, replicas, replicas)
		}
		pcancel()
		if ls <= 0 {
			return fmt.Errorf("run %d: polling service ls failed", r)
		}
		// Cross-check with the CLI and the engine.
		text, err := m1.Swarmctl("service", "ls", "--format", "{{.Name}} {{.Replicas}}")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("%s %d/%d", service, replicas, replicas); !strings.Contains(text, want) {
			return fmt.Errorf("run %d: service ls shows %q, want %q", r, strings.TrimSpace(text), want)
		}
		// When the agents saw their containers run: the RUNNING status
		// timestamps, on this machine's clock.
		lt, err := m1.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{service}})
		if err != nil {
			return err
		}
		var first, last time.Duration
		for _, t := range lt.Tasks {
			if t.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			d := time.Unix(0, t.Status.Timestamp).Sub(start)
			if first == 0 || d < first {
				first = d
			}
			last = max(last, d)
		}
		running := containers(*nodeIDs, true)
		if len(running) != replicas {
			return fmt.Errorf("run %d: %d containers running, want %d", r, len(running), replicas)
		}
		perNode := map[string]int{}
		for _, n := range running {
			perNode[n]++
		}
		var spread []string
		for _, id := range *nodeIDs {
			spread = append(spread, fmt.Sprint(perNode[id]))
		}

		rmStart := time.Now()
		if _, err := m1.Swarmctl("service", "rm", service); err != nil {
			return err
		}
		for len(containers(*nodeIDs, false)) > 0 {
			if time.Since(rmStart) > 2*time.Minute {
				return fmt.Errorf("run %d: containers still there 2 min after service rm", r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		gone := time.Since(rmStart)
		creates, lss = append(creates, created), append(lss, ls)
		fmt.Printf("%-4d %14s %14s %20s %12s %10s\n", r, ms(created), ms(ls), ms(first)+" / "+ms(last), ms(gone), strings.Join(spread, "/"))
	}
	sc, sl := cluster.Summarize(creates), cluster.Summarize(lss)
	fmt.Printf("\n%d runs: create (to exit) min %v median %v max %v; service ls %d/%d min %v median %v max %v\n",
		runs, sc.Min.Round(time.Millisecond), sc.P50.Round(time.Millisecond), sc.Max.Round(time.Millisecond),
		replicas, replicas, sl.Min.Round(time.Millisecond), sl.P50.Round(time.Millisecond), sl.Max.Round(time.Millisecond))
	return nil
}

// pollServiceLs returns when ListServices (what service ls prints) first
// shows the service with want/want running; zero time if ctx ends first.
func pollServiceLs(ctx context.Context, d *cluster.Daemon, want int) time.Time {
	ctl := d.Control()
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := ctl.ListServices(c, &swarmpb.ListServicesRequest{})
		cancel()
		if err == nil {
			for _, s := range resp.Services {
				if s.Service.GetSpec().GetName() == service && s.Running == uint64(want) && s.Desired == uint64(want) {
					return time.Now()
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}
}

// containers lists the node IDs of the engine's containers that belong to
// this cluster's nodes (only running ones if running).
func containers(nodeIDs []string, running bool) []string {
	var out []string
	for _, id := range nodeIDs {
		args := []string{"ps", "-q", "--filter", "label=" + agentexec.LabelNodeID + "=" + id}
		if !running {
			args = append(args, "-a")
		}
		b, err := exec.Command("docker", args...).Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Fields(string(b)) {
			if l != "" {
				out = append(out, id)
			}
		}
	}
	return out
}

// removeContainers force-removes every container of this cluster's nodes.
func removeContainers(nodeIDs []string) {
	var errs []error
	for _, id := range nodeIDs {
		b, err := exec.Command("docker", "ps", "-aq", "--filter", "label="+agentexec.LabelNodeID+"="+id).Output()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ids := strings.Fields(string(b)); len(ids) > 0 {
			if out, err := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("docker rm: %v: %s", err, out))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
