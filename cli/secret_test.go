package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// secretFake serves the secret RPCs from memory, as the managers answer
// them (metadata only).
type secretFake struct {
	swarmpb.UnimplementedControlServer
	mu      sync.Mutex
	secrets map[string]*swarmpb.Secret
	got     map[string][]byte // name -> last content received
	inUse   map[string]string // name -> service using it
}

func (f *secretFake) find(ref string) *swarmpb.Secret {
	for _, s := range f.secrets {
		if s.Id == ref || s.Name == ref {
			return s
		}
	}
	return nil
}

func (f *secretFake) CreateSecret(_ context.Context, r *swarmpb.CreateSecretRequest) (*swarmpb.CreateSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.find(r.Name) != nil {
		return nil, status.Errorf(codes.AlreadyExists, "secret %s already exists", r.Name)
	}
	s := &swarmpb.Secret{Id: "id" + r.Name + "0123456789", Name: r.Name, Labels: r.Labels, Version: 1,
		Meta:     &swarmpb.Meta{CreatedAt: testNow.UnixNano(), UpdatedAt: testNow.UnixNano()},
		Versions: []*swarmpb.DataVersion{{Version: 1, Sha256: "abc", CreatedAt: testNow.UnixNano()}}}
	f.secrets[s.Id] = s
	f.got[r.Name] = r.Data
	return &swarmpb.CreateSecretResponse{Secret: s}, nil
}

func (f *secretFake) GetSecret(_ context.Context, r *swarmpb.GetSecretRequest) (*swarmpb.GetSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.find(r.Secret)
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "secret %s not found", r.Secret)
	}
	var svcs []string
	if u := f.inUse[s.Name]; u != "" {
		svcs = []string{u}
	}
	return &swarmpb.GetSecretResponse{Secret: s, Services: svcs}, nil
}

func (f *secretFake) ListSecrets(_ context.Context, r *swarmpb.ListSecretsRequest) (*swarmpb.ListSecretsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &swarmpb.ListSecretsResponse{}
	for _, s := range f.secrets {
		resp.Secrets = append(resp.Secrets, s)
	}
	return resp, nil
}

func (f *secretFake) UpdateSecret(_ context.Context, r *swarmpb.UpdateSecretRequest) (*swarmpb.UpdateSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.find(r.Secret)
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "secret %s not found", r.Secret)
	}
	f.got[s.Name] = r.Data
	s.Version++
	var svcs []string
	if u := f.inUse[s.Name]; u != "" {
		svcs = []string{u}
	}
	return &swarmpb.UpdateSecretResponse{Secret: s, Services: svcs}, nil
}

func (f *secretFake) RemoveSecret(_ context.Context, r *swarmpb.RemoveSecretRequest) (*swarmpb.RemoveSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.find(r.Secret)
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "secret %s not found", r.Secret)
	}
	if u := f.inUse[s.Name]; u != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "secret %s is in use by service(s) %s", s.Name, u)
	}
	delete(f.secrets, s.Id)
	return &swarmpb.RemoveSecretResponse{}, nil
}

