package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestEscapeText(t *testing.T) {
	for in, want := range map[string]string{
		"w1":                 "w1",
		"café ünïcode 名前":    "café ünïcode 名前",
		"a\nb":               `a\nb`,
		"\x1b[31mred\x1b[0m": `\x1b[31mred\x1b[0m`,
		"tab\there\r":        `tab\there\r`,
		"bell\a del\x7f":     `bell\a del\x7f`,
		"bad\xffutf8":        `bad\xffutf8`,
		"rtl\u202eoverride":  `rtl\u202eoverride`,
		"c1\u0085next":       `c1\u0085next`,
		`already \n escaped`: `already \n escaped`,
		"":                   "",
	} {
		if got := escapeText(in); got != want {
			t.Errorf("escapeText(%q) = %q, want %q", in, got, want)
		}
		if got := escapeText(escapeText(in)); got != escapeText(in) {
			t.Errorf("escapeText is not idempotent on %q: %q", in, got)
		}
	}
}

const evilHost = "evil\nfake-node   Ready   Active   Leader\x1b[31m"

func evilNodes() *fakeDaemon {
	nodes := testNodes()
	nodes = append(nodes, &swarmpb.NodeInfo{Node: &swarmpb.Node{Id: "n9",
		Spec:        &swarmpb.NodeSpec{Labels: map[string]string{"k\x1b]0;title\a": "v\nx"}},
		Description: &swarmpb.NodeDescription{Hostname: evilHost, EngineVersion: "1\t2", Os: "linux\r"},
		Status:      swarmpb.NodeStatus_NODE_STATUS_READY, StatusMessage: "m\x1b[2J"}})
	return &fakeDaemon{info: &swarmpb.InfoResponse{NodeId: "n1"}, nodes: nodes}
}

// noControl fails if out has a control character other than the line
// breaks and the table's own tabs (allowTab).
func noControl(t *testing.T, what, out string, allowTab bool) {
	t.Helper()
	for _, r := range out {
		if r == '\n' || (allowTab && r == '\t') {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Fatalf("%s: control character %q in output %q", what, r, out)
		}
	}
}

func TestNodeLsEscapesControlCharacters(t *testing.T) {
	host := startFake(t, evilNodes())
	r := runCLI(host, "node", "ls")
	expectOK(t, r)
	noControl(t, "node ls", r.stdout, false)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 5 { // header + 4 nodes: the evil hostname is one row
		t.Fatalf("node ls printed %d lines, want 5:\n%s", len(lines), r.stdout)
	}
	var row string
	for _, l := range lines {
		if strings.HasPrefix(l, "n9") {
			row = l
		}
	}
	if !strings.Contains(row, `evil\nfake-node   Ready   Active   Leader\x1b[31m`) || !strings.Contains(row, `1\t2`) {
		t.Fatalf("evil row %q", row)
	}

	r = runCLI(host, "node", "ls", "--format", "{{.Hostname}}\t{{.EngineVersion}}")
	expectOK(t, r)
	noControl(t, "node ls --format", r.stdout, true)
	if !strings.Contains(r.stdout, `evil\nfake-node   Ready   Active   Leader\x1b[31m`+"\t"+`1\t2`) {
		t.Fatalf("template output %q", r.stdout)
	}

	// JSON stays JSON, with the value intact.
	r = runCLI(host, "node", "ls", "--format", "json")
	expectOK(t, r)
	found := false
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		found = found || m["Hostname"] == evilHost
	}
	if !found {
		t.Fatalf("json output lost the hostname: %q", r.stdout)
	}
}

