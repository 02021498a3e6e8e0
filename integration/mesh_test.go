package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// freePort returns a TCP port free on the loopback addresses.
func freePort(t *testing.T) uint32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get asks the service through one node's published port.
func get(addr string) (string, error) {
	resp, err := httpClient.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

func field(answer, key string) string {
	for _, f := range strings.Fields(answer) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// load sends requests round the nodes' ingress addresses until stopped,
// counting failures and the versions answered.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	versions   map[string]int
	lastErr    error
	stop       chan struct{}
	done       chan struct{}
}

func startLoad(addrs []string) *load {
	l := &load{versions: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		deadline := time.Now().Add(5 * time.Minute) // bounded, whatever happens
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			ans, err := get(addrs[i%len(addrs)])
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				l.lastErr = err
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
			l.mu.Lock()
			l.versions[field(ans, "version")]++
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *load) finish() { close(l.stop); <-l.done }

func meshCluster(t *testing.T, managers int) (*testcluster.Cluster, []string) {
	c := testcluster.New(t, managers, 2, testcluster.Options{Docker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.Eventually(t, 30*time.Second, func() error {
		nodes, err := c.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Nodes {
			if n.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY || n.Node.Description.GetEngineVersion() == "" {
				return fmt.Errorf("node %s not ready", n.Node.Description.GetHostname())
			}
		}
		return nil
	})
	var ingress []string
	for _, m := range c.Members {
		ingress = append(ingress, m.Ingress)
	}
	return c, ingress
}

func webSpec(name, image string, published uint32) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{
		Name: name, Replicas: 7,
		Container: &swarmpb.ContainerSpec{Image: image, StopGracePeriodNs: int64(5 * time.Second)},
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY},
		Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: published, PublishMode: "ingress"}},
		Update:    &swarmpb.UpdateConfig{Parallelism: 1, FailureAction: "pause", Order: "stop-first"},
		Rollback:  &swarmpb.UpdateConfig{Parallelism: 1, FailureAction: "pause", Order: "stop-first"},
	}
}

// waitAnswers waits until every node's published port answers with want
// version from at least minTasks distinct tasks.
func waitAnswers(t *testing.T, addrs []string, port uint32, version string, minTasks int) {
	t.Helper()
	testutil.Eventually(t, 90*time.Second, func() error {
		tasks := map[string]bool{}
		for _, ip := range addrs {
			for i := 0; i < 8; i++ {
				ans, err := get(net.JoinHostPort(ip, strconv.Itoa(int(port))))
				if err != nil {
					return fmt.Errorf("%s: %v", ip, err)
				}
				if v := field(ans, "version"); v != version {
					return fmt.Errorf("%s answered version %s, want %s", ip, v, version)
				}
				tasks[field(ans, "task")] = true
			}
		}
		if len(tasks) < minTasks {
			return fmt.Errorf("answers came from %d tasks, want at least %d", len(tasks), minTasks)
		}
		return nil
	})
}

func waitUpdate(t *testing.T, ctl swarmpb.ControlClient, id, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	testutil.Eventually(t, 3*time.Minute, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		resp, err := ctl.GetService(cctx, &swarmpb.GetServiceRequest{Service: id})
		if err != nil {
			t.Logf("get service: %v", err)
			return err
		}
		if got := resp.Service.UpdateStatus.GetState(); got != state {
			return fmt.Errorf("update state %q (%s), want %q", got, resp.Service.UpdateStatus.GetMessage(), state)
		}
		return nil
	})
}

func updateImage(t *testing.T, ctl swarmpb.ControlClient, id, image string, mutate func(*swarmpb.ServiceSpec)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cur, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: id})
	if err != nil {
		t.Fatal(err)
	}
	spec := cur.Service.Spec
	spec.Container.Image = image
	if mutate != nil {
		mutate(spec)
	}
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: id, Version: cur.Service.Meta.Version, Spec: spec}); err != nil {
		t.Fatal(err)
	}
}

