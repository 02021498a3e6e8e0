package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// mapSource is an exec.DataSource over fixed contents.
type mapSource map[string]string

func (m mapSource) Secret(id string, v uint64) ([]byte, bool) { return m.get("s", id, v) }
func (m mapSource) Config(id string, v uint64) ([]byte, bool) { return m.get("c", id, v) }
func (m mapSource) get(kind, id string, v uint64) ([]byte, bool) {
	d, ok := m[kind+"/"+id+"/"+string(rune('0'+v))]
	return []byte(d), ok
}

// buildStatImage builds raftswarm-test/statfile:<random> FROM scratch from
// testdata/statfile and removes it when the test ends.
func buildStatImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "statfile")
	cmd := osexec.Command("go", "build", "-o", out, "./testdata/statfile")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build statfile: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	tag := "raftswarm-test/statfile:" + randID(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY statfile /statfile\nENTRYPOINT [\"/statfile\"]\n")},
		{"statfile", 0o755, bin},
	} {
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
	t.Cleanup(func() {
		if _, err := cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !strings.Contains(err.Error(), "No such image") {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	resp, err := cli.ImageBuild(context.Background(), &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Labels: map[string]string{"raftswarm-test": "1"},
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

// A task's secret is readable in its container at /run/secrets/TARGET,
// read-only, with the reference's owner and mode, from a tmpfs (never the
// node's disk); a config at its target path. Both go with the container.
func TestSecretsAndConfigsMounted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting the secrets tmpfs needs root")
	}
	cli := engine(t)
	img := buildStatImage(t, cli)
	dataDir := t.TempDir()
	e := newExecutorOpts(t, cli, Options{DataDir: dataDir})
	e.SetDataSource(mapSource{"s/sid/1": "s3cret", "c/cid/2": "conf=1"})
	ctx := ctxT(t)

	tk := testTask("task"+randID(t), 1, img)
	tk.Spec.Container.Args = []string{"/run/secrets/x", "/etc/app/app.conf"}
	tk.Spec.Container.Secrets = []*swarmpb.SecretReference{{SecretId: "sid", SecretName: "pw", Target: "x", Uid: 1000, Gid: 1001, Mode: 0o400, Version: 1}}
	tk.Spec.Container.Configs = []*swarmpb.ConfigReference{{ConfigId: "cid", ConfigName: "app", Target: "/etc/app/app.conf", Version: 2}}
	ctl, err := e.Controller(tk)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	secDir := e.SecretsDir()
	var sfs unix.Statfs_t
	if err := unix.Statfs(secDir, &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC || !isMountPoint(secDir) {
		t.Fatalf("%s is not a tmpfs of its own (type %#x, err %v)", secDir, sfs.Type, err)
	}
	if fi, err := os.Stat(secDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("secrets dir mode: %v %v", fi.Mode(), err)
	}
	secFile := filepath.Join(secDir, tk.Id, "s0")
	if fi, err := os.Stat(secFile); err != nil || fi.Mode().Perm() != 0o400 {
		t.Fatalf("secret file on the tmpfs: %v %v", fi, err)
	}
	// Nothing under the data dir outside the tmpfs holds the secret.
	_ = filepath.Walk(dataDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(p, secDir+"/") {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("s3cret")) {
			t.Errorf("secret content found on disk in %s", p)
		}
		return nil
	})

	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := ctl.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	var out strings.Builder
	if err := e.Logs(ctx, tk, exec.LogOptions{Tail: -1}, func(l *swarmpb.LogLine) error {
		out.Write(l.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/run/secrets/x s3cret 400 1000 1001 ro", "/etc/app/app.conf conf=1 444 0 0 ro"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("container printed %q, want a line %q", out.String(), want)
		}
	}

	if err := ctl.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(secDir, tk.Id), filepath.Join(dataDir, "configs", tk.Id)} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left after removal: %v", d, err)
		}
	}

	// A content that has not arrived rejects the task, naming it.
	tk2 := testTask("task"+randID(t), 2, img)
	tk2.Spec.Container.Secrets = []*swarmpb.SecretReference{{SecretId: "other", SecretName: "other", Version: 1}}
	ctl2, _ := e.Controller(tk2)
	if err := ctl2.Prepare(ctx); err == nil || !strings.Contains(err.Error(), "secret other (version 1) has not reached this node") {
		t.Fatalf("prepare without the content: %v", err)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(secDir) {
		t.Fatal("the secrets tmpfs is still mounted after Close")
	}
}