func TestPrettyEscapesControlCharacters(t *testing.T) {
	host := startFake(t, evilNodes())
	r := runCLI(host, "node", "inspect", "--pretty", "n9")
	expectOK(t, r)
	noControl(t, "node inspect --pretty", r.stdout, false)
	for _, want := range []string{`Hostname:`, `evil\nfake-node`, `m\x1b[2J`, `linux\r`, `k\x1b]0;title\a=v\nx`} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("pretty output lacks %q:\n%s", want, r.stdout)
		}
	}

	d := &fakeDaemon{created: &swarmpb.Service{Id: "s1", Spec: &swarmpb.ServiceSpec{Name: "web",
		Labels:    map[string]string{"a": "b\x1b[31m"},
		Container: &swarmpb.ContainerSpec{Image: "img\n", Env: []string{"X=\x07"}}}}}
	host = startFake(t, d)
	r = runCLI(host, "service", "inspect", "--pretty", "web")
	expectOK(t, r)
	noControl(t, "service inspect --pretty", r.stdout, false)
	if !strings.Contains(r.stdout, `a=b\x1b[31m`) || !strings.Contains(r.stdout, `img\n`) || !strings.Contains(r.stdout, `X=\a`) {
		t.Fatalf("service pretty output:\n%s", r.stdout)
	}
}

func TestTablesAndErrorsEscapeControlCharacters(t *testing.T) {
	d := &fakeDaemon{services: []*swarmpb.ServiceInfo{
		{Service: &swarmpb.Service{Id: "zzzzzzzzzzzzzzzzzz", Spec: &swarmpb.ServiceSpec{Name: "web\x1b[2J", Replicas: 1,
			Container: &swarmpb.ContainerSpec{Image: "nginx\nfake   row"}}}, Running: 1, Desired: 1},
	}}
	host := startFake(t, d)
	r := runCLI(host, "service", "ls")
	expectOK(t, r)
	noControl(t, "service ls", r.stdout, false)
	if n := strings.Count(r.stdout, "\n"); n != 2 || !strings.Contains(r.stdout, `web\x1b[2J`) || !strings.Contains(r.stdout, `nginx\nfake   row`) {
		t.Fatalf("service ls:\n%s", r.stdout)
	}

	d = &fakeDaemon{nodeNames: map[string]string{"n1": "node\x1b[1m"}, tasks: func(int) []*swarmpb.Task {
		return []*swarmpb.Task{{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, NodeId: "n1",
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED, Err: "boom\nweb.2   nginx   n2   Running"},
			Spec:         &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "nginx"}}}}
	}}
	host = startFake(t, d)
	r = runCLI(host, "service", "ps", "web")
	expectOK(t, r)
	noControl(t, "service ps", r.stdout, false)
	if n := strings.Count(r.stdout, "\n"); n != 2 || !strings.Contains(r.stdout, `boom\nweb.2`) || !strings.Contains(r.stdout, `node\x1b[1m`) {
		t.Fatalf("service ps:\n%s", r.stdout)
	}

	d = &fakeDaemon{errs: map[string]string{"GetNode": "node \"x\x1b[31m\" not found"}}
	host = startFake(t, d)
	r = runCLI(host, "node", "inspect", "x")
	if r.code == 0 {
		t.Fatal("inspect of a missing node succeeded")
	}
	noControl(t, "error line", r.stderr, false)
	if !strings.Contains(r.stderr, `x\x1b[31m`) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr %q", r.stderr)
	}
}

// FuzzEscapeText: the output is valid UTF-8 without a control or other
// non-printable character, escaping is idempotent, and printable input
// comes back unchanged.
func FuzzEscapeText(f *testing.F) {
	for _, s := range []string{"w1", "a\nb", "\x1b[31m", "bad\xff", "rtl\u202e", "名前", `\n`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := escapeText(s)
		if !utf8.ValidString(out) {
			t.Fatalf("escapeText(%q) = %q: invalid UTF-8", s, out)
		}
		for _, r := range out {
			if !unicode.IsPrint(r) {
				t.Fatalf("escapeText(%q) = %q: holds %U", s, out, r)
			}
		}
		if escapeText(out) != out {
			t.Fatalf("escapeText not idempotent on %q", s)
		}
		if safeText(s) && out != s {
			t.Fatalf("printable %q changed to %q", s, out)
		}
	})
}
