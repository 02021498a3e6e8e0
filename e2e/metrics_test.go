package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMetricsFlags runs the built daemons with --metrics-addr: the
// endpoints answer, --log-format json writes JSON lines, and bad input (an
// address already bound, an unknown log format, --debug without a metrics
// address) is refused at start with an error naming the flag.
func TestMetricsFlags(t *testing.T) {
	bin := binDir(t)
	c := newCluster(t)

	// Bad input first: the daemon exits at once, non-zero, naming the flag.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-addr", taken.Addr().String()}, "--metrics-addr " + taken.Addr().String()},
		{[]string{"--metrics-addr", "no-port"}, "--metrics-addr no-port"},
		{[]string{"--log-format", "xml"}, "invalid --log-format"},
		{[]string{"--debug"}, "set --metrics-addr"},
	} {
		for _, daemon := range []string{"managerd", "workerd"} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			args := append([]string{"--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(c.sockDir, "bad.sock"), "--hostname", "bad"}, tc.args...)
			out, err := exec.CommandContext(ctx, filepath.Join(bin, daemon), args...).CombinedOutput()
			cancel()
			var ee *exec.ExitError
			if err == nil || !errorsAs(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("%s %v: %v, want a non-zero exit; output %q", daemon, tc.args, err, out)
				continue
			}
			if !strings.Contains(string(out), tc.want) || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
				t.Errorf("%s %v: output %q, want one line containing %q", daemon, tc.args, out, tc.want)
			}
		}
	}

	// A manager and a worker serving metrics, logging JSON.
	m1 := c.addWith("m1", "managerd", func(d *daemon) []string {
		return []string{"--metrics-addr", net.JoinHostPort(d.ip(), freePort(t, d.ip())), "--log-format", "json", "--debug"}
	})
	w1 := c.addWith("w1", "workerd", func(d *daemon) []string {
		return []string{"--metrics-addr", net.JoinHostPort(d.ip(), freePort(t, d.ip())), "--log-format", "json"}
	})
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	c.join(w1, m1, c.joinToken(m1, "worker", false))
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": ""})
	for _, d := range []*daemon{m1, w1} {
		base := "http://" + d.flag("--metrics-addr")
		c.eventually(20*time.Second, d.name+" /readyz", func() error {
			return httpWant(base+"/readyz", http.StatusOK, "ready")
		})
		if err := httpWant(base+"/healthz", http.StatusOK, "ok"); err != nil {
			t.Error(err)
		}
		if err := httpWant(base+"/metrics", http.StatusOK, "raftswarm_node_ready 1"); err != nil {
			t.Error(err)
		}
	}
	if err := httpWant("http://"+m1.flag("--metrics-addr")+"/metrics", http.StatusOK, `raftswarm_tasks{state="running"}`); err != nil {
		t.Error(err)
	}
	if err := httpWant("http://"+m1.flag("--metrics-addr")+"/debug/pprof/", http.StatusOK, "goroutine"); err != nil {
		t.Errorf("pprof with --debug: %v", err)
	}
	if err := httpWant("http://"+w1.flag("--metrics-addr")+"/debug/pprof/", http.StatusNotFound, ""); err != nil {
		t.Errorf("pprof without --debug: %v", err)
	}
	// Every line of the JSON log is a JSON object.
	for _, d := range []*daemon{m1, w1} {
		data, err := os.ReadFile(d.logPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var v map[string]any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Errorf("%s log line is not JSON: %q", d.name, line)
				break
			}
		}
	}
}

func errorsAs(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*ee = e
	}
	return ok
}

// addWith is add with extra daemon flags computed from the new daemon
// (its loopback address is known before it starts).
func (c *cluster) addWith(name, binary string, extra func(d *daemon) []string) *daemon {
	c.t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", c.nextIP)
	c.nextIP++
	dir := c.daemonDir(name)
	d := &daemon{
		name:     name,
		binary:   binary,
		stateDir: filepath.Join(dir, "state"),
		socket:   filepath.Join(c.sockDir, name+".sock"),
		addr:     net.JoinHostPort(ip, freePort(c.t, ip)),
		logPath:  filepath.Join(dir, name+".log"),
	}
	d.extra = extra(d)
	c.daemons[name] = d
	c.start(d)
	return d
}

// flag is the value of one of d's extra flags.
func (d *daemon) flag(name string) string {
	for i, a := range d.extra {
		if a == name && i+1 < len(d.extra) {
			return d.extra[i+1]
		}
	}
	return ""
}

// httpWant GETs url and checks the status and that the body holds want.
func httpWant(url string, status int, want string) error {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != status || !strings.Contains(string(b), want) {
		return fmt.Errorf("GET %s: %d %.200q, want %d with %q", url, resp.StatusCode, b, status, want)
	}
	return nil
}
