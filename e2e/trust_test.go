package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTrustThroughTheCLI drives the trust features the way an operator
// would: autolock from init to a locked restart and unlock, the replica cap
// and its setting, and server-side validation.
func TestTrustThroughTheCLI(t *testing.T) {
	c := newCluster(t)
	m1 := c.add("m1", "managerd")
	w1 := c.add("w1", "workerd")

	out := c.ok(m1, "init", "--advertise-addr", m1.addr, "--autolock")
	key := regexp.MustCompile(`SWMKEY-1-\S+`).FindString(out)
	if key == "" {
		t.Fatalf("init --autolock printed no unlock key:\n%s", out)
	}
	c.join(w1, m1, c.joinToken(m1, "worker", false))
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": ""})
	if got := strings.TrimSpace(c.ok(m1, "swarm", "unlock-key", "-q")); got != key {
		t.Fatalf("swarm unlock-key -q = %q, want the key init printed (%q)", got, key)
	}

	// The replica cap: the default, then the cluster setting.
	c.fails(m1, "exceeds the cluster's limit of 100000", "service", "create", "-d", "--replicas", "1000000000", "img")
	c.ok(m1, "swarm", "update", "--max-replicas", "5")
	c.fails(m1, "exceeds the cluster's limit of 5", "service", "create", "-d", "--name", "big", "--replicas", "6", "img")
	c.fails(m1, "between 1 and 1000000", "swarm", "update", "--max-replicas", "0")
	// Other rules, from the same code on both sides.
	c.fails(m1, "restart delay -5s is out of range", "service", "create", "-d", "--name", "neg", "--restart-delay", "-5s", "img")
	c.fails(m1, "at most 4096 allowed", "service", "create", "-d", "--name", "lbl", "--label", "big="+strings.Repeat("x", 5000), "img")
	if got := c.ok(m1, "service", "ls", "-q"); strings.TrimSpace(got) != "" {
		t.Fatalf("refused creates stored services:\n%s", got)
	}
	// Without --name the managers pick one.
	id := strings.TrimSpace(c.ok(m1, "service", "create", "-d", "img"))
	if name := strings.TrimSpace(c.ok(m1, "service", "ls", "--format", "{{.Name}}")); !strings.Contains(name, "_") {
		t.Fatalf("service %s created without --name is called %q, want a generated adjective_name", id, name)
	}

	// A restarted manager is locked until unlocked with the key.
	m1.kill(t)
	c.start(m1)
	c.eventually(20*time.Second, "m1 locked", func() error {
		r := c.swarmctl(m1, "node", "ls")
		if r.code == 1 && strings.Contains(r.stderr, "this manager is locked") {
			return nil
		}
		return errString(r.String())
	})
	c.fails(m1, "this manager is locked", "service", "ls")
	if r := c.swarmctlIn(m1, "SWMKEY-1-notthekey\n", "swarm", "unlock"); r.code != 1 || !strings.Contains(r.stderr, "invalid unlock key") {
		t.Fatalf("wrong key: %s", r)
	}
	if r := c.swarmctlIn(m1, key+"\n", "swarm", "unlock"); r.code != 0 {
		t.Fatalf("unlock with the key: %s", r)
	}
	c.expectNodes(m1, 30*time.Second, map[string]string{"m1": "Leader", "w1": ""})
	if got := c.ok(m1, "service", "ls", "-q"); strings.TrimSpace(got) == "" {
		t.Fatal("the service created before the restart is gone after unlocking")
	}
}

type errString string

func (e errString) Error() string { return string(e) }
