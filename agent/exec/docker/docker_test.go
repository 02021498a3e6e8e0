package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The sleeper binary is compiled once per test binary; each test builds its
// own uniquely tagged image from it and removes it afterwards.
var (
	sleeperOnce sync.Once
	sleeperDir  string
	sleeperBin  []byte
	sleeperErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sleeperDir != "" {
		os.RemoveAll(sleeperDir)
	}
	os.Exit(code)
}

func randID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// engine connects to the local engine or skips the test when there is none.
func engine(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Skipf("no Docker engine reachable: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		t.Skipf("no Docker engine reachable: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func sleeper(t *testing.T) []byte {
	t.Helper()
	sleeperOnce.Do(func() {
		sleeperDir, sleeperErr = os.MkdirTemp("", "raftswarm-sleeper")
		if sleeperErr != nil {
			return
		}
		out := filepath.Join(sleeperDir, "sleeper")
		cmd := osexec.Command("go", "build", "-o", out, "./testdata/sleeper")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if b, err := cmd.CombinedOutput(); err != nil {
			sleeperErr = err
			sleeperBin = b
			return
		}
		sleeperBin, sleeperErr = os.ReadFile(out)
	})
	if sleeperErr != nil {
		t.Fatalf("build sleeper: %v\n%s", sleeperErr, sleeperBin)
	}
	return sleeperBin
}

// buildImage builds raftswarm-test/sleeper:<random> FROM scratch and
// removes it when the test ends.
func buildImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	bin := sleeper(t)
	tag := "raftswarm-test/sleeper:" + randID(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n")},
		{"sleeper", 0o755, bin},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Register removal before building so a half-done build is cleaned too.
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !strings.Contains(err.Error(), "No such image") {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"raftswarm-test": "1"},
	})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("build output: %v", err)
		}
		if msg.Error != "" {
			t.Fatalf("build image: %s", msg.Error)
		}
	}
	return tag
}

// newExecutor returns an executor for a fresh node ID whose containers are
// all force-removed when the test ends.
func newExecutor(t *testing.T, cli *client.Client) *Executor {
	t.Helper()
	nodeID := "testnode-" + randID(t)
	t.Cleanup(func() { removeNodeContainers(t, cli, nodeID) })
	e, err := New("", nodeID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func removeNodeContainers(t *testing.T, cli *client.Client, nodeID string) {
	ctx := context.Background()
	list, err := cli.ContainerList(ctx, container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", exec.LabelNodeID+"="+nodeID)),
	})
	if err != nil {
		t.Errorf("cleanup list: %v", err)
		return
	}
	for _, c := range list {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("cleanup remove %s: %v", c.ID, err)
		}
	}
}

