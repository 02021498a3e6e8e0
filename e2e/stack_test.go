package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testdocker"
)

// TestStackThroughTheCLI drives issue 11 the way an operator would, on one
// cluster of a manager and two workers: the tutorial's two Compose apps
// (deploy/examples) deploy and answer through every node's published port,
// a redeploy changes only what changed, --prune removes what left the file,
// depends_on waits for a healthy dependency, a secret reaches its task
// without touching disk or any inspect and rolls the service when updated,
// and stack rm leaves only the volumes.
func TestStackThroughTheCLI(t *testing.T) {
	bin := binDir(t)
	needDocker(t)
	needCommand(t, bin, "stack")
	testdocker.Images(t) // all four
	repo := repoDir(t)
	sfx := randomSuffix(t) // stack names: other tests share the engine

	leftovers := newEngineLeftovers(t) // runs after the daemons stop
	c := newCluster(t)
	m1 := c.addNode("m1", "managerd", "")
	w1 := c.addNode("w1", "workerd", "")
	w2 := c.addNode("w2", "workerd", "")
	all := []*daemon{m1, w1, w2}
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	tok := c.joinToken(m1, "worker", false)
	c.join(w1, m1, tok)
	c.join(w2, m1, tok)
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": "", "w2": ""})
	ids := c.nodeIDs(m1, leftovers)
	nodes := map[string]string{}
	for _, id := range ids {
		nodes[id] = ""
	}
	deployTimeout := []string{"--timeout", "3m"}

	// ---- the Flask + redis counter, built on the node (build: .)
	ct := "ct" + sfx
	leftovers.image(ct + "_web")
	ctDir := copyDir(t, filepath.Join(repo, "deploy", "examples", "composetest"))
	ctFile := filepath.Join(ctDir, "docker-compose.yml")
	c.okLong(m1, append([]string{"stack", "deploy", "-c", ctFile, ct}, deployTimeout...)...)
	if out := c.ok(m1, "stack", "ls"); !strings.Contains(out, ct) {
		t.Fatalf("stack ls does not list %s:\n%s", ct, out)
	}
	if out := c.ok(m1, "stack", "services", ct); !strings.Contains(out, ct+"_web") || !strings.Contains(out, ct+"_redis") {
		t.Fatalf("stack services %s:\n%s", ct, out)
	}
	c.ok(m1, "service", "scale", ct+"_web=3")
	c.waitContainers(ct+"_web", nodes, 3, 2*time.Minute)
	if n := c.nodesRunning(m1, ct+"_web"); n < 2 {
		t.Errorf("web's 3 tasks run on %d node(s), want them spread over at least 2", n)
	}
	hits := regexp.MustCompile(`I have been seen (\d+) times`)
	last := 0
	for round := 0; round < 2; round++ {
		for _, d := range all {
			u := "http://" + net.JoinHostPort(d.ip(), "5000") + "/"
			c.eventually(60*time.Second, "the counter through "+u, func() error {
				body, err := httpGet(u)
				if err != nil {
					return err
				}
				m := hits.FindStringSubmatch(body)
				if m == nil {
					return fmt.Errorf("GET %s: %q", u, body)
				}
				n, _ := strconv.Atoi(m[1])
				if n <= last {
					return errStop{fmt.Errorf("GET %s counted %d after %d: not one redis behind every web task", u, n, last)}
				}
				last = n
				return nil
			})
		}
	}

	// ---- redeploy: only the changed service is updated
	before := c.runningTasks(m1, ct+"_web", ct+"_redis")
	compose, err := os.ReadFile(ctFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(compose), "    build: .\n", "    build: .\n    environment:\n      GREETING: changed\n", 1)
	if changed == string(compose) {
		t.Fatal("could not edit the example's Compose file")
	}
	if err := os.WriteFile(ctFile, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	c.okLong(m1, append([]string{"stack", "deploy", "-c", ctFile, ct}, deployTimeout...)...)
	c.eventually(2*time.Minute, "web's tasks replaced, redis's kept", func() error {
		after := c.runningTasks(m1, ct+"_web", ct+"_redis")
		if got, want := after[ct+"_redis"], before[ct+"_redis"]; strings.Join(got, ",") != strings.Join(want, ",") {
			return errStop{fmt.Errorf("redis's tasks changed on a redeploy that did not touch it: %v -> %v", want, got)}
		}
		for _, id := range after[ct+"_web"] {
			for _, old := range before[ct+"_web"] {
				if id == old {
					return fmt.Errorf("web task %s not replaced yet", id)
				}
			}
		}
		// The file names no replicas: the redeploy brings web back to 1,
		// as docker stack deploy does.
		if len(after[ct+"_web"]) != 1 {
			return fmt.Errorf("web has %d running tasks, want the file's 1", len(after[ct+"_web"]))
		}
		return nil
	})

	// ---- WordPress + MariaDB (mysql:5.7): the install page on 8000, and it
	// installs into its database
	wp := "wp" + sfx
	leftovers.volume(wp + "_db_data")
	wpFile := filepath.Join(copyDir(t, filepath.Join(repo, "deploy", "examples", "wordpress")), "docker-compose.yml")
	c.okLong(m1, append([]string{"stack", "deploy", "-c", wpFile, wp}, deployTimeout...)...)
	wpURL := "http://" + net.JoinHostPort(w1.ip(), "8000")
	c.eventually(3*time.Minute, "WordPress's install page", func() error {
		body, err := httpGet(wpURL + "/")
		if err != nil {
			return err
		}
		if strings.Contains(body, "Error establishing a database connection") {
			return fmt.Errorf("WordPress has not reached its database yet")
		}
		if !strings.Contains(body, "Installation") {
			return fmt.Errorf("GET %s/: %.200q", wpURL, body)
		}
		return nil
	})
	form := url.Values{
		"weblog_title": {"e2e"}, "user_name": {"admin"}, "admin_password": {"E2e-pa55-word"},
		"admin_password2": {"E2e-pa55-word"}, "pw_weak": {"1"}, "admin_email": {"admin@example.com"}, "blog_public": {"0"},
	}
	resp, err := (&http.Client{Timeout: 90 * time.Second}).PostForm(wpURL+"/wp-admin/install.php?step=2", form)
	if err != nil {
		t.Fatalf("installing WordPress: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "Success!") {
		t.Fatalf("WordPress did not install into MariaDB: %s: %.300q", resp.Status, body)
	}

	// ---- --prune removes services no longer in the file
	pr := "pr" + sfx
	prDir := t.TempDir()
	prFile := filepath.Join(prDir, "docker-compose.yml")
	writeFile(t, prFile, `services:
  a:
    image: `+testdocker.Python+`
    command: ["sleep", "infinity"]
  b:
    image: `+testdocker.Python+`
    command: ["sleep", "infinity"]
`)
	c.okLong(m1, append([]string{"stack", "deploy", "-c", prFile, pr}, deployTimeout...)...)
	writeFile(t, prFile, `services:
  a:
    image: `+testdocker.Python+`
    command: ["sleep", "infinity"]
`)
	c.okLong(m1, append([]string{"stack", "deploy", "-c", prFile, pr}, deployTimeout...)...)
	if out := c.ok(m1, "stack", "services", pr); !strings.Contains(out, pr+"_b") {
		t.Errorf("without --prune, %s_b went away:\n%s", pr, out)
	}
	c.okLong(m1, append([]string{"stack", "deploy", "--prune", "-c", prFile, pr}, deployTimeout...)...)
	c.eventually(30*time.Second, pr+"_b pruned", func() error {
		out := c.ok(m1, "stack", "services", pr)
		if strings.Contains(out, pr+"_b") || !strings.Contains(out, pr+"_a") {
			return fmt.Errorf("stack services %s:\n%s", pr, out)
		}
		return nil
	})

	// ---- depends_on: condition service_healthy. db listens (and is
	// healthy) only after 5 s; app connects once at start and, with no
	// restarts, fails for good if it started before db was healthy.
	do := "do" + sfx
	doFile := filepath.Join(t.TempDir(), "docker-compose.yml")
	writeFile(t, doFile, `services:
  db:
    image: `+testdocker.Redis+`
    command: ["sh", "-c", "sleep 5 && exec redis-server --protected-mode no"]
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 1s
      retries: 30
  app:
    image: `+testdocker.Python+`
    command: ["sh", "-c", "probe redis db 6379 2 && exec sleep infinity"]
    depends_on:
      db:
        condition: service_healthy
    deploy:
      restart_policy:
        condition: none
`)
	c.okLong(m1, append([]string{"stack", "deploy", "-c", doFile, do}, deployTimeout...)...)
	c.waitContainers(do+"_app", nodes, 1, 2*time.Minute)
	if tasks := c.ok(m1, "stack", "ps", do); strings.Contains(tasks, "Failed") || strings.Count(tasks, do+"_app.") != 1 {
		t.Errorf("app started before db was healthy (one task, never failed, expected):\n%s", tasks)
	}

	// ---- a secret: in /run/secrets in the task, on no disk, in no inspect;
	// updating it rolls the service
	se := "se" + sfx
	seDir := t.TempDir()
	v1, v2 := "pw-v1-"+randomSuffix(t)+randomSuffix(t), "pw-v2-"+randomSuffix(t)+randomSuffix(t)
	writeFile(t, filepath.Join(seDir, "pw.txt"), v1)
	seFile := filepath.Join(seDir, "docker-compose.yml")
	writeFile(t, seFile, `services:
  app:
    image: `+testdocker.Python+`
    command: ["sleep", "infinity"]
    secrets:
      - db_password
secrets:
  db_password:
    file: ./pw.txt
`)
	c.okLong(m1, append([]string{"stack", "deploy", "-c", seFile, se}, deployTimeout...)...)
	app := c.waitContainers(se+"_app", nodes, 1, 2*time.Minute)[0]
	if out, err := docker(app.host, "exec", app.id, "cat", "/run/secrets/db_password"); err != nil || out != v1 {
		t.Fatalf("/run/secrets/db_password in the task: %q (%v), want %q", out, err, v1)
	}
	if out, _ := docker(app.host, "exec", app.id, "sh", "-c", "grep ' /run/secrets' /proc/mounts"); !strings.Contains(out, "tmpfs") {
		t.Errorf("/run/secrets is not on tmpfs in the task: %q", out)
	}
	secretName := se + "_db_password"
	for _, args := range [][]string{
		{"secret", "inspect", secretName}, {"secret", "ls"}, {"service", "inspect", se + "_app"},
		{"stack", "services", se}, {"stack", "ps", se},
	} {
		if out := c.ok(m1, args...); strings.Contains(out, v1) {
			t.Errorf("swarmctl %s shows the secret's content", strings.Join(args, " "))
		}
	}
	if out, _ := docker(app.host, "inspect", app.id); strings.Contains(out, v1) {
		t.Errorf("docker inspect of the task's container shows the secret's content")
	}
	for _, d := range all {
		if f := fileContaining(t, d.stateDir, v1); f != "" {
			t.Errorf("the secret's content is on %s's disk in %s", d.name, f)
		}
	}
	writeFile(t, filepath.Join(seDir, "pw2.txt"), v2)
	c.okLong(m1, "secret", "update", secretName, filepath.Join(seDir, "pw2.txt"))
	c.eventually(2*time.Minute, "the service rolled to the new secret", func() error {
		cs, err := containers(se+"_app", nodes)
		if err != nil || len(cs) != 1 {
			return fmt.Errorf("containers %v (%v)", cs, err)
		}
		if cs[0].id == app.id {
			return fmt.Errorf("task not replaced yet")
		}
		if out, err := docker(cs[0].host, "exec", cs[0].id, "cat", "/run/secrets/db_password"); err != nil || out != v2 {
			return fmt.Errorf("secret in the new task: %q (%v)", out, err)
		}
		return nil
	})

	// ---- stack rm leaves nothing but volumes
	c.okLong(m1, "stack", "rm", wp)
	c.eventually(2*time.Minute, wp+" gone but its volume", func() error {
		if out := c.ok(m1, "stack", "ls"); strings.Contains(out, wp) {
			return fmt.Errorf("stack ls still lists %s", wp)
		}
		if out := c.ok(m1, "service", "ls", "--format", "{{.Name}}"); strings.Contains(out, wp+"_") {
			return fmt.Errorf("services left: %s", out)
		}
		for _, svc := range []string{wp + "_db", wp + "_wordpress"} {
			out, err := docker("", "ps", "-aq", "--filter", "label=raftswarm.service.name="+svc)
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("containers of %s left: %s", svc, strings.Fields(out))
			}
		}
		out, err := docker("", "network", "ls", "--format", "{{.Name}}")
		if err != nil {
			return err
		}
		if strings.Contains(out, wp+"_") {
			return fmt.Errorf("networks of %s left:\n%s", wp, out)
		}
		return nil
	})
	if _, err := docker("", "volume", "inspect", wp+"_db_data"); err != nil {
		t.Errorf("stack rm removed the volume %s_db_data (it must keep volumes): %v", wp, err)
	}
	// Every other stack goes in one call each, the one with a secret too
	// (its tasks are still stopping when the secret is removed).
	for _, s := range []string{ct, pr, do, se} {
		if r := c.swarmctlTimeout(m1, 5*time.Minute, "stack", "rm", s); r.code != 0 {
			t.Errorf("stack rm %s: %s", s, r)
		}
	}
}

// okLong is ok for commands that wait for convergence (stack deploy):
// swarmctl's own --timeout bounds them, the harness's 30 s would not.
func (c *cluster) okLong(d *daemon, args ...string) string {
	c.t.Helper()
	r := c.swarmctlTimeout(d, 5*time.Minute, args...)
	if r.code != 0 {
		c.t.Fatalf("on %s: %s", d.name, r)
	}
	return r.stdout
}

// runningTasks maps each of services to the sorted IDs of its tasks whose
// desired state is running (stack ps has no --format; service ps does).
func (c *cluster) runningTasks(d *daemon, services ...string) map[string][]string {
	c.t.Helper()
	tasks := map[string][]string{}
	for _, svc := range services {
		out := c.ok(d, "service", "ps", "--no-trunc", "-f", "desired-state=running", "--format", "{{.ID}}", svc)
		ids := strings.Fields(out)
		sort.Strings(ids)
		tasks[svc] = ids
	}
	return tasks
}

// nodesRunning counts the nodes running a task of service.
func (c *cluster) nodesRunning(d *daemon, service string) int {
	c.t.Helper()
	out := c.ok(d, "service", "ps", "-f", "desired-state=running", "--format", "{{.Node}}", service)
	seen := map[string]bool{}
	for _, n := range strings.Fields(out) {
		seen[n] = true
	}
	return len(seen)
}

func httpGet(u string) (string, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(body), err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tmpfsMagic is statfs's f_type of a tmpfs (linux/magic.h).
const tmpfsMagic = 0x01021994

// fileContaining returns the first file below dir, on a disk, whose bytes
// contain s. Files on a tmpfs (where nodes keep their tasks' secrets) are
// in memory, not on the node's disk, and are skipped.
func fileContaining(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	_ = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || found != "" || !fi.Mode().IsRegular() {
			return nil
		}
		var st syscall.Statfs_t
		if syscall.Statfs(path, &st) == nil && st.Type == tmpfsMagic {
			return nil
		}
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), s) {
			found = path
		}
		return nil
	})
	return found
}
