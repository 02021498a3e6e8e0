package testdocker

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
)

// tinyImage builds testdata/hello as a static binary, imports it into the
// machine's engine as a one-file image and returns its tag; the test's
// cleanup removes the image.
func tinyImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/hello: %v\n%s", err, out)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	if err := writeTar(tarPath, bin, "hello"); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	tag := "rstd-tiny-" + hex.EncodeToString(b[:]) + ":latest"
	if out, err := run("docker", "import", "--change", `ENTRYPOINT ["/hello"]`, tarPath, tag); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run("docker", "rmi", tag); err != nil {
			t.Errorf("removing %s: %v: %s", tag, err, out)
		}
	})
	return tag
}

func writeTar(path, file, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	src, err := os.Open(file)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, src); err != nil {
		return err
	}
	return tw.Close()
}

// TestSecondEngine starts a second dockerd, loads an image into it from the
// machine's engine, runs containers on its own bridge (reached from the
// host directly and through a published port), and checks that stopping it
// leaves nothing behind and the machine's engine untouched.
func TestSecondEngine(t *testing.T) {
	if err := Usable(); err != nil {
		t.Skipf("no second Docker engine: %v", err)
	}
	img := tinyImage(t)

	var e *Engine
	t.Run("engine", func(t *testing.T) {
		e = Start(t)
		if _, err := e.Docker("image", "inspect", img); err == nil {
			t.Fatalf("a fresh engine already has %s: it shares the machine's data root", img)
		}
		e.LoadImage(t, img)

		out := e.MustDocker(t, "run", "--rm", img)
		if !strings.Contains(out, "hello from the second engine") {
			t.Fatalf("container output %q", out)
		}

		id := strings.TrimSpace(e.MustDocker(t, "run", "-d", "-p", "127.0.0.1::8080", img, "serve"))
		ip := strings.TrimSpace(e.MustDocker(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", id))
		if !e.Bridge.Contains(net.ParseIP(ip)) {
			t.Fatalf("container address %q is not on the engine's bridge %s", ip, e.Bridge)
		}
		port := strings.TrimSpace(e.MustDocker(t, "port", id, "8080/tcp"))
		for _, url := range []string{"http://" + net.JoinHostPort(ip, "8080") + "/", "http://" + port + "/"} {
			testutil.Eventually(t, 20*time.Second, func() error { return get(url) })
		}

		// A network of its own comes from the engine's pool.
		e.MustDocker(t, "network", "create", "rstd-net")
		subnet := strings.TrimSpace(e.MustDocker(t, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "rstd-net"))
		if _, n, err := net.ParseCIDR(subnet); err != nil || !e.Pool.Contains(n.IP) {
			t.Fatalf("network subnet %q is not in the engine's pool %s", subnet, e.Pool)
		}
		e.MustDocker(t, "run", "-d", "--network", "rstd-net", img, "serve")
	})
	if e == nil {
		return
	}
	// The subtest's cleanup stopped the engine: nothing may be left.
	if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
		t.Errorf("engine directory %s still there (%v)", e.dir, err)
	}
	if _, err := net.InterfaceByName(e.Name); err == nil {
		t.Errorf("bridge %s still there", e.Name)
	}
	if left := interfacesIn(e.Pool); len(left) > 0 {
		t.Errorf("interfaces of the engine's networks still there: %v", left)
	}
	if left := mountsBelow(e.dir); len(left) > 0 {
		t.Errorf("mounts still there: %v", left)
	}
	if alive(e.cmd.Process.Pid) {
		t.Errorf("dockerd %d still running", e.cmd.Process.Pid)
	}
	// The machine's engine still has its bridge and runs containers.
	if _, err := net.InterfaceByName("docker0"); err != nil {
		t.Errorf("docker0 is gone: %v", err)
	}
	if out, err := run("docker", "run", "--rm", img); err != nil || !strings.Contains(out, "hello") {
		t.Errorf("the machine's engine cannot run a container after the test: %v: %s", err, out)
	}
}

func get(url string) error {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from the second engine") {
		return fmt.Errorf("GET %s: %d %q", url, resp.StatusCode, body)
	}
	return nil
}