func TestMeshRollingUpdateRollback(t *testing.T) {
	requireDocker(t)
	v1, v2, crash := buildDemoImage(t, "v1"), buildDemoImage(t, "v2"), buildCrashImage(t)
	c, ingress := meshCluster(t, 1)
	ctl := c.Control()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	port := freePort(t)
	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: webSpec("mesh-"+randomSuffix(), v1, port)})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Service.Id
	t.Cleanup(func() { removeService(t, c, id) })
	// Every node answers on the published port, from several tasks.
	waitAnswers(t, ingress, port, "v1", 3)

	addrs := make([]string, len(ingress))
	for i, ip := range ingress {
		addrs[i] = net.JoinHostPort(ip, strconv.Itoa(int(port)))
	}
	for _, order := range []string{"stop-first", "start-first"} {
		next := "v2"
		img := v2
		if order == "start-first" {
			next, img = "v1", v1
		}
		l := startLoad(addrs)
		updateImage(t, ctl, id, img, func(s *swarmpb.ServiceSpec) { s.Update.Order = order })
		waitUpdate(t, ctl, id, "completed")
		waitAnswers(t, ingress, port, next, 3)
		l.finish()
		if l.failed.Load() != 0 || l.ok.Load() == 0 {
			t.Fatalf("%s update: %d requests failed (last: %v), %d succeeded", order, l.failed.Load(), l.lastErr, l.ok.Load())
		}
		t.Logf("%s update: %d requests, none failed, versions %v", order, l.ok.Load(), l.versions)
	}

	// Rollback returns every answer to the previous spec (v2).
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: id, Rollback: true}); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, ctl, id, "rollback_completed")
	waitAnswers(t, ingress, port, "v2", 3)

	// A crashing version with failure action rollback ends on the old one.
	updateImage(t, ctl, id, crash, func(s *swarmpb.ServiceSpec) {
		s.Update.FailureAction = "rollback"
		s.Update.MonitorNs = int64(3 * time.Second)
	})
	waitUpdate(t, ctl, id, "rollback_completed")
	waitAnswers(t, ingress, port, "v2", 3)
	testutil.Eventually(t, time.Minute, func() error {
		_, n, err := runningTasks(ctx, ctl, id)
		if err != nil {
			return err
		}
		if n != 7 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
}

// buildCrashImage builds the demo app in its crash mode: it exits 1 soon
// after starting.
func buildCrashImage(t *testing.T) string {
	return buildDemoImageWith(t, "crash", "-X main.crash=1")
}

// A leader killed in the middle of a rolling update: the new leader
// continues the update from the replicated state, and it completes.
func TestMeshUpdateSurvivesLeaderFailover(t *testing.T) {
	requireDocker(t)
	v1, v2 := buildDemoImage(t, "v1"), buildDemoImage(t, "v2")
	c, ingress := meshCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	port := freePort(t)
	spec := webSpec("failover-"+randomSuffix(), v1, port)
	spec.Update.DelayNs = int64(time.Second)
	resp, err := c.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Service.Id
	t.Cleanup(func() { removeService(t, c, id) })
	waitAnswers(t, ingress, port, "v1", 3)
	updateImage(t, c.Control(), id, v2, nil)
	// Wait until the update is under way (some but not all tasks on v2).
	testutil.Eventually(t, time.Minute, func() error {
		tasks, err := c.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{id}})
		if err != nil {
			return err
		}
		n := 0
		for _, tk := range tasks.Tasks {
			if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && tk.Spec.Container.Image == v2 && tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
				n++
			}
		}
		if n < 1 || n > 5 {
			return fmt.Errorf("%d tasks on v2", n)
		}
		return nil
	})
	leader := c.Leader(10 * time.Second)
	leader.Stop()
	waitUpdate(t, c.Control(), id, "completed")
	var alive []string
	for _, m := range c.Members {
		if m.Running() {
			alive = append(alive, m.Ingress)
		}
	}
	waitAnswers(t, alive, port, "v2", 3)
	testutil.Eventually(t, time.Minute, func() error {
		_, n, err := runningTasks(ctx, c.Control(), id)
		if err != nil {
			return err
		}
		if n != 7 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
}

// Host-mode publishing binds the port only on the nodes running a task,
// and never two tasks of it on one node.
func TestHostModePublishing(t *testing.T) {
	requireDocker(t)
	v1 := buildDemoImage(t, "v1")
	c, _ := meshCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	port := freePort(t)
	spec := webSpec("host-"+randomSuffix(), v1, port)
	spec.Replicas = 4 // three nodes: one task stays pending
	spec.Ports[0].PublishMode = "host"
	resp, err := c.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Service.Id
	t.Cleanup(func() { removeService(t, c, id) })
	testutil.Eventually(t, time.Minute, func() error {
		tasks, err := c.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{id}})
		if err != nil {
			return err
		}
		running, pending := map[string]int{}, 0
		for _, tk := range tasks.Tasks {
			switch {
			case tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING:
				running[tk.NodeId]++
			case tk.Status.State == swarmpb.TaskState_TASK_STATE_PENDING && strings.Contains(tk.Status.Message, "host-mode port"):
				pending++
			}
		}
		if len(running) != 3 || pending != 1 {
			return fmt.Errorf("running per node %v, pending with reason %d", running, pending)
		}
		for node, n := range running {
			if n != 1 {
				return fmt.Errorf("node %s runs %d tasks", node, n)
			}
		}
		return nil
	})
	for _, m := range c.Members {
		if _, err := get(net.JoinHostPort(m.Ingress, strconv.Itoa(int(port)))); err != nil {
			t.Fatalf("host-mode port on %s: %v", m.Name, err)
		}
	}
}

// removeService removes a test's service and checks that the cluster
// removed its containers; whatever is left (say, after a failure) is
// force-removed so that no test leaves containers behind.
func removeService(t *testing.T, c *testcluster.Cluster, id string) {
	// Bring every node back so that each removes its own containers.
	for _, m := range c.Members {
		if !m.Running() {
			m.Start(t)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = c.Control().RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: id})
	deadline := time.Now().Add(time.Minute)
	for len(containers(t, id, true)) > 0 && time.Now().Before(deadline) {
		tick := time.NewTimer(200 * time.Millisecond)
		<-tick.C
	}
	if left := containers(t, id, true); len(left) > 0 {
		t.Errorf("service removal left %d containers; removing them by force", len(left))
		for _, cid := range left {
			_, _ = docker(t, "rm", "-f", cid)
		}
	}
}
