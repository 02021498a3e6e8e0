package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The operator commands through the built binaries: version and info on a
// manager, events between two times with a filter, events refused on a
// worker, and a completion script.
func TestOperatorCommands(t *testing.T) {
	c := newCluster(t)
	m1 := c.add("m1", "managerd")
	w1 := c.add("w1", "workerd")
	c.ok(m1, "init", "--advertise-addr", m1.addr)
	c.join(w1, m1, c.joinToken(m1, "worker", false))
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": ""})

	// Every node reports the daemon version the build stamped.
	c.eventually(20*time.Second, "both nodes in version", func() error {
		var rep struct {
			Client struct{ Version, APIVersion string }
			Daemon struct{ Version string }
			Nodes  []struct{ Hostname, Version string }
		}
		if err := json.Unmarshal([]byte(c.ok(m1, "version", "--format", "json")), &rep); err != nil {
			return err
		}
		if rep.Client.Version == "" || rep.Daemon.Version != rep.Client.Version || rep.Client.APIVersion != "v1" || len(rep.Nodes) != 2 {
			return fmt.Errorf("version report %+v", rep)
		}
		for _, n := range rep.Nodes {
			if !strings.HasPrefix(n.Version, rep.Client.Version) {
				return fmt.Errorf("node %s reports %q", n.Hostname, n.Version)
			}
		}
		return nil
	})
	info := c.ok(m1, "info", "--format", "{{.Role}} {{.State}} {{len .Managers}} {{.Nodes}} {{.Autolock}}")
	if info != "manager active 1 2 false\n" {
		t.Errorf("info: %q", info)
	}
	if winfo := c.ok(w1, "info", "--format", "{{.Role}} {{.State}} {{.RaftIndex}}"); winfo != "worker active 0\n" {
		t.Errorf("worker info: %q", winfo)
	}

	start := time.Now().UTC().Format(time.RFC3339Nano)
	c.ok(m1, "network", "create", "obsnet")
	c.ok(m1, "network", "rm", "obsnet")
	end := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	c.eventually(10*time.Second, "the network's events", func() error {
		got := c.ok(m1, "events", "--since", start, "--until", end, "--filter", "type=network", "--format", "{{.Type}} {{.Action}} {{.Name}}")
		if got != "network create obsnet\nnetwork remove obsnet\n" {
			return fmt.Errorf("events: %q", got)
		}
		return nil
	})
	c.fails(w1, "not a swarm manager", "events")
	c.fails(m1, `unknown filter "colour"`, "events", "--filter", "colour=red")
	if out := c.ok(m1, "completion", "bash"); !strings.HasPrefix(out, "# bash completion V2 for swarmctl") {
		t.Errorf("completion bash: %.80q", out)
	}
}
