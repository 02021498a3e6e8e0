package cli

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// lockDaemon answers the autolock and cluster-settings calls.
type lockDaemon struct {
	swarmpb.UnimplementedLocalServer
	swarmpb.UnimplementedControlServer
	mu        sync.Mutex
	unlockKey string // what GetUnlockKey returns
	updates   []*swarmpb.UpdateClusterRequest
	unlocked  []string
}

func (d *lockDaemon) Init(_ context.Context, req *swarmpb.InitRequest) (*swarmpb.InitResponse, error) {
	resp := &swarmpb.InitResponse{NodeId: "n1", WorkerToken: "SWMTKN-1-x", ManagerAddr: "127.0.0.1:2377"}
	if req.Autolock {
		resp.UnlockKey = "SWMKEY-1-init"
	}
	return resp, nil
}

func (d *lockDaemon) Unlock(_ context.Context, req *swarmpb.UnlockRequest) (*swarmpb.UnlockResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unlocked = append(d.unlocked, req.UnlockKey)
	if req.UnlockKey != "SWMKEY-1-good" {
		return nil, status.Error(codes.InvalidArgument, "invalid unlock key: it does not unlock this manager")
	}
	return &swarmpb.UnlockResponse{}, nil
}

func (d *lockDaemon) UpdateCluster(_ context.Context, req *swarmpb.UpdateClusterRequest) (*swarmpb.UpdateClusterResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.updates = append(d.updates, req)
	resp := &swarmpb.UpdateClusterResponse{Cluster: &swarmpb.ClusterInfo{Id: "c1"}}
	if req.Autolock != nil && *req.Autolock {
		resp.UnlockKey = "SWMKEY-1-new"
	}
	return resp, nil
}

func (d *lockDaemon) GetUnlockKey(_ context.Context, req *swarmpb.GetUnlockKeyRequest) (*swarmpb.GetUnlockKeyResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if req.Rotate {
		d.unlockKey = "SWMKEY-1-rotated"
	}
	return &swarmpb.GetUnlockKeyResponse{UnlockKey: d.unlockKey}, nil
}

func (d *lockDaemon) GetCluster(context.Context, *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	return &swarmpb.GetClusterResponse{Cluster: &swarmpb.ClusterInfo{Id: "c1", Name: "default",
		Settings: &swarmpb.ClusterSettings{Autolock: true, MaxReplicas: 7}}}, nil
}

func startLockDaemon(t *testing.T, d *lockDaemon) string {
	t.Helper()
	return serveFake(t, d, d)
}

func TestSwarmUnlockReadsStdin(t *testing.T) {
	d := &lockDaemon{}
	host := startLockDaemon(t, d)
	r := runCLIOpts(options{stdin: strings.NewReader("  SWMKEY-1-good\n")}, host, "swarm", "unlock")
	expectOK(t, r)
	if r.stdout != "Swarm manager unlocked.\n" {
		t.Fatalf("stdout %q (no prompt when stdin is not a terminal)", r.stdout)
	}
	expectError(t, runCLIOpts(options{stdin: strings.NewReader("SWMKEY-1-bad")}, host, "swarm", "unlock"),
		"invalid unlock key: it does not unlock this manager")
	expectError(t, runCLIOpts(options{stdin: strings.NewReader("")}, host, "swarm", "unlock"),
		"no unlock key given: type it, or pipe it to stdin")
	if len(d.unlocked) != 2 || d.unlocked[0] != "SWMKEY-1-good" {
		t.Fatalf("keys sent: %q", d.unlocked)
	}
}

func TestSwarmUpdate(t *testing.T) {
	d := &lockDaemon{}
	host := startLockDaemon(t, d)
	expectError(t, runCLI(host, "swarm", "update"), "nothing to update: give --autolock or --max-replicas")
	expectError(t, runCLI(host, "swarm", "update", "--max-replicas", "0"), "max replicas must be between 1 and 1000000, got 0")
	if len(d.updates) != 0 {
		t.Fatalf("bad input reached the daemon: %v", d.updates)
	}
	r := runCLI(host, "swarm", "update", "--autolock=true")
	expectOK(t, r)
	if !strings.HasPrefix(r.stdout, "Swarm updated.\n") || !strings.Contains(r.stdout, "    SWMKEY-1-new\n") || !strings.Contains(r.stdout, "swarmctl swarm unlock") {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(host, "swarm", "update", "--max-replicas", "50")
	expectOK(t, r)
	if r.stdout != "Swarm updated.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	last := d.updates[len(d.updates)-1]
	if last.Autolock != nil || last.GetMaxReplicas() != 50 {
		t.Fatalf("request %v", last)
	}
	if first := d.updates[0]; first.Autolock == nil || !*first.Autolock || first.MaxReplicas != nil {
		t.Fatalf("request %v", first)
	}
}

func TestSwarmUnlockKeyAndInit(t *testing.T) {
	d := &lockDaemon{}
	host := startLockDaemon(t, d)
	expectError(t, runCLI(host, "swarm", "unlock-key"), "no unlock key is set: autolock is off (turn it on with 'swarmctl swarm update --autolock=true')")
	d.unlockKey = "SWMKEY-1-cur"
	r := runCLI(host, "swarm", "unlock-key", "-q")
	expectOK(t, r)
	if r.stdout != "SWMKEY-1-cur\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(host, "swarm", "unlock-key", "--rotate")
	expectOK(t, r)
	if !strings.HasPrefix(r.stdout, "Successfully rotated manager unlock key.\n") || !strings.Contains(r.stdout, "    SWMKEY-1-rotated\n") {
		t.Fatalf("stdout %q", r.stdout)
	}
	r = runCLI(host, "init", "--advertise-addr", "127.0.0.1", "--autolock")
	expectOK(t, r)
	if !strings.Contains(r.stdout, "    SWMKEY-1-init\n") {
		t.Fatalf("init --autolock printed %q", r.stdout)
	}
	r = runCLI(host, "swarm", "inspect")
	expectOK(t, r)
	if !strings.Contains(r.stdout, `"autolock": true`) || !strings.Contains(r.stdout, `"maxReplicas": "7"`) {
		t.Fatalf("inspect printed %q", r.stdout)
	}
}
