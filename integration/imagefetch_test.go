package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rsexec "github.com/raftswarm/raftswarm/agent/exec"
	dockerexec "github.com/raftswarm/raftswarm/agent/exec/docker"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// secondEngine is a dockerd of its own beside the machine's engine: its own
// data root, exec root, pid file, socket, empty config file and default
// bridge (never --bridge=none: that deletes the first engine's docker0). It
// leaves iptables alone (the first engine's rules stay as they are) and
// stores images with vfs, which works on any filesystem. Everything is
// removed when the test ends.
type secondEngine struct {
	Host string // unix://...
	dir  string
}

func startSecondEngine(t *testing.T) *secondEngine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: a second dockerd needs root")
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Skip("skipping: no dockerd on PATH")
	}
	suffix := randomSuffix()
	// Short paths: containerd's sockets live under the exec root.
	dir := filepath.Join(os.TempDir(), "rsimg-"+suffix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	e := &secondEngine{Host: "unix://" + filepath.Join(dir, "d.sock"), dir: dir}
	bridge := "rsimg" + suffix // 13 characters
	var subnet string
	out, _ := exec.Command("ip", "-4", "addr").CombinedOutput()
	for i := 0; i < 50; i++ {
		cand := fmt.Sprintf("10.213.%d.", 10+int(suffix[i%8])%200+i)
		if !strings.Contains(string(out), cand) {
			subnet = cand + "1/24"
			break
		}
	}
	var cmd *exec.Cmd
	t.Cleanup(func() {
		if cmd != nil && cmd.Process != nil {
			// Containers first: a stopped dockerd leaves them to no one.
			if ids, err := exec.Command("docker", "-H", e.Host, "ps", "-aq").Output(); err == nil && len(strings.Fields(string(ids))) > 0 {
				_ = exec.Command("docker", append([]string{"-H", e.Host, "rm", "-f", "-v"}, strings.Fields(string(ids))...)...).Run()
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		_ = exec.Command("ip", "link", "del", bridge).Run()
		_ = os.RemoveAll(dir)
	})
	for _, args := range [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", subnet, "dev", bridge},
		{"link", "set", bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd = exec.Command("dockerd",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", e.Host,
		"--config-file", filepath.Join(dir, "config.json"), "--bridge", bridge,
		"--iptables=false", "--ip-masq=false", "--storage-driver", "vfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cmd = nil
		t.Fatalf("start dockerd: %v", err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		out, err := exec.Command("docker", "-H", e.Host, "version", "--format", "{{.Server.Version}}").CombinedOutput()
		if err != nil {
			return fmt.Errorf("second engine not up: %v %s", err, out)
		}
		return nil
	})
	return e
}

func (e *secondEngine) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", e.Host}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// fetchRecorder stands in for the data path between the nodes: it serves a
// fetch with the named node's own executor (SaveImage), as the node's
// tunnel listener would, and records who was asked for what.
type fetchRecorder struct {
	mu    sync.Mutex
	execs map[string]*dockerexec.Executor
	asked []string // node ID + " " + image ID
}

func (f *fetchRecorder) configure(engines map[string]string) func(name string, cfg *node.Config) {
	return func(name string, cfg *node.Config) {
		host, ingress := engines[name], cfg.IngressAddr
		cfg.DataPort = freeDataPort(ingress)
		cfg.Executor = func(nodeID string) (rsexec.Executor, error) {
			e, err := dockerexec.NewWithOptions(host, nodeID, dockerexec.Options{IngressIP: ingress})
			if err == nil {
				f.mu.Lock()
				f.execs[nodeID] = e
				f.mu.Unlock()
			}
			return e, err
		}
		cfg.FetchImage = func(ctx context.Context, nodeID, addr, imageID string) (io.ReadCloser, error) {
			f.mu.Lock()
			f.asked = append(f.asked, nodeID+" "+imageID)
			e := f.execs[nodeID]
			f.mu.Unlock()
			if e == nil {
				return nil, errors.New("no such node")
			}
			return e.SaveImage(ctx, imageID)
		}
	}
}

// removeRules deletes, once the cluster has stopped, the kernel rules a
// node's data plane leaves in place when it stops (one nft table per node,
// design10.md); a tree without the data plane has none.
func removeRules(t *testing.T, c *testcluster.Cluster) {
	var ids []string
	for _, m := range c.Members {
		if id := m.NodeID(); len(id) >= 12 {
			ids = append(ids, id[:12])
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Stop()
		}
		for _, id := range ids {
			_ = exec.Command("nft", "delete", "table", "ip", "raftswarm_"+id).Run()
		}
	})
}

// freeDataPort is a TCP port free on ip now (tests on this machine share
// the loopback addresses, so no fixed port).
func freeDataPort(ip string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestImageFetchAndVolumesAcrossEngines: an image built on the first engine
// only runs on a node whose engine is the second one, fetched from the node
// that created the service and checked by ID; named volumes are created on
// each node's engine with their driver options and labels, and
// RemoveVolumes removes them on every node.
func TestImageFetchAndVolumesAcrossEngines(t *testing.T) {
	requireDocker(t)
	image := buildDemoImage(t, "fetch")
	imageID, err := docker(t, "image", "inspect", "--format", "{{.Id}}", image)
	if err != nil {
		t.Fatalf("inspect %s: %v %s", image, err, imageID)
	}
	eng := startSecondEngine(t)
	if out, err := eng.docker("image", "inspect", image); err == nil {
		t.Fatalf("the second engine already has %s: %s", image, out)
	}
	vol := "rsimgvol-" + randomSuffix()
	t.Cleanup(func() {
		_, _ = docker(t, "volume", "rm", "-f", vol)
		_, _ = eng.docker("volume", "rm", "-f", vol)
	})

	rec := &fetchRecorder{execs: map[string]*dockerexec.Executor{}}
	c := testcluster.New(t, 1, 1, testcluster.Options{Docker: true, Configure: rec.configure(map[string]string{"w1": eng.Host})})
	removeRules(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctl := c.Control() // m1's socket: its engine has the image
	m1 := c.Get("m1").NodeID()

	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: "fetch-" + randomSuffix(), Mode: swarmpb.ServiceMode_SERVICE_MODE_GLOBAL,
		Container: &swarmpb.ContainerSpec{Image: image, StopGracePeriodNs: int64(time.Second), Mounts: []*swarmpb.Mount{
			{Type: swarmpb.Mount_TYPE_VOLUME, Source: vol, Target: "/data", VolumeDriver: "local",
				VolumeOptions: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
				VolumeLabels:  map[string]string{"com.docker.stack.namespace": "rsimg"}},
			{Type: swarmpb.Mount_TYPE_TMPFS, Target: "/scratch", TmpfsSizeBytes: 2 << 20},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc := resp.Service
	if got := svc.Spec.Container.ImageId; got != imageID {
		t.Fatalf("service pinned to image %q, want %s (the creating node's)", got, imageID)
	}
	if o := svc.ImageOrigins; len(o) != 1 || o[0].NodeId != m1 || o[0].ImageId != imageID {
		t.Fatalf("image origins %v, want m1 (%s)", o, m1)
	}
	t.Cleanup(func() {
		for _, id := range containers(t, svc.Id, true) {
			_, _ = docker(t, "rm", "-f", id)
		}
	})

	testutil.Eventually(t, 90*time.Second, func() error {
		byNode, n, err := runningTasks(ctx, ctl, svc.Id)
		if err != nil {
			return err
		}
		if n != 2 || byNode["w1"] != 1 {
			tasks, _ := ctl.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{svc.Id}})
			var st []string
			for _, tk := range tasks.GetTasks() {
				st = append(st, fmt.Sprintf("%s:%s %s %s", tasks.NodeNames[tk.NodeId], tk.Status.State, tk.Status.Message, tk.Status.Err))
			}
			return fmt.Errorf("running %v; tasks %v", byNode, st)
		}
		return nil
	})

	// The second engine got exactly that image, from m1, tagged as the spec says.
	if got, err := eng.docker("image", "inspect", "--format", "{{.Id}}", image); err != nil || got != imageID {
		t.Fatalf("second engine: %s is %q (%v), want %s", image, got, err, imageID)
	}
	rec.mu.Lock()
	asked := strings.Join(rec.asked, ",")
	rec.mu.Unlock()
	if asked != m1+" "+imageID {
		t.Errorf("fetches %q, want one from m1 (%s)", asked, m1)
	}

	// Volumes: created on each engine with the spec's driver options and labels.
	for name, run := range map[string]func(...string) (string, error){
		"first":  func(a ...string) (string, error) { return docker(t, a...) },
		"second": eng.docker,
	} {
		out, err := run("volume", "inspect", "--format", "{{.Driver}} {{json .Options}} {{json .Labels}}", vol)
		if err != nil {
			t.Fatalf("%s engine: volume %s: %v %s", name, vol, err, out)
		}
		for _, want := range []string{"local", `"type":"tmpfs"`, `"o":"size=1m"`, `"com.docker.stack.namespace":"rsimg"`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s engine: volume %s is %s, want %s in it", name, vol, out, want)
			}
		}
	}
	ids, err := eng.docker("ps", "-q", "--filter", "label=raftswarm.service.id="+svc.Id)
	if err != nil || ids == "" {
		t.Fatalf("no container on the second engine: %v %s", err, ids)
	}
	mounts, err := eng.docker("inspect", "--format", "{{json .HostConfig.Mounts}}", strings.Fields(ids)[0])
	if err != nil || !strings.Contains(mounts, `"Type":"tmpfs"`) || !strings.Contains(mounts, `"SizeBytes":2097152`) {
		t.Errorf("tmpfs mount: %s (%v)", mounts, err)
	}

	// stack rm --volumes: the service goes, then its volumes on every node,
	// while its containers may still be stopping.
	if _, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: svc.Id}); err != nil {
		t.Fatal(err)
	}
	rv, err := ctl.RemoveVolumes(ctx, &swarmpb.RemoveVolumesRequest{Names: []string{vol, "rsimg-absent-" + randomSuffix()}})
	if err != nil {
		t.Fatal(err)
	}
	removed := map[string]bool{}
	for _, r := range rv.Results {
		if r.Error != "" {
			t.Errorf("node %s, volume %s: %s", r.Hostname, r.Name, r.Error)
		}
		if r.Name == vol && r.Removed {
			removed[r.Hostname] = true
		}
		if r.Name != vol && r.Removed {
			t.Errorf("node %s removed %s, which never existed", r.Hostname, r.Name)
		}
	}
	if !removed["m1"] || !removed["w1"] || len(rv.Results) != 4 {
		t.Errorf("results %v: want %s removed on m1 and w1", rv.Results, vol)
	}
	if out, err := docker(t, "volume", "inspect", vol); err == nil {
		t.Errorf("volume still on the first engine: %s", out)
	}
	if out, err := eng.docker("volume", "inspect", vol); err == nil {
		t.Errorf("volume still on the second engine: %s", out)
	}
}