func testTask(id string, slot uint64, img string, args ...string) *swarmpb.Task {
	return &swarmpb.Task{
		Id: id, ServiceId: "svc-" + id, ServiceName: "web", Slot: slot,
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Spec: &swarmpb.ServiceSpec{
			Name: "web",
			Container: &swarmpb.ContainerSpec{
				Image:             img,
				Args:              args,
				Env:               []string{"FOO=bar"},
				Labels:            map[string]string{"team": "blue"},
				StopGracePeriodNs: int64(2 * time.Second),
			},
			Resources: &swarmpb.ResourceRequirements{
				Limits: &swarmpb.Resources{NanoCpus: 5e8, MemoryBytes: 64 << 20},
			},
		},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDescribe(t *testing.T) {
	cli := engine(t)
	e := newExecutor(t, cli)
	d, err := e.Describe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.GetOs() == "" || d.GetArch() == "" || d.GetEngineVersion() == "" ||
		d.GetResources().GetNanoCpus() < 1e9 || d.GetResources().GetMemoryBytes() <= 0 {
		t.Fatalf("description %+v", d)
	}
}

func TestDescribeUnreachable(t *testing.T) {
	e, err := New("unix:///nonexistent/docker.sock", "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Describe(ctxT(t)); err == nil {
		t.Fatal("Describe on an unreachable engine succeeded")
	}
}

func TestLifecycleExitCode(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	tk := testTask("task"+randID(t), 3, img, "exit", "42")
	ctl, err := e.Controller(tk)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	// Name, labels, env and config as specified.
	ins, err := cli.ContainerInspect(ctx, "web.3."+tk.GetId())
	if err != nil {
		t.Fatalf("container not named <service>.<slot>.<task>: %v", err)
	}
	if got := ctl.(exec.ContainerIdentifier).ContainerID(); got != ins.ID {
		t.Fatalf("ContainerID %q, want %q", got, ins.ID)
	}
	wantLabels := map[string]string{
		exec.LabelNodeID: e.NodeID(), exec.LabelServiceID: tk.GetServiceId(),
		exec.LabelServiceName: "web", exec.LabelTaskID: tk.GetId(), exec.LabelTaskSlot: "3", "team": "blue",
	}
	for k, v := range wantLabels {
		if ins.Config.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, ins.Config.Labels[k], v)
		}
	}
	for _, env := range []string{"FOO=bar", "TASK_ID=" + tk.GetId(), "NODE_ID=" + e.NodeID(), "SERVICE_NAME=web"} {
		if !slices.Contains(ins.Config.Env, env) {
			t.Errorf("env %v lacks %s", ins.Config.Env, env)
		}
	}
	if hc := ins.HostConfig; hc.RestartPolicy.Name != container.RestartPolicyDisabled || hc.NanoCPUs != 5e8 || hc.Memory != 64<<20 {
		t.Errorf("host config: restart %q, cpus %d, mem %d", hc.RestartPolicy.Name, hc.NanoCPUs, hc.Memory)
	}
	if len(ins.HostConfig.PortBindings) != 0 {
		t.Errorf("ports mapped: %v", ins.HostConfig.PortBindings)
	}
	if !slices.Equal(ins.Config.Cmd, []string{"exit", "42"}) || !slices.Equal(ins.Config.Entrypoint, []string{"/sleeper"}) {
		t.Errorf("entrypoint %v cmd %v", ins.Config.Entrypoint, ins.Config.Cmd)
	}

	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := ctl.Wait(ctx)
	if err != nil || code != 42 {
		t.Fatalf("Wait = %d, %v; want 42", code, err)
	}
	if err := ctl.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, ins.ID); err == nil {
		t.Fatal("container still exists after Remove")
	}
	if err := ctl.Remove(ctx); err != nil {
		t.Fatalf("Remove of a removed container: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	// "print 1" writes its line only after installing its SIGTERM handler:
	// a signal sent before that would be ignored (the process is PID 1).
	tk := testTask("task"+randID(t), 1, img, "print", "1")
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, e, tk)
	waited := make(chan int, 1)
	go func() {
		code, err := ctl.Wait(ctx)
		if err != nil {
			code = -1
		}
		waited <- code
	}()
	start := time.Now()
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The sleeper exits 0 on SIGTERM, well within the grace period.
	if code := <-waited; code != 0 {
		t.Fatalf("exit code after shutdown %d", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestAdoptionAndNodeIsolation(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	other := newExecutor(t, cli)
	ctx := ctxT(t)

	tk := testTask("task"+randID(t), 1, img)
	global := testTask("glob"+randID(t), 0, img)
	global.Spec.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	for _, x := range []*swarmpb.Task{tk, global} {
		ctl, _ := e.Controller(x)
		if err := ctl.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctl.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	otherTask := testTask("othr"+randID(t), 1, img)
	octl, _ := other.Controller(otherTask)
	if err := octl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}

	// A "restarted agent": a new executor for the same node.
	again, err := New("", e.NodeID())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	list, err := again.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]exec.ContainerInfo{}
	for _, c := range list {
		names[c.Name] = c
	}
	if len(list) != 2 {
		t.Fatalf("node sees %d containers, want its 2: %+v", len(list), list)
	}
	ci, ok := names["web.1."+tk.GetId()]
	if !ok || !ci.Running || ci.TaskID != tk.GetId() || ci.ServiceID != tk.GetServiceId() || ci.Slot != 1 || ci.State != exec.StateRunning {
		t.Fatalf("replicated container info %+v", ci)
	}
	if gi, ok := names["web."+e.NodeID()+"."+global.GetId()]; !ok || !gi.Running {
		t.Fatalf("global container not named <service>.<node>.<task>: %v", names)
	}
	olist, err := other.Containers(ctx)
	if err != nil || len(olist) != 1 || olist[0].TaskID != otherTask.GetId() || olist[0].Running || olist[0].State != exec.StateCreated {
		t.Fatalf("other node sees %+v, %v", olist, err)
	}

	// Adoption: Prepare reuses, Start of a running one is a no-op (no
	// restart), Wait follows it.
	ctl, _ := again.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ins, _ := cli.ContainerInspect(ctx, ci.ID)
	if ins.RestartCount != 0 || ins.State.StartedAt == "" || !ins.State.Running {
		t.Fatalf("adopted container state %+v", ins.State)
	}
	// A stub task (as for orphans) reaches the same container.
	stub, _ := again.Controller(exec.StubTask(ci))
	if err := stub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := ctl.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("Wait after stub shutdown = %d, %v", code, err)
	}
	if err := stub.Remove(ctx); err != nil {
		t.Fatal(err)
	}

	// A node does not touch another node's container, even by name.
	stolen := testTask(otherTask.GetId(), 1, img)
	sctl, _ := e.Controller(stolen)
	if err := sctl.Prepare(ctx); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("Prepare over a foreign container: %v", err)
	}
	if err := sctl.Remove(ctx); err == nil {
		t.Fatal("Remove of a foreign container succeeded")
	}
	if _, err := cli.ContainerInspect(ctx, olist[0].ID); err != nil {
		t.Fatalf("foreign container gone: %v", err)
	}
	if code, err := sctl.Wait(ctx); err == nil {
		t.Fatalf("Wait on a foreign container = %d", code)
	}
}

