package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestParseNetworkAttachment(t *testing.T) {
	for in, want := range map[string]string{
		"appnet":                         `target:"appnet"`,
		"name=appnet,alias=db,alias=db2": `target:"appnet" aliases:"db" aliases:"db2"`,
		"target=appnet":                  `target:"appnet"`,
		"alias=x,Name=appnet":            `target:"appnet" aliases:"x"`,
	} {
		got, err := parseNetworkAttachment("--network", in)
		if err != nil || strings.Join(strings.Fields(got.String()), " ") != want {
			t.Errorf("parse %q = %v, %v; want %s", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                      `invalid --network "": expected NAME or name=NAME,alias=ALIAS`,
		"alias=db":              `invalid --network "alias=db": name=NETWORK is required`,
		"name=a,name=b":         `invalid --network "name=a,name=b": the network is named twice`,
		"name=a,driver-opt=x=y": `invalid --network "name=a,driver-opt=x=y": unknown key "driver-opt" (keys: name, alias)`,
		"name=a,db":             `invalid --network "name=a,db": "db" is not KEY=VALUE (keys: name, alias)`,
	} {
		if _, err := parseNetworkAttachment("--network", in); err == nil || err.Error() != want {
			t.Errorf("parse %q: %v, want %s", in, err, want)
		}
	}
}

// Bad input is refused before anything is sent.
func TestNetworkBadInputSendsNothing(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "a b"}, `network name "a b" is invalid: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit`},
		{[]string{"network", "create", "--driver", "macvlan", "n"}, `network driver "macvlan" is not supported: use overlay (the default), bridge or raftswarm; all mean raftswarm's own data path`},
		{[]string{"network", "create", "--subnet", "10.0.0.1/24", "n"}, `subnet "10.0.0.1/24" has host bits set: did you mean 10.0.0.0/24?`},
		{[]string{"network", "create"}, `"swarmctl network create" requires exactly 1 argument(s) (NAME), got 0`},
		{[]string{"service", "create", "--name", "web", "--network-alias", "www", "nginx"}, "--network-alias needs a --network to apply to"},
		{[]string{"service", "create", "--name", "web", "--network", "a", "--network", "a", "nginx"}, `network "a" is attached more than once`},
		{[]string{"service", "create", "--name", "web", "--network", "name=a,alias=bad_alias", "nginx"}, `network alias "bad_alias" is invalid: use 1-63 letters, digits or '-', starting and ending with a letter or digit`},
		{[]string{"service", "update", "--network-add", "alias=x", "web"}, `invalid --network-add "alias=x": name=NETWORK is required`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expectError(t, runCLI(host, tc.args...), tc.want)
		})
	}
	if c := d.allCalls(); len(c) != 0 {
		t.Fatalf("calls sent on bad input: %v", c)
	}
}

