package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// requireDocker skips when no engine answers; CI has one.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipping: no docker CLI on PATH (these tests need a Docker engine)")
	}
	if out, err := docker(t, "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Skipf("skipping: no Docker engine reachable: %s", out)
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildDemoImage builds deploy/demoapp into a FROM-scratch image with a
// unique tag, removed when the test ends.
func buildDemoImage(t *testing.T, version string) string {
	t.Helper()
	return buildDemoImageWith(t, version, "")
}

func buildDemoImageWith(t *testing.T, version, extraLDFlags string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version+" "+extraLDFlags,
		"-o", filepath.Join(dir, "demoapp"), "github.com/raftswarm/raftswarm/deploy/demoapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build demoapp: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY demoapp /demoapp\nENTRYPOINT [\"/demoapp\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "raftswarm-test/demo:" + version + "-" + randomSuffix()
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = docker(t, "rmi", "-f", tag) })
	return tag
}

// containers lists the IDs of containers of a service.
func containers(t *testing.T, serviceID string, all bool) []string {
	t.Helper()
	args := []string{"ps", "-q", "--filter", "label=raftswarm.service.id=" + serviceID}
	if all {
		args = append(args, "-a")
	}
	out, err := docker(t, args...)
	if err != nil {
		t.Fatalf("docker ps: %v %s", err, out)
	}
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}

func runningTasks(ctx context.Context, c swarmpb.ControlClient, svc string) (map[string]int, int, error) {
	resp, err := c.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{svc}})
	if err != nil {
		return nil, 0, err
	}
	byNode := map[string]int{}
	n := 0
	for _, tk := range resp.Tasks {
		if tk.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && tk.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
			byNode[resp.NodeNames[tk.NodeId]]++
			n++
		}
	}
	return byNode, n, nil
}

func TestDockerServiceLifecycle(t *testing.T) {
	requireDocker(t)
	image := buildDemoImage(t, "v1")
	c := testcluster.New(t, 1, 2, testcluster.Options{Docker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctl := c.Control()
	// Wait until every node is Ready, so the spread has all three to use.
	testutil.Eventually(t, 30*time.Second, func() error {
		nodes, err := ctl.ListNodes(ctx, &swarmpb.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range nodes.Nodes {
			if n.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY || n.Node.Description.GetEngineVersion() == "" {
				return fmt.Errorf("node %s is %s (engine %q)", n.Node.Description.GetHostname(), n.Node.Status, n.Node.Description.GetEngineVersion())
			}
		}
		return nil
	})

	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: "web-" + randomSuffix(), Replicas: 7,
		Container: &swarmpb.ContainerSpec{Image: image, StopGracePeriodNs: int64(2 * time.Second)},
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc := resp.Service
	t.Cleanup(func() {
		// Belt and braces: remove any container the test left behind.
		for _, id := range containers(t, svc.Id, true) {
			_, _ = docker(t, "rm", "-f", id)
		}
	})

	// Seven replicas spread over the three nodes sharing this engine.
	testutil.Eventually(t, 90*time.Second, func() error {
		byNode, n, err := runningTasks(ctx, ctl, svc.Id)
		if err != nil {
			return err
		}
		if n != 7 || len(byNode) != 3 {
			return fmt.Errorf("running %d on %v", n, byNode)
		}
		if got := len(containers(t, svc.Id, false)); got != 7 {
			return fmt.Errorf("%d containers running", got)
		}
		return nil
	})

	// A killed container is replaced.
	victim := containers(t, svc.Id, false)[0]
	if out, err := docker(t, "kill", victim); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		_, n, err := runningTasks(ctx, ctl, svc.Id)
		if err != nil {
			return err
		}
		running := containers(t, svc.Id, false)
		for _, id := range running {
			if strings.HasPrefix(victim, id) || strings.HasPrefix(id, victim) {
				return fmt.Errorf("killed container still running")
			}
		}
		if n != 7 || len(running) != 7 {
			return fmt.Errorf("running tasks %d, containers %d", n, len(running))
		}
		return nil
	})

	// An agent restart adopts its containers: none restarted, none added.
	before := strings.Join(containers(t, svc.Id, false), ",")
	w1 := c.Get("w1")
	w1.Stop()
	w1.Start(t)
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "w1"})
		if err != nil {
			return err
		}
		if st.Node.Node.Status != swarmpb.NodeStatus_NODE_STATUS_READY {
			return fmt.Errorf("w1 %s", st.Node.Node.Status)
		}
		_, n, err := runningTasks(ctx, ctl, svc.Id)
		if err != nil {
			return err
		}
		if n != 7 {
			return fmt.Errorf("running %d", n)
		}
		return nil
	})
	if after := strings.Join(containers(t, svc.Id, false), ","); after != before {
		t.Fatalf("containers changed across an agent restart:\nbefore %s\nafter  %s", before, after)
	}

	// service rm leaves no container behind.
	if _, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: svc.Id}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if left := containers(t, svc.Id, true); len(left) != 0 {
			return fmt.Errorf("%d containers left", len(left))
		}
		return nil
	})
}

func TestDockerUnknownImageRejected(t *testing.T) {
	requireDocker(t)
	c := testcluster.New(t, 1, 0, testcluster.Options{Docker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: "nope-" + randomSuffix(), Replicas: 1,
		Container: &swarmpb.ContainerSpec{Image: "raftswarm-test/does-not-exist:" + randomSuffix()},
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_NONE},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		tasks, err := c.Control().ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{resp.Service.Id}})
		if err != nil {
			return err
		}
		for _, tk := range tasks.Tasks {
			if tk.Status.State == swarmpb.TaskState_TASK_STATE_REJECTED && tk.Status.Err != "" {
				return nil
			}
		}
		return fmt.Errorf("no rejected task yet")
	})
	_, _ = c.Control().RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: resp.Service.Id})
}
