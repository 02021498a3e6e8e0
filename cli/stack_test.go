package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/stack"
)

const stackCompose = `services:
  db:
    image: mariadb:11
    healthcheck:
      test: ["CMD", "true"]
    volumes: [data:/var/lib/mysql]
    secrets: [pw]
  migrate:
    image: example/migrate
    deploy:
      restart_policy: {condition: none}
    depends_on:
      db: {condition: service_healthy}
  web:
    image: example/web
    ports: ["8000:80"]
    networks: [front, default]
    configs: [conf]
    environment:
      GREETING: ${GREETING:-hello}
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
networks:
  front: {}
volumes:
  data: {}
secrets:
  pw: {file: ./pw.txt}
configs:
  conf: {file: ./conf.txt}
`

// stackDir writes a Compose project into a temporary directory and returns
// the Compose file's path.
func stackDir(t *testing.T, compose string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"compose.yml": compose, "pw.txt": "pw1", "conf.txt": "conf1"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "compose.yml")
}

// dbThenMigrate: db's tasks start, then are healthy at the third poll;
// migrate's task runs, then exits 0 at its second poll.
func dbThenMigrate(name string, poll int) (swarmpb.TaskState, int32, string) {
	switch {
	case name == "st_db" && poll < 3:
		return swarmpb.TaskState_TASK_STATE_STARTING, 0, ""
	case name == "st_migrate" && poll >= 2:
		return swarmpb.TaskState_TASK_STATE_COMPLETE, 0, ""
	}
	return swarmpb.TaskState_TASK_STATE_RUNNING, 0, ""
}

func callIndex(calls []string, call string, nth int) int {
	seen := 0
	for i, c := range calls {
		if c == call {
			seen++
			if seen == nth {
				return i
			}
		}
	}
	return -1
}

func TestStackDeployCreatesInDependencyOrder(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	file := stackDir(t, stackCompose)
	r := runCLI(host, "stack", "deploy", "-c", file, "st")
	expectOK(t, r)
	want := []string{
		"CreateNetwork st_default", "CreateNetwork st_front",
		"CreateSecret st_pw", "CreateConfig st_conf",
		"CreateService st_db", "CreateService st_migrate", "CreateService st_web",
	}
	if got := f.writes(); !slices.Equal(got, want) {
		t.Fatalf("writes = %q\nwant %q", got, want)
	}
	calls := f.allCalls()
	// migrate only once db was healthy (its third poll), web only once
	// migrate had exited 0 (its second poll).
	if i, j := callIndex(calls, "CreateService st_migrate", 1), callIndex(calls, "ListTasks st_db", 3); j < 0 || i < j {
		t.Errorf("st_migrate created at call %d, before st_db was healthy (call %d): %q", i, j, calls)
	}
	if i, j := callIndex(calls, "CreateService st_web", 1), callIndex(calls, "ListTasks st_migrate", 2); j < 0 || i < j {
		t.Errorf("st_web created at call %d, before st_migrate completed (call %d): %q", i, j, calls)
	}
	for _, line := range []string{
		"Waiting for st_db (service_healthy) before st_migrate",
		"Waiting for st_migrate (service_completed_successfully) before st_web",
		"Waiting for service st_web to converge",
		"verify: Service converged",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
		}
	}
	web := f.services["st_web"].GetSpec()
	nets := web.GetNetworks()
	if len(nets) != 2 || nets[0].GetTarget() != f.networks["st_default"].GetId() || nets[1].GetTarget() != f.networks["st_front"].GetId() ||
		!slices.Equal(nets[0].GetAliases(), []string{"web"}) {
		t.Errorf("web networks = %v, want the networks' IDs with alias web", nets)
	}
	if web.GetLabels()[stack.NamespaceLabel] != "st" || f.networks["st_front"].GetSpec().GetLabels()[stack.NamespaceLabel] != "st" ||
		f.secrets["st_pw"].GetLabels()[stack.NamespaceLabel] != "st" {
		t.Error("objects lack the namespace label")
	}
}

