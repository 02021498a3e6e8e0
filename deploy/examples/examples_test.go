// Package examples holds the tutorial's Compose apps (composetest: Flask +
// redis; wordpress: WordPress + MySQL) and checks that they run with plain
// docker-compose on one engine, before the cluster runs them as stacks.
package examples

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testdocker"
	"github.com/raftswarm/raftswarm/internal/testutil"
)

// compose runs docker-compose for one project in dir.
type compose struct {
	t       *testing.T
	dir     string
	project string
}

func newCompose(t *testing.T, example string) *compose {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose is not installed")
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	c := &compose{t: t, dir: copyExample(t, example), project: "rsex" + hex.EncodeToString(b[:])}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run("logs", "--no-color", "--tail", "30")
			t.Logf("docker-compose logs:\n%s", out)
		}
		if out, err := c.run("down", "-v", "--rmi", "local"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	return c
}

func (c *compose) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"-p", c.project}, args...)...)
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (c *compose) ok(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// port is the host address docker-compose published service's port on.
func (c *compose) port(service, port string) string {
	c.t.Helper()
	return strings.TrimSpace(c.ok("port", service, port))
}

// copyExample copies deploy/examples/NAME into a temporary directory with
// its host ports made ephemeral on 127.0.0.1 ("5000:5000" becomes
// "127.0.0.1::5000"): the tutorial's fixed ports could clash with other
// tests running on this machine. Nothing else of the files changes.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(name)
	if err != nil {
		t.Fatal(err)
	}
	ports := regexp.MustCompile(`"(\d+):(\d+)"`)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "docker-compose.yml" {
			data = ports.ReplaceAll(data, []byte(`"127.0.0.1::$2"`))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func get(u string) (int, string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// TestComposetest runs the tutorial's Flask + redis app with docker-compose
// (web built from its Dockerfile FROM python:3.7-alpine) and checks the
// counter counts.
func TestComposetest(t *testing.T) {
	testdocker.Images(t, "redis", "python")
	c := newCompose(t, "composetest")
	c.ok("up", "-d", "--build")
	addr := c.port("web", "5000")
	for want := 1; want <= 2; want++ {
		want := want
		testutil.Eventually(t, 60*time.Second, func() error {
			code, body, err := get("http://" + addr + "/")
			if err != nil {
				return err
			}
			if code != 200 || !strings.Contains(body, fmt.Sprintf("I have been seen %d times", want)) {
				return fmt.Errorf("GET /: %d %q, want hit %d", code, body, want)
			}
			return nil
		})
	}
}

// TestWordPress runs the tutorial's WordPress + MySQL app (MariaDB standing
// in for mysql:5.7) with docker-compose: the install page answers and
// WordPress installs into its database.
func TestWordPress(t *testing.T) {
	testdocker.Images(t, "mariadb", "wordpress")
	c := newCompose(t, "wordpress")
	c.ok("up", "-d")
	base := "http://" + c.port("wordpress", "80")
	testutil.Eventually(t, 2*time.Minute, func() error {
		code, body, err := get(base + "/")
		if err != nil {
			return err
		}
		if code != 200 || !strings.Contains(body, "Installation") {
			return fmt.Errorf("GET /: %d %.200q", code, body)
		}
		return nil
	})
	form := url.Values{
		"weblog_title": {"examples"}, "user_name": {"admin"}, "admin_password": {"Ex-pa55-word"},
		"admin_password2": {"Ex-pa55-word"}, "pw_weak": {"1"}, "admin_email": {"admin@example.com"}, "blog_public": {"0"},
	}
	resp, err := (&http.Client{Timeout: 90 * time.Second}).PostForm(base+"/wp-admin/install.php?step=2", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "Success!") {
		t.Fatalf("WordPress did not install into its database: %s %.300q", resp.Status, body)
	}
	users := c.ok("exec", "-T", "db", "mariadb", "-uwordpress", "-pwordpress", "wordpress", "-N", "-e", "SELECT user_login FROM wp_users")
	if strings.TrimSpace(users) != "admin" {
		t.Fatalf("wp_users in MariaDB: %q, want admin", users)
	}
}