func TestSecretCommands(t *testing.T) {
	f := &secretFake{secrets: map[string]*swarmpb.Secret{}, got: map[string][]byte{}, inUse: map[string]string{"pw": "web"}}
	host := serveFake(t, &fakeDaemon{}, f)
	file := filepath.Join(t.TempDir(), "pw.txt")
	if err := os.WriteFile(file, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(host, "secret", "create", "--label", "a=b", "pw", file)
	expectOK(t, r)
	if r.stdout != "idpw0123456789\n" || string(f.got["pw"]) != "hunter2\n" {
		t.Fatalf("create printed %q, sent %q", r.stdout, f.got["pw"])
	}
	r = runCLIOpts(options{stdin: strings.NewReader("from stdin")}, host, "secret", "create", "other", "-")
	expectOK(t, r)
	if string(f.got["other"]) != "from stdin" {
		t.Fatalf("stdin content %q", f.got["other"])
	}
	expectError(t, runCLI(host, "secret", "create", "pw", file), "secret pw already exists")
	missing := filepath.Join(t.TempDir(), "missing")
	expectError(t, runCLI(host, "secret", "create", "x", missing), "read secret file: open "+missing+": no such file or directory")
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expectError(t, runCLI(host, "secret", "create", "x", empty), "secret from "+empty+": secret data is empty: a secret needs at least 1 byte")
	expectError(t, runCLI(host, "secret", "create", "bad/name", file), `secret name "bad/name" is invalid: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`)

	r = runCLI(host, "secret", "ls")
	expectOK(t, r)
	want := "ID                NAME    CREATED               UPDATED\n" +
		"idother0123456789 other   2025-06-01T12:00:00Z  2025-06-01T12:00:00Z\n" +
		"idpw0123456789    pw      2025-06-01T12:00:00Z  2025-06-01T12:00:00Z\n"
	if strings.Join(strings.Fields(r.stdout), " ") != strings.Join(strings.Fields(want), " ") {
		t.Fatalf("ls:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = runCLI(host, "secret", "ls", "-q")
	expectOK(t, r)
	if r.stdout != "idother0123456789\nidpw0123456789\n" {
		t.Fatalf("ls -q: %q", r.stdout)
	}

	r = runCLI(host, "secret", "inspect", "pw")
	expectOK(t, r)
	if !strings.Contains(r.stdout, `"services": [`) || !strings.Contains(r.stdout, `"web"`) || !strings.Contains(r.stdout, `"sha256": "abc"`) ||
		strings.Contains(r.stdout, "hunter2") || strings.Contains(r.stdout, `"data"`) {
		t.Fatalf("inspect:\n%s", r.stdout)
	}
	r = runCLI(host, "secret", "inspect", "--format", "{{.Name}} v{{.Version}} {{join .Services \",\"}}", "pw")
	expectOK(t, r)
	if r.stdout != "pw v1 web\n" {
		t.Fatalf("inspect --format: %q", r.stdout)
	}

	if err := os.WriteFile(file, []byte("hunter3"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(host, "secret", "update", "pw", file)
	expectOK(t, r)
	if r.stdout != "web\n" || string(f.got["pw"]) != "hunter3" {
		t.Fatalf("update printed %q, sent %q", r.stdout, f.got["pw"])
	}

	expectError(t, runCLI(host, "secret", "rm", "pw"), "secret pw is in use by service(s) web")
	r = runCLI(host, "secret", "rm", "other")
	expectOK(t, r)
	if r.stdout != "other\n" {
		t.Fatalf("rm: %q", r.stdout)
	}
}

func TestServiceSecretFlags(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	r := runCLI(host, "service", "create", "-d", "--name", "web", "--secret", "pw",
		"--secret", "source=db,target=dbpw,uid=1,gid=2,mode=0400", "--config", "src=nginx,target=/etc/nginx/nginx.conf,mode=0444", "nginx")
	expectOK(t, r)
	reqs := d.callsTo("CreateService")
	if len(reqs) != 1 {
		t.Fatalf("%d creates", len(reqs))
	}
	c := reqs[0].(*swarmpb.CreateServiceRequest).Spec.Container
	wantS := []*swarmpb.SecretReference{{SecretName: "pw"}, {SecretName: "db", Target: "dbpw", Uid: 1, Gid: 2, Mode: 0o400}}
	wantC := []*swarmpb.ConfigReference{{ConfigName: "nginx", Target: "/etc/nginx/nginx.conf", Mode: 0o444}}
	for i := range wantS {
		if !proto.Equal(c.Secrets[i], wantS[i]) {
			t.Fatalf("secret %d: %v, want %v", i, c.Secrets[i], wantS[i])
		}
	}
	if len(c.Configs) != 1 || !proto.Equal(c.Configs[0], wantC[0]) {
		t.Fatalf("configs %v", c.Configs)
	}

	for _, bad := range []struct{ flag, want string }{
		{"source=x,target=a/b", `invalid --secret "source=x,target=a/b": secret[0] target "a/b" is invalid: a secret's target is a file name under /run/secrets, without '/', '.' or '..'`},
		{"source=x,mode=999", `invalid --secret "source=x,mode=999": bad mode "999": strconv.ParseUint: parsing "999": invalid syntax`},
		{"target=x", `invalid --secret "target=x": source=NAME is required`},
		{"source=x,color=red", `invalid --secret "source=x,color=red": unknown field "color" (use source, target, uid, gid, mode)`},
	} {
		expectError(t, runCLI(host, "service", "create", "-d", "--secret", bad.flag, "nginx"), bad.want)
	}
	expectError(t, runCLI(host, "service", "create", "-d", "--config", "source=c,target=rel/path", "nginx"),
		`invalid --config "source=c,target=rel/path": config[0] target "rel/path" is invalid: use an absolute, clean path to a file, like /etc/app/app.conf`)
	expectError(t, runCLI(host, "service", "create", "-d", "--secret", "a", "--secret", "source=b,target=a", "nginx"),
		`secret[1] target "a" is used by another secret of the service: give each a distinct target`)

	// inspect --pretty lists the references.
	r = runCLI(host, "service", "inspect", "--pretty", "web")
	expectOK(t, r)
	for _, want := range []string{"/run/secrets/dbpw", "db (version 0)", "1:2, mode 0400", "/etc/nginx/nginx.conf", "nginx (version 0)", "0:0, mode 0444"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("inspect --pretty lacks %q:\n%s", want, r.stdout)
		}
	}

	// Update: remove one by name, add one; kept references keep their version.
	d.created.Spec.Container.Secrets[0].Version = 3
	d.created.Spec.Container.Secrets[1].Version = 5
	r = runCLI(host, "service", "update", "-d", "--secret-rm", "db", "--secret-add", "source=new,target=n", "--config-rm", "nginx", "web")
	expectOK(t, r)
	ups := d.callsTo("UpdateService")
	got := ups[len(ups)-1].(*swarmpb.UpdateServiceRequest).Spec.Container
	if len(got.Secrets) != 2 || got.Secrets[0].SecretName != "pw" || got.Secrets[0].Version != 3 || got.Secrets[1].SecretName != "new" || got.Secrets[1].Version != 0 || len(got.Configs) != 0 {
		t.Fatalf("updated refs: secrets %v configs %v", got.Secrets, got.Configs)
	}
}
