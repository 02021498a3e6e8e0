package testdocker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test images deploy/images/build.sh makes, with the names the
// tutorial's Compose files use for them.
const (
	Redis     = "raftswarm-test/redis"     // redis-server on 6379; also redis:alpine
	Python    = "raftswarm-test/python"    // python3, flask, redis, probe; also python:3.7-alpine
	MariaDB   = "raftswarm-test/mariadb"   // MYSQL_* entrypoint, 3306; also mysql:5.7
	WordPress = "raftswarm-test/wordpress" // apache2 + WordPress on 80; also wordpress:latest
)

// buildTimeout bounds one build.sh run: a cold cache on a loaded machine
// takes a few minutes.
const buildTimeout = 15 * time.Minute

var buildMu sync.Mutex

// Images makes sure the named test images ("redis", "python", "mariadb",
// "wordpress"; none means all) exist on the machine's engine, building
// them with deploy/images/build.sh when missing or stale. It skips the test
// when they cannot be built here (not root, no docker, or no mmdebstrap
// and the images or their cached root filesystems are missing). The
// images are kept for the next run (the root filesystems are cached under
// $RAFTSWARM_IMAGE_CACHE); `make clean-images` removes them.
func Images(t testing.TB, names ...string) {
	t.Helper()
	if err := imagesUsable(); err != nil {
		t.Skipf("cannot build the test images: %v", err)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	script, err := BuildScript()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, script, names...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if _, lookErr := exec.LookPath("mmdebstrap"); lookErr != nil {
			t.Skipf("cannot build the test images: mmdebstrap is not installed (the CI script .ci/run installs it): %s", strings.TrimSpace(out.String()))
		}
		t.Fatalf("building the test images (%s %s): %v\n%s", script, strings.Join(names, " "), err, out.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("test images built in %s", d.Round(time.Second))
	}
}

// BuildScript returns the path of deploy/images/build.sh in this checkout.
func BuildScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testdocker: cannot locate the source tree")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "images", "build.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("testdocker: %w", err)
	}
	return filepath.Clean(script), nil
}

func imagesUsable() error {
	if os.Geteuid() != 0 {
		return errors.New("mmdebstrap needs root")
	}
	for _, bin := range []string{"docker", "flock"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "info").Run(); err != nil {
		return fmt.Errorf("the Docker engine does not answer: %v", err)
	}
	return nil
}