func TestStackRedeployChangesOnlyWhatChanged(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	file := stackDir(t, stackCompose)
	expectOK(t, runCLI(host, "stack", "deploy", "-c", file, "st"))
	first := len(f.writes())

	r := runCLI(host, "stack", "deploy", "-c", file, "st")
	expectOK(t, r)
	if got := f.writes()[first:]; len(got) != 0 {
		t.Fatalf("unchanged redeploy wrote %q", got)
	}

	// One service's environment changes: only it is updated.
	t.Setenv("GREETING", "bonjour")
	expectOK(t, runCLI(host, "stack", "deploy", "-c", file, "st"))
	if got, want := f.writes()[first:], []string{"UpdateService st_web"}; !slices.Equal(got, want) {
		t.Fatalf("writes = %q, want %q", got, want)
	}
	if env := f.services["st_web"].GetSpec().GetContainer().GetEnv(); !slices.Contains(env, "GREETING=bonjour") {
		t.Errorf("env = %v", env)
	}

	// The service changes between the read and the write (the managers
	// record an update's progress on it): the update is made again on its
	// new version.
	first = len(f.writes())
	f.mu.Lock()
	f.conflicts = 2
	f.mu.Unlock()
	t.Setenv("GREETING", "hola")
	expectOK(t, runCLI(host, "stack", "deploy", "-c", file, "st"))
	if got, want := f.writes()[first:], []string{"UpdateService st_web", "UpdateService st_web", "UpdateService st_web"}; !slices.Equal(got, want) {
		t.Fatalf("writes = %q, want %q", got, want)
	}
	if env := f.services["st_web"].GetSpec().GetContainer().GetEnv(); !slices.Contains(env, "GREETING=hola") {
		t.Errorf("env = %v", env)
	}

	// The secret's file changes: the secret is updated (the managers roll
	// its services), no service spec changes.
	first = len(f.writes())
	if err := os.WriteFile(filepath.Join(filepath.Dir(file), "pw.txt"), []byte("pw2"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCLI(host, "stack", "deploy", "-c", file, "st")
	expectOK(t, r)
	if got, want := f.writes()[first:], []string{"UpdateSecret st_pw"}; !slices.Equal(got, want) {
		t.Fatalf("writes = %q, want %q", got, want)
	}
	if !strings.Contains(r.stdout, "rolling services: [st_db]") || !strings.Contains(r.stdout, "Waiting for service st_db to converge") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestStackDeployPrune(t *testing.T) {
	f := newStackFake()
	f.services["st_old"] = &swarmpb.Service{Id: "old1", Meta: &swarmpb.Meta{Version: 1}, SpecVersion: 1,
		Spec: &swarmpb.ServiceSpec{Name: "st_old", Labels: map[string]string{stack.NamespaceLabel: "st"}, Replicas: 1,
			Container: &swarmpb.ContainerSpec{Image: "x"}}}
	f.services["other"] = &swarmpb.Service{Id: "oth1", Meta: &swarmpb.Meta{Version: 1}, SpecVersion: 1,
		Spec: &swarmpb.ServiceSpec{Name: "other", Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "x"}}}
	host := serveFake(t, f, f)
	file := stackDir(t, stackCompose)
	expectOK(t, runCLI(host, "stack", "deploy", "-d", "-c", file, "st"))
	if slices.ContainsFunc(f.writes(), func(c string) bool { return strings.HasPrefix(c, "RemoveService") }) {
		t.Fatalf("removed a service without --prune: %q", f.writes())
	}
	r := runCLI(host, "stack", "deploy", "-d", "--prune", "-c", file, "st")
	expectOK(t, r)
	var removed []string
	for _, c := range f.writes() {
		if strings.HasPrefix(c, "RemoveService") {
			removed = append(removed, c)
		}
	}
	if !slices.Equal(removed, []string{"RemoveService st_old"}) {
		t.Fatalf("removed %q, want only st_old", removed)
	}
}

func TestStackDeployDependencyFails(t *testing.T) {
	f := newStackFake()
	f.state = func(name string, poll int) (swarmpb.TaskState, int32, string) {
		if name == "st_db" {
			return swarmpb.TaskState_TASK_STATE_FAILED, 1, "task: non-zero exit (1)"
		}
		return swarmpb.TaskState_TASK_STATE_RUNNING, 0, ""
	}
	host := serveFake(t, f, f)
	r := runCLI(host, "stack", "deploy", "-c", stackDir(t, stackCompose), "st")
	expectError(t, r, "service st_migrate depends on st_db (service_healthy), which cannot get there: task: non-zero exit (1)")
	if slices.Contains(f.writes(), "CreateService st_migrate") {
		t.Error("created st_migrate although st_db failed")
	}
}

func TestStackDeployDependencyTimesOut(t *testing.T) {
	f := newStackFake()
	f.state = func(name string, poll int) (swarmpb.TaskState, int32, string) {
		return swarmpb.TaskState_TASK_STATE_STARTING, 0, ""
	}
	host := serveFake(t, f, f)
	r := runCLI(host, "stack", "deploy", "--timeout", "30ms", "-c", stackDir(t, stackCompose), "st")
	expectError(t, r, "service st_migrate depends on st_db (service_healthy), which did not get there within 30ms: 0 out of 1 tasks running")
}

func TestStackDeployCompletedDependencyFails(t *testing.T) {
	f := newStackFake()
	f.state = func(name string, poll int) (swarmpb.TaskState, int32, string) {
		if name == "st_migrate" {
			return swarmpb.TaskState_TASK_STATE_FAILED, 3, "exit status 3"
		}
		return swarmpb.TaskState_TASK_STATE_RUNNING, 0, ""
	}
	host := serveFake(t, f, f)
	r := runCLI(host, "stack", "deploy", "-c", stackDir(t, stackCompose), "st")
	expectError(t, r, "service st_web depends on st_migrate (service_completed_successfully), which cannot get there: a task exited with code 3: exit status 3")
}

func TestStackDeployExternalMustExist(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	file := stackDir(t, `services:
  web:
    image: nginx
    networks: [shared]
networks:
  shared:
    external: true
`)
	r := runCLI(host, "stack", "deploy", "-c", file, "st")
	expectError(t, r, "network shared (networks.shared) is external but does not exist: create it first (swarmctl network create shared)")
	if w := f.writes(); len(w) != 0 {
		t.Errorf("deployed %q", w)
	}
	f.networks["shared"] = &swarmpb.Network{Id: "netshared", Spec: &swarmpb.NetworkSpec{Name: "shared"}}
	expectOK(t, runCLI(host, "stack", "deploy", "-d", "-c", file, "st"))
	if got := f.services["st_web"].GetSpec().GetNetworks(); len(got) != 1 || got[0].GetTarget() != "netshared" {
		t.Errorf("networks = %v", got)
	}
}

func TestStackDeployBadInputDeploysNothing(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stack", "deploy", "-c", stackDir(t, stackCompose), "Bad.Name"}, `invalid stack name "Bad.Name"`},
		{[]string{"stack", "deploy", "st"}, "no Compose file given"},
		{[]string{"stack", "deploy", "-c", stackDir(t, "services:\n  web: {}\n"), "st"}, "compose.yml"},
		{[]string{"stack", "deploy", "-c", stackDir(t, "services:\n  web:\n    image: x\nbogus: 1\n"), "st"}, "bogus"},
	} {
		r := runCLI(host, c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want one line with %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if w := f.writes(); len(w) != 0 {
		t.Errorf("deployed %q", w)
	}
}

func TestStackDeployWarnsUnsupportedKeys(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	r := runCLI(host, "stack", "deploy", "-d", "-c", stackDir(t, "services:\n  web:\n    image: x\n    privileged: true\n"), "st")
	expectOK(t, r)
	if want := "Warning: service web: key privileged is not supported by the cluster and is ignored\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
}

// fakeBuilder records builds and answers the image IDs it is given, in turn.
type fakeBuilder struct {
	mu     sync.Mutex
	ids    []string
	builds []stack.Build
}

func (b *fakeBuilder) Build(_ context.Context, s *stack.Build, _ io.Writer) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds = append(b.builds, *s)
	id := b.ids[0]
	if len(b.ids) > 1 {
		b.ids = b.ids[1:]
	}
	return id, nil
}

func TestStackDeployBuildsAndRedeploysOnNewImage(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	file := stackDir(t, "services:\n  web:\n    build: .\n    ports: [\"5000:5000\"]\n  redis:\n    image: redis:alpine\n")
	b := &fakeBuilder{ids: []string{"sha256:aaa", "sha256:aaa", "sha256:bbb"}}
	opts := options{builder: b}
	r := runCLIOpts(opts, host, "stack", "deploy", "-d", "-c", file, "composetest")
	expectOK(t, r)
	if len(b.builds) != 1 || b.builds[0].Tag != "composetest_web" || b.builds[0].Context != filepath.Dir(file) {
		t.Fatalf("builds = %+v", b.builds)
	}
	c := f.services["composetest_web"].GetSpec().GetContainer()
	if c.GetImage() != "composetest_web" || c.GetImageId() != "sha256:aaa" {
		t.Fatalf("web container = %v", c)
	}
	n := len(f.writes())
	expectOK(t, runCLIOpts(opts, host, "stack", "deploy", "-d", "-c", file, "composetest"))
	if got := f.writes()[n:]; len(got) != 0 {
		t.Fatalf("same image rebuilt: wrote %q", got)
	}
	expectOK(t, runCLIOpts(opts, host, "stack", "deploy", "-d", "-c", file, "composetest"))
	if got := f.writes()[n:]; !slices.Equal(got, []string{"UpdateService composetest_web"}) {
		t.Fatalf("new image: wrote %q, want the web service updated", got)
	}
}

func TestStackLsServicesPs(t *testing.T) {
	f := newStackFake()
	host := serveFake(t, f, f)
	expectOK(t, runCLI(host, "stack", "deploy", "-d", "-c", stackDir(t, stackCompose), "st"))
	r := runCLI(host, "stack", "ls")
	expectOK(t, r)
	if !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "SERVICES") || !strings.Contains(r.stdout, "st     3") {
		t.Errorf("stack ls:\n%s", r.stdout)
	}
	r = runCLI(host, "stack", "services", "st")
	expectOK(t, r)
	for _, s := range []string{"st_db", "st_migrate", "st_web", "*:8000->80/tcp", "1/1"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stack services lacks %q:\n%s", s, r.stdout)
		}
	}
	r = runCLI(host, "stack", "ps", "st")
	expectOK(t, r)
	for _, s := range []string{"st_db.1", "st_web.1", "host1", "Running"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stack ps lacks %q:\n%s", s, r.stdout)
		}
	}
	expectError(t, runCLI(host, "stack", "ps", "nope"), "nothing found in stack: nope")
}