// The network commands and the service network flags against real
// managers.
func TestNetworkCommandsOnCluster(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	host := "unix://" + c.Members[0].Socket

	r := runCLI(host, "network", "create", "--driver", "overlay", "--label", "team=web", "appnet")
	expectOK(t, r)
	appnetID := strings.TrimSpace(r.stdout)
	expectOK(t, runCLI(host, "network", "create", "--subnet", "10.50.0.0/24", "--internal", "backend"))
	expectError(t, runCLI(host, "network", "create", "appnet"), "network appnet already exists")
	expectError(t, runCLI(host, "network", "create", "--subnet", "10.96.8.0/24", "x"), "subnet 10.96.8.0/24 overlaps 10.96.0.0/20 of network appnet")

	r = runCLI(host, "network", "ls")
	expectOK(t, r)
	for _, line := range []string{
		"ID             NAME      DRIVER    SUBNET         SERVICES\n",
		appnetID[:12] + "   appnet    overlay   10.96.0.0/20   0\n",
		"   backend   overlay   10.50.0.0/24   0\n",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Fatalf("network ls lacks %q:\n%s", line, r.stdout)
		}
	}
	r = runCLI(host, "network", "ls", "-q")
	if expectOK(t, r); len(strings.Fields(r.stdout)) != 2 {
		t.Fatalf("ls -q: %q", r.stdout)
	}

	// Services on the network: names resolved, aliases, VIPs.
	expectOK(t, runCLI(host, "service", "create", "-d", "--name", "redis", "--network", "appnet", "--network-alias", "cache", "busybox"))
	expectOK(t, runCLI(host, "service", "create", "-d", "--name", "web", "--network", "name=appnet,alias=www", "--network", "backend", "busybox"))
	expectError(t, runCLI(host, "service", "create", "-d", "--name", "x", "--network", "nope", "busybox"), "network nope not found")
	expectError(t, runCLI(host, "service", "create", "-d", "--name", "cache", "--network", "appnet", "busybox"),
		`name "cache" of service cache clashes with alias "cache" of service redis on network appnet`)

	r = runCLI(host, "service", "inspect", "web")
	expectOK(t, r)
	var svcs []struct {
		Networks []serviceNetworkView `json:"Networks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &svcs); err != nil || len(svcs) != 1 {
		t.Fatalf("inspect: %v\n%s", err, r.stdout)
	}
	if n := svcs[0].Networks; len(n) != 2 || n[0].Name != "appnet" || n[0].VIP != "10.96.0.3" || n[0].Aliases[0] != "www" || n[1].Name != "backend" || n[1].VIP != "10.50.0.2" {
		t.Fatalf("service networks %+v", n)
	}
	r = runCLI(host, "service", "inspect", "--pretty", "redis")
	if expectOK(t, r); !strings.Contains(r.stdout, "Networks:\n appnet:   10.96.0.2\n  Aliases: cache\n") {
		t.Fatalf("pretty:\n%s", r.stdout)
	}

	r = runCLI(host, "network", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Subnet}}{{range .Services}} {{.Name}}={{.VIP}}{{end}}", "appnet")
	if expectOK(t, r); r.stdout != "appnet overlay 10.96.0.0/20 redis=10.96.0.2 web=10.96.0.3\n" {
		t.Fatalf("inspect --format: %q", r.stdout)
	}
	r = runCLI(host, "network", "inspect", "appnet", appnetID[:5])
	expectOK(t, r)
	var nets []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &nets); err != nil || len(nets) != 2 || len(nets[0]["Services"].([]any)) != 2 {
		t.Fatalf("inspect json: %v\n%s", err, r.stdout)
	}
	expectError(t, runCLI(host, "network", "inspect", "ghost"), "network ghost not found")

	// network rm refuses a network in use, naming the services.
	expectError(t, runCLI(host, "network", "rm", "appnet"), "network appnet is in use by services redis, web")

	// service update --network-rm / --network-add.
	expectError(t, runCLI(host, "service", "update", "-d", "--network-add", "appnet", "web"), "network appnet is already attached to service web")
	expectError(t, runCLI(host, "service", "update", "-d", "--network-rm", "backend", "redis"), "service redis is not attached to network backend")
	expectOK(t, runCLI(host, "service", "update", "-d", "--network-rm", "appnet", "web"))
	expectOK(t, runCLI(host, "service", "update", "-d", "--network-rm", "backend", "--network-add", "name=backend,alias=api", "web"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := c.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Service.Spec.Networks; len(n) != 1 || n[0].Aliases[0] != "api" || len(got.Service.VirtualIps) != 1 || got.Service.VirtualIps[0].Addr != "10.50.0.2" {
		t.Fatalf("web after update: %v %v", n, got.Service.VirtualIps)
	}
	expectError(t, runCLI(host, "network", "rm", "appnet"), "network appnet is in use by service redis")
	expectOK(t, runCLI(host, "service", "rm", "redis"))
	r = runCLI(host, "network", "rm", "appnet")
	if expectOK(t, r); r.stdout != "appnet\n" {
		t.Fatalf("rm: %q", r.stdout)
	}
	r = runCLI(host, "network", "ls", "--format", "{{.Name}} {{.Services}} {{.Internal}}")
	if expectOK(t, r); r.stdout != "backend 1 true\n" {
		t.Fatalf("ls --format: %q", r.stdout)
	}
}

// netFake answers GetNetwork with a canned network.
type netFake struct {
	fakeDaemon
	resp *swarmpb.GetNetworkResponse
}

func (d *netFake) GetNetwork(_ context.Context, r *swarmpb.GetNetworkRequest) (*swarmpb.GetNetworkResponse, error) {
	if err := d.record("GetNetwork", r); err != nil {
		return nil, err
	}
	return d.resp, nil
}

// Per-node setup is shown by every form of network inspect, and what the
// nodes and users stored is escaped on the terminal.
func TestNetworkInspectNodesEscaped(t *testing.T) {
	d := &netFake{resp: &swarmpb.GetNetworkResponse{
		Network:  &swarmpb.Network{Id: "netid", Spec: &swarmpb.NetworkSpec{Name: "appnet", Labels: map[string]string{"k": "v\x1b[31m"}}, Subnet: "10.96.0.0/20"},
		Services: []*swarmpb.NetworkAttachedService{{ServiceId: "s1", ServiceName: "web", Vip: "10.96.0.2", Aliases: []string{"www"}}},
		Nodes: []*swarmpb.NetworkNodeInfo{{NodeId: "n1", Hostname: "host\x1b]0;x\a1",
			State: &swarmpb.NodeNetwork{NetworkId: "netid", DockerNetwork: "rs-appnet-n1", Bridge: "rsabc", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1", Tasks: 2}}},
	}}
	host := serveFake(t, d, d)
	r := runCLI(host, "network", "inspect", "--pretty", "appnet")
	expectOK(t, r)
	for _, want := range []string{"Name:     appnet", "web:      10.96.0.2", "Aliases: www", `host\x1b]0;x\a1:`, "Docker network: rs-appnet-n1", "Gateway:        172.18.0.1", "Tasks:          2", `k=v\x1b[31m`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("pretty lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(host, "network", "inspect", "-f", "{{range .Nodes}}{{.Hostname}} {{.Bridge}} {{.Tasks}}{{end}} {{index .Labels \"k\"}}", "appnet")
	if expectOK(t, r); r.stdout != `host\x1b]0;x\a1 rsabc 2 v\x1b[31m`+"\n" {
		t.Fatalf("format: %q", r.stdout)
	}
	r = runCLI(host, "network", "inspect", "appnet")
	expectOK(t, r)
	var objs []struct {
		ID       string `json:"id"`
		Services []struct {
			ServiceName string `json:"serviceName"`
		} `json:"Services"`
		Nodes []struct {
			Hostname string `json:"hostname"`
			State    struct {
				Bridge string `json:"bridge"`
			} `json:"state"`
		} `json:"Nodes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &objs); err != nil || len(objs) != 1 || objs[0].ID != "netid" ||
		objs[0].Services[0].ServiceName != "web" || objs[0].Nodes[0].State.Bridge != "rsabc" || objs[0].Nodes[0].Hostname != "host\x1b]0;x\a1" {
		t.Fatalf("json %v %+v\n%s", err, objs, r.stdout)
	}
	expectError(t, runCLI(host, "network", "inspect", "--pretty", "-f", "x", "appnet"), "--pretty and --format cannot be combined")
}
