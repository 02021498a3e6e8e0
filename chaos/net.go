package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// nsPrefix starts the name of every network namespace the bed creates:
// rschaos-<owner pid>-<run tag>-<host>. The owner pid lets a later run
// sweep what a crashed run left behind without touching a live one.
const nsPrefix = "rschaos-"

// Net is one run's private network: a hub namespace holding a Linux
// bridge, and one namespace per host wired to it by a veth pair. Nothing
// is created in the root namespace: the root namespace has no route into
// the subnet and its firewall (Docker's FORWARD policy, br_netfilter) never
// sees the bed's packets. Deleting the namespaces removes every link.
type Net struct {
	prefix string // rschaos-<pid>-<tag>
	subnet string // 10.213.<x>
	hosts  []*Host
	hub    string
}

// Host is one namespace with one address on the bridge.
type Host struct {
	Name string // m1, w1, ...
	NS   string // namespace name
	IP   string // 10.213.x.y
}

// requirements returns why the bed cannot run here, or "".
func requirements() string {
	if os.Geteuid() != 0 {
		return "the chaos bed needs root (network namespaces, nftables)"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the chaos bed needs %q on PATH: %v", tool, err)
		}
	}
	// Probe that namespaces can be created at all (containers without
	// CAP_SYS_ADMIN cannot).
	probe := fmt.Sprintf("%sprobe-%d", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return ""
}

// run executes a command and returns its error with the output in it.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS runs a command inside ns.
func inNS(ns string, name string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Sweep removes namespaces of earlier runs whose owner process is gone,
// killing what still runs inside them. It returns what it removed.
func Sweep() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var removed []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		ns := f[0]
		rest := strings.SplitN(strings.TrimPrefix(ns, nsPrefix), "-", 2)
		pid, err := strconv.Atoi(rest[0])
		if err == nil && pid != os.Getpid() && alive(pid) {
			continue // a live run owns it
		}
		if err == nil && pid == os.Getpid() {
			continue // ours: Close removes it
		}
		killNS(ns)
		if err := run("ip", "netns", "del", ns); err != nil {
			return removed, err
		}
		removed = append(removed, ns)
	}
	return removed, nil
}

// SweepOwn removes every namespace this process created and still holds.
func SweepOwn() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	own := fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], own) {
			killNS(f[0])
			_ = run("ip", "netns", "del", f[0])
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killNS kills every process left in ns (only daemons a bed started run
// there).
func killNS(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, p := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(p); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// NewNet creates the hub namespace and its bridge on a random 10.213.x.0/24.
func NewNet(rng *rand.Rand) (*Net, error) {
	n := &Net{
		prefix: fmt.Sprintf("%s%d-%04x", nsPrefix, os.Getpid(), rng.IntN(0x10000)),
		subnet: fmt.Sprintf("10.213.%d", 1+rng.IntN(254)),
	}
	n.hub = n.prefix + "-hub"
	if err := run("ip", "netns", "add", n.hub); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", n.hub, "link", "set", "lo", "up"},
		{"-n", n.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", n.hub, "link", "set", "br0", "up"},
	} {
		if err := run("ip", args...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// AddHost creates a namespace for name, plugged into the bridge.
func (n *Net) AddHost(name string) (*Host, error) {
	h := &Host{Name: name, NS: n.prefix + "-" + name, IP: fmt.Sprintf("%s.%d", n.subnet, 11+len(n.hosts))}
	if err := run("ip", "netns", "add", h.NS); err != nil {
		return nil, err
	}
	n.hosts = append(n.hosts, h)
	veth := "v" + name
	for _, args := range [][]string{
		{"link", "add", veth, "netns", n.hub, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", n.hub, "link", "set", veth, "master", "br0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return nil, err
		}
	}
	// One table per host holds every fault rule; healing flushes its
	// chains. The namespace's loopback is never filtered.
	ruleset := `table inet chaos {
	chain in { type filter hook input priority 0; policy accept; }
	chain out { type filter hook output priority 0; policy accept; }
}
`
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nft in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	return h, nil
}

// Close kills what runs in the run's namespaces and deletes them.
func (n *Net) Close() error {
	var errs []error
	for _, h := range n.hosts {
		killNS(h.NS)
		if err := run("ip", "netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	n.hosts = nil
	if n.hub != "" {
		if err := run("ip", "netns", "del", n.hub); err != nil {
			errs = append(errs, err)
		}
		n.hub = ""
	}
	return errors.Join(errs...)
}

// Drop makes h drop packets: from each address in from (inbound) and to
// each address in to (outbound). A one-way partition sets only one side.
func (h *Host) Drop(from, to []string) error {
	var b strings.Builder
	for _, ip := range from {
		fmt.Fprintf(&b, "add rule inet chaos in ip saddr %s drop\n", ip)
	}
	for _, ip := range to {
		fmt.Fprintf(&b, "add rule inet chaos out ip daddr %s drop\n", ip)
	}
	return h.nft(b.String())
}

// Lose drops pct percent of h's packets on eth0, both ways, at random.
// (tc netem is not in every kernel; nft's numgen is.)
func (h *Host) Lose(pct int) error {
	return h.nft(fmt.Sprintf(
		"add rule inet chaos in iifname \"eth0\" numgen random mod 100 < %d drop\n"+
			"add rule inet chaos out oifname \"eth0\" numgen random mod 100 < %d drop\n", pct, pct))
}

// Heal removes every fault rule of h.
func (h *Host) Heal() error {
	return h.nft("flush chain inet chaos in\nflush chain inet chaos out\n")
}

func (h *Host) nft(script string) error {
	if script == "" {
		return nil
	}
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	return nil
}