func TestStackRmKeepsVolumesUnlessAsked(t *testing.T) {
	for _, withVolumes := range []bool{false, true} {
		f := newStackFake()
		host := serveFake(t, f, f)
		expectOK(t, runCLI(host, "stack", "deploy", "-d", "-c", stackDir(t, stackCompose), "st"))
		n := len(f.writes())
		args := []string{"stack", "rm", "st"}
		if withVolumes {
			args = []string{"stack", "rm", "--volumes", "st"}
		}
		r := runCLI(host, args...)
		expectOK(t, r)
		want := []string{"RemoveService st_db", "RemoveService st_migrate", "RemoveService st_web",
			"RemoveSecret st_pw", "RemoveConfig st_conf", "RemoveNetwork st_default", "RemoveNetwork st_front"}
		if withVolumes {
			want = append(want, "RemoveVolumes st_data")
		}
		if got := f.writes()[n:]; !slices.Equal(got, want) {
			t.Errorf("volumes=%v: writes %q\nwant %q", withVolumes, got, want)
		}
		kept := strings.Contains(r.stdout, "Volumes are kept: st_data (swarmctl stack rm --volumes st removes them)")
		if kept == withVolumes {
			t.Errorf("volumes=%v: stdout %q", withVolumes, r.stdout)
		}
		if withVolumes && !strings.Contains(r.stdout, "removed volume st_data on node host1") {
			t.Errorf("stdout %q", r.stdout)
		}
		expectError(t, runCLI(host, "stack", "rm", "st"), "nothing found in stack: st")
	}
}

func TestStackConfigPrintsMergedFile(t *testing.T) {
	file := stackDir(t, stackCompose)
	over := filepath.Join(filepath.Dir(file), "override.yml")
	if err := os.WriteFile(over, []byte("services:\n  web:\n    image: example/web:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GREETING", "hi there")
	r := runCLI("unix:///nonexistent.sock", "stack", "config", "-c", file, "-c", over)
	expectOK(t, r)
	for _, s := range []string{"image: example/web:2", "GREETING: hi there", "condition: service_healthy"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stack config lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "pw1") {
		t.Errorf("stack config prints the secret's content:\n%s", r.stdout)
	}
}
