package integration

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// buildShowfileImage builds testdata/showfile into a FROM-scratch image
// with a unique tag, removed when the test ends.
func buildShowfileImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "showfile"), "./testdata/showfile")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build showfile: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY showfile /showfile\nENTRYPOINT [\"/showfile\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "raftswarm-test/showfile:" + randomSuffix()
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = docker(t, "rmi", "-f", tag) })
	return tag
}

// waitTaskSees waits until a running task of the service has printed want.
func waitTaskSees(t *testing.T, ctx context.Context, ctl swarmpb.ControlClient, svc, want string) {
	t.Helper()
	testutil.Eventually(t, 90*time.Second, func() error {
		resp, err := ctl.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{svc}})
		if err != nil {
			return err
		}
		for _, tk := range resp.Tasks {
			if tk.DesiredState != swarmpb.TaskState_TASK_STATE_RUNNING || tk.Status.GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			out, err := docker(t, "logs", tk.Status.GetContainerId())
			if err != nil {
				return fmt.Errorf("docker logs: %v %s", err, out)
			}
			if strings.Contains(out, want) {
				return nil
			}
			return fmt.Errorf("running task %s printed %q, want %q", tk.Id, out, want)
		}
		return fmt.Errorf("no running task yet")
	})
}

// A secret is readable at /run/secrets/ in the task, absent from every
// node's disk (Raft files included) and from every answer of the API;
// updating it rolls the service to the new content and a rollback returns
// the old one.
func TestDockerSecretsRotateAndRollBack(t *testing.T) {
	requireDocker(t)
	if os.Geteuid() != 0 {
		t.Skip("the secrets tmpfs needs root")
	}
	image := buildShowfileImage(t)
	c := testcluster.New(t, 1, 1, testcluster.Options{Docker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctl := c.Control()

	one, two := "pw-one-"+randomSuffix()+randomSuffix(), "pw-two-"+randomSuffix()+randomSuffix()
	if _, err := ctl.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "db_pw", Data: []byte(one)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.CreateConfig(ctx, &swarmpb.CreateConfigRequest{Name: "app_conf", Data: []byte("conf-v1")}); err != nil {
		t.Fatal(err)
	}
	name := "sec-" + randomSuffix()
	resp, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: &swarmpb.ServiceSpec{
		Name: name, Replicas: 1,
		Container: &swarmpb.ContainerSpec{Image: image, Args: []string{"/run/secrets/pw", "/etc/app.conf"},
			StopGracePeriodNs: int64(time.Second),
			Secrets:           []*swarmpb.SecretReference{{SecretName: "db_pw", Target: "pw", Mode: 0o400}},
			Configs:           []*swarmpb.ConfigReference{{ConfigName: "app_conf", Target: "/etc/app.conf"}}},
		Update: &swarmpb.UpdateConfig{Parallelism: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc := resp.Service
	t.Cleanup(func() { removeService(t, c, svc.Id) })
	waitTaskSees(t, ctx, ctl, svc.Id, "/run/secrets/pw="+one)
	waitTaskSees(t, ctx, ctl, svc.Id, "/etc/app.conf=conf-v1")

	// Not on any node's disk: every file of every state dir, Raft log and
	// snapshots included, except the secrets tmpfs.
	configOnDisk := false // configs are on disk: proves the walk reads the task files
	for _, m := range c.Members {
		_ = filepath.WalkDir(m.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				var st unix.Statfs_t
				if unix.Statfs(p, &st) == nil && st.Type == unix.TMPFS_MAGIC {
					return filepath.SkipDir
				}
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil && strings.Contains(string(b), one) {
				t.Errorf("the secret's content is on disk in %s", p)
			}
			configOnDisk = configOnDisk || (err == nil && string(b) == "conf-v1")
			return nil
		})
	}
	if !configOnDisk {
		t.Error("the walk of the state dirs did not find the config's file")
	}
	// Not in any answer.
	answers := []proto.Message{}
	if r, err := ctl.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: "db_pw"}); err == nil {
		answers = append(answers, r)
	}
	if r, err := ctl.ListSecrets(ctx, &swarmpb.ListSecretsRequest{}); err == nil {
		answers = append(answers, r)
	}
	if r, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: svc.Id}); err == nil {
		answers = append(answers, r)
	}
	if r, err := ctl.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: []string{svc.Id}}); err == nil {
		answers = append(answers, r)
	}
	if len(answers) != 4 {
		t.Fatalf("only %d of the inspect calls answered", len(answers))
	}
	for _, a := range answers {
		if b, _ := proto.Marshal(a); strings.Contains(string(b), one) || strings.Contains(protojson.Format(a), one) {
			t.Errorf("%T carries the secret's content", a)
		}
	}

	// Rotation rolls the service; rollback returns the old content.
	ur, err := ctl.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: "db_pw", Data: []byte(two)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ur.Services) != 1 || ur.Services[0] != name {
		t.Fatalf("services rolled: %v", ur.Services)
	}
	waitTaskSees(t, ctx, ctl, svc.Id, "/run/secrets/pw="+two)
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: svc.Id, Rollback: true}); err != nil {
		t.Fatal(err)
	}
	waitTaskSees(t, ctx, ctl, svc.Id, "/run/secrets/pw="+one)

	// In use: removal refused, naming the service.
	if _, err := ctl.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: "db_pw"}); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("removing a secret in use: %v", err)
	}
}
