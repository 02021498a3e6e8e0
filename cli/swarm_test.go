package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestDaemonNotReachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing.sock")
	r := runCLI("unix://"+sock, "node", "ls")
	if r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	want := "Error: cannot reach the raftswarm daemon at " + sock + ": is managerd or workerd running? ("
	if !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr = %q", r.stderr)
	}
}

func TestBadHost(t *testing.T) {
	expectError(t, runCLI("tcp://1.2.3.4:2375", "node", "ls"), `invalid host "tcp://1.2.3.4:2375": only unix:// sockets are supported`)
}

func TestUsageErrors(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "ls", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "swarmctl"`},
		{[]string{"join", "--token", "x"}, `"swarmctl join" requires exactly 1 argument(s) (HOST:PORT of a manager), got 0`},
		{[]string{"join", "10.0.0.1:2377"}, "--token is required"},
		{[]string{"join", "--token", "x", "10.0.0.1:99999"}, `invalid manager address "10.0.0.1:99999": port must be a number between 1 and 65535`},
		{[]string{"init"}, "--advertise-addr is required"},
		{[]string{"init", "--advertise-addr", ":2377"}, `invalid --advertise-addr ":2377": the host part is empty`},
		{[]string{"init", "--advertise-addr", "10.0.0.1:0"}, `invalid --advertise-addr "10.0.0.1:0": port must be a number between 1 and 65535`},
		{[]string{"init", "--advertise-addr", "10.0.0.1", "--listen-addr", "0.0.0.0"}, `invalid --listen-addr "0.0.0.0": expected HOST:PORT`},
		{[]string{"join-token", "boss"}, `invalid role "boss": must be worker or manager`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expectError(t, runCLI(host, tc.args...), tc.want)
		})
	}
	if c := d.allCalls(); len(c) != 0 {
		t.Fatalf("calls sent on bad input: %v", c)
	}
}

func TestInit(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	r := runCLI(host, "init", "--advertise-addr", "10.0.0.1", "--listen-addr", "0.0.0.0:2377", "--force-new-cluster")
	expectOK(t, r)
	want := `Swarm initialized: current node (node1) is now a manager.

To add a worker to this swarm, run the following command:

    swarmctl join --token SWMTKN-worker 10.0.0.1:2377

To add a manager to this swarm, run 'swarmctl join-token manager' and follow the instructions.
`
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	reqs := d.callsTo("Init")
	wantReq := &swarmpb.InitRequest{AdvertiseAddr: "10.0.0.1", ListenAddr: "0.0.0.0:2377", ForceNewCluster: true}
	if len(reqs) != 1 || !proto.Equal(reqs[0], wantReq) {
		t.Fatalf("Init requests = %v", reqs)
	}
}

func TestInitError(t *testing.T) {
	d := &fakeDaemon{errs: map[string]string{"Init": "this node is already part of a swarm"}}
	expectError(t, runCLI(startFake(t, d), "init", "--advertise-addr", "[::1]:2377"), "this node is already part of a swarm")
}

func TestJoinAndLeave(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	r := runCLI(host, "join", "--token", "SWMTKN-x", "--advertise-addr", "10.0.0.2", "10.0.0.1:2377")
	expectOK(t, r)
	if r.stdout != "This node joined a swarm as a manager.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	want := &swarmpb.JoinRequest{Token: "SWMTKN-x", RemoteAddr: "10.0.0.1:2377", AdvertiseAddr: "10.0.0.2"}
	if reqs := d.callsTo("Join"); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
		t.Fatalf("Join requests = %v", reqs)
	}
	r = runCLI(host, "leave", "--force")
	expectOK(t, r)
	if r.stdout != "Node left the swarm.\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	if reqs := d.callsTo("Leave"); len(reqs) != 1 || !reqs[0].(*swarmpb.LeaveRequest).GetForce() {
		t.Fatalf("Leave requests = %v", reqs)
	}
}

func TestJoinToken(t *testing.T) {
	d := &fakeDaemon{tokens: map[swarmpb.NodeRole]string{
		swarmpb.NodeRole_NODE_ROLE_WORKER:  "SWMTKN-w",
		swarmpb.NodeRole_NODE_ROLE_MANAGER: "SWMTKN-m",
	}}
	host := startFake(t, d)

	r := runCLI(host, "join-token", "worker")
	expectOK(t, r)
	want := "To add a worker to this swarm, run the following command:\n\n    swarmctl join --token SWMTKN-w 10.0.0.1:2377\n"
	if r.stdout != want {
		t.Fatalf("stdout %q", r.stdout)
	}

	r = runCLI(host, "join-token", "-q", "manager")
	expectOK(t, r)
	if r.stdout != "SWMTKN-m\n" {
		t.Fatalf("stdout %q", r.stdout)
	}

	r = runCLI(host, "join-token", "--rotate", "worker")
	expectOK(t, r)
	if !strings.HasPrefix(r.stdout, "Successfully rotated worker join token.\n") || !strings.Contains(r.stdout, "--token SWMTKN-w-rotated 10.0.0.1:2377") {
		t.Fatalf("stdout %q", r.stdout)
	}

	r = runCLI(host, "join-token", "-q", "--rotate", "manager")
	expectOK(t, r)
	if r.stdout != "SWMTKN-m-rotated\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	reqs := d.callsTo("GetJoinToken")
	if len(reqs) != 4 {
		t.Fatalf("got %d requests", len(reqs))
	}
	last := reqs[3].(*swarmpb.GetJoinTokenRequest)
	if last.GetRole() != swarmpb.NodeRole_NODE_ROLE_MANAGER || !last.GetRotate() {
		t.Fatalf("last request %v", last)
	}
}

func TestHostFromEnv(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	t.Setenv(HostEnv, host)
	var out, errOut strings.Builder
	no := false
	code := run(options{terminal: &no}, []string{"leave"}, &out, &errOut)
	if code != 0 || out.String() != "Node left the swarm.\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
