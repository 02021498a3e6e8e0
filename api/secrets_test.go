package api

import (
	"context"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
)

func noData(t *testing.T, vs []*swarmpb.DataVersion) {
	t.Helper()
	if len(vs) == 0 {
		t.Fatal("no versions shown")
	}
	for _, v := range vs {
		if len(v.Data) != 0 {
			t.Fatalf("version %d carries its content in an answer", v.Version)
		}
		if len(v.Sha256) != 64 || v.CreatedAt == 0 {
			t.Fatalf("version %d lacks digest or time: %+v", v.Version, v)
		}
	}
}

func storedVersions(st *state.Store, id string) map[uint64]string {
	out := map[uint64]string{}
	st.View(func(tx state.ReadTx) {
		for _, v := range tx.GetSecret(id).GetVersions() {
			out[v.Version] = string(v.Data)
		}
	})
	return out
}

func secretRefVersion(sp *swarmpb.ServiceSpec) uint64 {
	return sp.GetContainer().GetSecrets()[0].GetVersion()
}

// A secret's life: created without its content ever coming back, used by
// a service (references resolved by name), refused removal while in use,
// updated (the service rolls to the new version and keeps the old one for
// rollback), rolled back, updated again (unreferenced versions dropped).
func TestSecretLifecycle(t *testing.T) {
	s, st := validationServer(t, 0, false)
	ctx := context.Background()

	cr, err := s.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "db_pw", Data: []byte("one"), Labels: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	sec := cr.Secret
	if sec.Version != 1 || len(sec.Versions) != 1 || sec.Name != "db_pw" {
		t.Fatalf("created %+v", sec)
	}
	noData(t, sec.Versions)
	if got := storedVersions(st, sec.Id); got[1] != "one" {
		t.Fatalf("store holds %v", got)
	}

	_, err = s.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "db_pw", Data: []byte("x")})
	wantCode(t, err, codes.AlreadyExists, "secret db_pw already exists")
	_, err = s.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "bad/name", Data: []byte("x")})
	wantCode(t, err, codes.InvalidArgument, "secret name")
	_, err = s.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "empty"})
	wantCode(t, err, codes.InvalidArgument, "secret data is empty")
	_, err = s.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: "big", Data: make([]byte, 500<<10+1)})
	wantCode(t, err, codes.InvalidArgument, "at most 512000")

	// Unknown reference.
	sp := goodSpec()
	sp.Container.Secrets = []*swarmpb.SecretReference{{SecretName: "nope"}}
	_, err = s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp})
	wantCode(t, err, codes.NotFound, "secret nope not found")
	// Bad target.
	sp.Container.Secrets = []*swarmpb.SecretReference{{SecretName: "db_pw", Target: "../etc/passwd"}}
	_, err = s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp})
	wantCode(t, err, codes.InvalidArgument, "target")

	sp.Container.Secrets = []*swarmpb.SecretReference{{SecretName: "db_pw", Mode: 0o400}}
	svcResp, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp})
	if err != nil {
		t.Fatal(err)
	}
	ref := svcResp.Service.Spec.Container.Secrets[0]
	if ref.SecretId != sec.Id || ref.Version != 1 {
		t.Fatalf("reference not resolved: %+v", ref)
	}

	gr, err := s.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: "db_pw"})
	if err != nil {
		t.Fatal(err)
	}
	noData(t, gr.Secret.Versions)
	if len(gr.Services) != 1 || gr.Services[0] != "web" {
		t.Fatalf("services using it: %v", gr.Services)
	}
	lr, err := s.ListSecrets(ctx, &swarmpb.ListSecretsRequest{})
	if err != nil || len(lr.Secrets) != 1 {
		t.Fatalf("list: %v %v", lr, err)
	}
	noData(t, lr.Secrets[0].Versions)

	_, err = s.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: "db_pw"})
	wantCode(t, err, codes.FailedPrecondition, "in use by service(s) web")

	// Update: the service rolls to version 2, keeping version 1 for rollback.
	ur, err := s.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: "db_pw", Data: []byte("two")})
	if err != nil {
		t.Fatal(err)
	}
	if ur.Secret.Version != 2 || len(ur.Services) != 1 || ur.Services[0] != "web" {
		t.Fatalf("update: %+v services %v", ur.Secret, ur.Services)
	}
	noData(t, ur.Secret.Versions)
	svc, _ := s.GetService(ctx, &swarmpb.GetServiceRequest{Service: "web"})
	cur := svc.Service
	if secretRefVersion(cur.Spec) != 2 || secretRefVersion(cur.PreviousSpec) != 1 || cur.SpecVersion != 2 ||
		cur.UpdateStatus.GetUpdateState() != swarmpb.UpdateState_UPDATE_STATE_UPDATING {
		t.Fatalf("service not rolled: spec v%d prev v%d spec_version %d status %v", secretRefVersion(cur.Spec),
			secretRefVersion(cur.PreviousSpec), cur.SpecVersion, cur.UpdateStatus)
	}
	if got := storedVersions(st, sec.Id); got[1] != "one" || got[2] != "two" || len(got) != 2 {
		t.Fatalf("store holds %v", got)
	}

	// The same content again changes nothing.
	ur, err = s.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: "db_pw", Data: []byte("two")})
	if err != nil || ur.Secret.Version != 2 || len(ur.Services) != 0 {
		t.Fatalf("same content: %v %v", ur, err)
	}

	// Rollback returns to the old content.
	rb, err := s.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "web", Rollback: true})
	if err != nil {
		t.Fatal(err)
	}
	if secretRefVersion(rb.Service.Spec) != 1 || rb.Service.UpdateStatus.GetUpdateState() != swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED {
		t.Fatalf("rollback: %+v", rb.Service)
	}

	// Another update: spec mounts v3, previous spec v1; v2 is referenced
	// by nothing and dropped.
	if _, err := s.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: sec.Id, Data: []byte("three")}); err != nil {
		t.Fatal(err)
	}
	if got := storedVersions(st, sec.Id); got[1] != "one" || got[3] != "three" || len(got) != 2 {
		t.Fatalf("store holds %v, want versions 1 and 3", got)
	}
	// A task that has not stopped yet still holds the secret.
	task := &swarmpb.Task{Id: "t1", ServiceId: cur.Id, NodeId: "n1", Spec: cur.Spec, // mounts v2
		DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
	dtApply(t, s.Raft.(leaderRaft).storeRaft, state.Create(task))

	if _, err := s.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: "web"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: "db_pw"})
	wantCode(t, err, codes.FailedPrecondition, "still used by tasks")
	task.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN}
	st.View(func(tx state.ReadTx) { task.Meta = tx.GetTask("t1").Meta })
	dtApply(t, s.Raft.(leaderRaft).storeRaft, state.Update(task))
	if _, err := s.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: "db_pw"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: "db_pw"})
	wantCode(t, err, codes.NotFound, "secret db_pw not found")
}

