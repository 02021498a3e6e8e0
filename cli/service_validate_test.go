package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// The README promises engine.labels.NAME constraints and the managers
// accept them; the CLI used to refuse them with a regex of its own. It now
// uses the scheduler's parser, like the managers.
func TestServiceCreateAcceptsEngineLabelConstraints(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	expectOK(t, runCLI(host, "service", "create", "-d", "--name", "web",
		"--constraint", "engine.labels.gpu == yes", "--placement-pref", "spread=engine.labels.zone", "nginx"))
	reqs := d.callsTo("CreateService")
	if len(reqs) != 1 {
		t.Fatalf("%d CreateService calls", len(reqs))
	}
	p := reqs[0].(*swarmpb.CreateServiceRequest).GetSpec().GetPlacement()
	if len(p.GetConstraints()) != 1 || p.Constraints[0] != "engine.labels.gpu==yes" ||
		len(p.GetSpreadDescriptors()) != 1 || p.SpreadDescriptors[0] != "engine.labels.zone" {
		t.Fatalf("placement %v", p)
	}
}

// The CLI refuses what the managers refuse, with their message, and sends
// nothing.
func TestServiceCreateUsesTheManagersRules(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "a.b"}, `service name "a.b" is invalid: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit`},
		{[]string{"--name", "web", "--label", "k=" + strings.Repeat("v", 5000)}, `label "k" value is 5000 bytes long: at most 4096 allowed`},
		{[]string{"--name", "web", "--restart-delay", "-1s"}, "restart delay -1s is out of range: use 0s to 168h0m0s"},
		{[]string{"--name", "web", "--stop-grace-period", "200h"}, "stop grace period 200h0m0s is out of range: use 0s to 168h0m0s"},
		{[]string{"--name", "web", "--reserve-memory", "2GiB", "--limit-memory", "1GiB"}, "reserve memory 2147483648 bytes exceeds the memory limit of 1073741824 bytes"},
		{[]string{"--name", "web", "--reserve-cpu", "1e300"}, `invalid --reserve-cpu "1e300": too many CPUs`},
		{[]string{"--name", "web", "--limit-memory", "NaN"}, `invalid --limit-memory "NaN": expected a size such as 64MiB, 1GiB, 512M or a number of bytes`},
		{[]string{"--name", "web", "--mount", "type=volume,source=../x,target=/x"}, `volume name "../x" is invalid: use 1-255 letters, digits, '_', '.' or '-', starting with a letter or digit`},
		{[]string{"--name", "web", "-e", "FOO"}, `env "FOO" is not KEY=VALUE with a non-empty KEY`},
		{[]string{"--name", "web", "--hostname", "a b"}, `hostname "a b" contains whitespace`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expectError(t, runCLI(host, append(append([]string{"service", "create"}, tc.args...), "nginx")...), tc.want)
		})
	}
	if c := d.allCalls(); len(c) != 0 {
		t.Fatalf("calls sent on bad input: %v", c)
	}
}

// Against real managers: a replica count over the cluster's cap fails at
// once with the managers' message, and nothing is stored.
func TestServiceCreateReplicaCapOnCluster(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	host := "unix://" + c.Members[0].Socket
	expectError(t, runCLI(host, "service", "create", "-d", "--name", "big", "--replicas", "1000000000", "busybox"),
		"replicas 1000000000 exceeds the cluster's limit of 100000 (swarmctl swarm update --max-replicas)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Control().ListServices(ctx, &swarmpb.ListServicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetServices()); n != 0 {
		t.Fatalf("%d services stored", n)
	}
	// An update over the cap is refused the same way.
	expectOK(t, runCLI(host, "service", "create", "-d", "--name", "small", "busybox"))
	expectError(t, runCLI(host, "service", "update", "-d", "--replicas", "100001", "small"),
		"replicas 100001 exceeds the cluster's limit of 100000 (swarmctl swarm update --max-replicas)")
}