func TestExitedContainerListed(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	tk := testTask("task"+randID(t), 2, img, "exit", "3")
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := ctl.Wait(ctx); err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	list, err := e.Containers(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list %+v, %v", list, err)
	}
	if c := list[0]; c.Running || c.ExitCode != 3 || c.State != exec.StateExited {
		t.Fatalf("exited container info %+v", c)
	}
}

func TestMissingImageRejected(t *testing.T) {
	cli := engine(t)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	img := "raftswarm-test/absent:" + randID(t)
	ctl, _ := e.Controller(testTask("task"+randID(t), 1, img))
	err := ctl.Prepare(ctx)
	if err == nil {
		// Only possible if a registry served it; do not leave it behind.
		cli.ImageRemove(context.Background(), img, image.RemoveOptions{Force: true})
		t.Fatal("Prepare of a missing image succeeded")
	}
	// The message is the engine's (e.g. no registry reachable, or
	// repository does not exist), wrapped with the image name.
	if !strings.Contains(err.Error(), img) || !strings.Contains(err.Error(), "pull failed") {
		t.Fatalf("error %q", err)
	}
	t.Logf("engine said: %v", err)
	list, _ := e.Containers(ctx)
	if len(list) != 0 {
		t.Fatalf("containers created: %+v", list)
	}
}

func TestHealthcheckAndMounts(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	dir := t.TempDir()
	tk := testTask("task"+randID(t), 1, img)
	tk.Spec.Container.Command = []string{"/sleeper"}
	tk.Spec.Container.Args = nil
	tk.Spec.Container.Dir = "/data"
	tk.Spec.Container.User = "1000"
	tk.Spec.Container.Hostname = "myhost"
	tk.Spec.Container.Healthcheck = &swarmpb.HealthConfig{Test: []string{"NONE"}}
	tk.Spec.Container.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_BIND, Source: dir, Target: "/data", ReadOnly: true}}
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	ins, err := cli.ContainerInspect(ctx, ctl.(exec.ContainerIdentifier).ContainerID())
	if err != nil {
		t.Fatal(err)
	}
	c := ins.Config
	if !slices.Equal(c.Entrypoint, []string{"/sleeper"}) || len(c.Cmd) != 0 || c.WorkingDir != "/data" || c.User != "1000" || c.Hostname != "myhost" {
		t.Errorf("config %+v", c)
	}
	if c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, []string{"NONE"}) {
		t.Errorf("healthcheck %+v", c.Healthcheck)
	}
	if m := ins.HostConfig.Mounts; len(m) != 1 || m[0].Source != dir || m[0].Target != "/data" || !m[0].ReadOnly {
		t.Errorf("mounts %+v", m)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits until the sleeper in tk's container printed its first
// line, i.e. handles signals.
func waitReady(t *testing.T, e *Executor, tk *swarmpb.Task) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got bool
		err := e.Logs(ctxT(t), tk, exec.LogOptions{Tail: -1}, func(l *swarmpb.LogLine) error {
			got = got || strings.Contains(string(l.Data), "out 1")
			return nil
		})
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container never became ready: %v", err)
		}
		tick := time.NewTimer(50 * time.Millisecond)
		<-tick.C
	}
}