// Configs share the code; their targets are absolute paths, and an update
// rolls the services using them too.
func TestConfigLifecycle(t *testing.T) {
	s, _ := validationServer(t, 0, false)
	ctx := context.Background()
	if _, err := s.CreateConfig(ctx, &swarmpb.CreateConfigRequest{Name: "nginx.conf", Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	sp := goodSpec()
	sp.Container.Configs = []*swarmpb.ConfigReference{{ConfigName: "nginx.conf", Target: "etc/nginx.conf"}}
	_, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp})
	wantCode(t, err, codes.InvalidArgument, "absolute, clean path")
	sp.Container.Configs[0].Target = "/etc/nginx/nginx.conf"
	if _, err := s.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveConfig(ctx, &swarmpb.RemoveConfigRequest{Config: "nginx.conf"})
	wantCode(t, err, codes.FailedPrecondition, "in use by service(s) web")
	ur, err := s.UpdateConfig(ctx, &swarmpb.UpdateConfigRequest{Config: "nginx.conf", Data: []byte("b")})
	if err != nil || ur.Config.Version != 2 || len(ur.Services) != 1 {
		t.Fatalf("update: %v %v", ur, err)
	}
	noData(t, ur.Config.Versions)
	svc, _ := s.GetService(ctx, &swarmpb.GetServiceRequest{Service: "web"})
	if v := svc.Service.Spec.Container.Configs[0].Version; v != 2 {
		t.Fatalf("service mounts config version %d, want 2", v)
	}
	gr, err := s.GetConfig(ctx, &swarmpb.GetConfigRequest{Config: "nginx.conf"})
	if err != nil || len(gr.Services) != 1 {
		t.Fatalf("get: %v %v", gr, err)
	}
	noData(t, gr.Config.Versions)
}
