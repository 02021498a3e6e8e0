package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestNodeImageRunsADaemon builds the node image with scripts/node-image.sh
// (docker import, no Dockerfile), runs a manager from it as a container on
// the host's network with its socket directory bind-mounted, and drives it
// with the host's swarmctl: init, node ls, a second swarmctl inside the
// container. Everything it makes (container, image, directories) is removed.
func TestNodeImageRunsADaemon(t *testing.T) {
	bin := binDir(t)
	needDocker(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: the container's socket is root's")
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	tag := fmt.Sprintf("raftswarm-test/node:e2e-%d", os.Getpid())
	name := fmt.Sprintf("raftswarm-e2e-node-%d", os.Getpid())
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := docker("", "logs", "--tail", "50", name); err == nil {
				t.Logf("container log:\n%s", out)
			}
		}
		docker("", "rm", "-f", "-v", name)
		docker("", "rmi", "-f", tag)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, filepath.Join(repo, "scripts/node-image.sh"), tag)
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/node-image.sh: %v\n%s", err, out)
	}

	runDir, err := os.MkdirTemp("", "nodeimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	ip := "127.0.0.39"
	port := freePort(t, ip)
	if _, err := docker("", "run", "-d", "--name", name, "--network", "host",
		"--label", "raftswarm.test=e2e-node-image",
		"-v", runDir+":/run/raftswarm", tag,
		"--hostname", "boxed", "--data-port", "0"); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(runDir, "raftswarm.sock")
	c := &cluster{t: t, bin: bin}
	d := &daemon{name: "boxed", socket: sock}
	c.eventually(60*time.Second, "the containerized daemon's socket", func() error {
		if r := c.swarmctl(d, "node", "ls"); r.code != 0 && !strings.Contains(r.stderr, "not part of a swarm") {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	c.ok(d, "init", "--advertise-addr", ip+":"+port)
	c.eventually(60*time.Second, "the node Ready", func() error {
		rows, err := c.nodes(d)
		if err != nil {
			return err
		}
		if r, ok := rows["boxed"]; !ok || r.status != "Ready" || r.manager != "Leader" {
			return fmt.Errorf("node ls: %+v", rows)
		}
		return nil
	})
	// swarmctl inside the image finds the daemon through SWARMCTL_HOST.
	out, err := docker("", "exec", name, "/usr/bin/swarmctl", "node", "ls", "--format", "{{.Hostname}}")
	if err != nil || strings.TrimSpace(out) != "boxed" {
		t.Fatalf("swarmctl in the container: %q, %v", out, err)
	}
}
