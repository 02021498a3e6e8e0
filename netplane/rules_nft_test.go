package netplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTableName(t *testing.T) {
	for in, want := range map[string]string{
		"0abcdefghijklmnopqrstuvwx": "raftswarm_0abcdefghijk",
		"ABC":                       "raftswarm_abc",
		"a-b c;d":                   "raftswarm_abcd",
		"":                          "",
		"--":                        "",
	} {
		if got := TableName(in); got != want {
			t.Errorf("TableName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNFTScript(t *testing.T) {
	rs := RuleSet{Bridges: []BridgeRules{
		{
			Interface: "rs0123456789ab", Gateway: netip.MustParseAddr("172.18.0.1"),
			VIPSubnet: netip.MustParsePrefix("10.96.0.0/20"), ProxyPort: 40001, RefusePort: 40002,
			Live: []netip.Addr{netip.MustParseAddr("10.96.0.2"), netip.MustParseAddr("10.96.8.1"), netip.MustParseAddr("10.96.0.2")},
		},
		{
			Interface: "rsffffffffffff", Gateway: netip.MustParseAddr("172.19.0.1"),
			VIPSubnet: netip.MustParsePrefix("10.96.16.5/20"), ProxyPort: 40003, RefusePort: 40004,
		},
	}}
	s, err := nftScript("raftswarm_n1", rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table ip raftswarm_n1\ndelete table ip raftswarm_n1\ntable ip raftswarm_n1 {",
		"set live {\n\t\ttype ipv4_addr\n\t\telements = { 10.96.0.2, 10.96.8.1 }\n\t}",
		"set vips {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.96.0.0/20, 10.96.16.0/20 }\n\t}",
		"type nat hook prerouting priority dstnat - 5; policy accept;",
		`iifname "rs0123456789ab" ip daddr @live meta l4proto tcp redirect to :40001`,
		`iifname "rs0123456789ab" ip daddr @vips meta l4proto tcp redirect to :40002`,
		`iifname "rsffffffffffff" ip daddr @live meta l4proto tcp redirect to :40003`,
		`iifname "rsffffffffffff" ip daddr @vips meta l4proto tcp redirect to :40004`,
		"type filter hook forward priority filter - 5; policy accept;",
		`iifname "rs0123456789ab" ip daddr @vips drop`,
		`iifname "rsffffffffffff" ip daddr @vips drop`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	// The live rule of a bridge comes before its refuse rule.
	if strings.Index(s, "redirect to :40001") > strings.Index(s, "redirect to :40002") {
		t.Errorf("refuse rule before live rule:\n%s", s)
	}
	// No bridges: empty sets and chains, still a valid replacement.
	s, err = nftScript("raftswarm_n1", RuleSet{})
	if err != nil || strings.Contains(s, "elements") || strings.Contains(s, "iifname") {
		t.Errorf("empty rule set: %v\n%s", err, s)
	}

	for _, bad := range []BridgeRules{
		{Interface: `x" drop; #`, VIPSubnet: netip.MustParsePrefix("10.96.0.0/20"), ProxyPort: 1, RefusePort: 2},
		{Interface: "averyveryverylongname", VIPSubnet: netip.MustParsePrefix("10.96.0.0/20"), ProxyPort: 1, RefusePort: 2},
		{Interface: "rs1", VIPSubnet: netip.MustParsePrefix("fd00::/64"), ProxyPort: 1, RefusePort: 2},
		{Interface: "rs1", ProxyPort: 1, RefusePort: 2},
		{Interface: "rs1", VIPSubnet: netip.MustParsePrefix("10.96.0.0/20"), RefusePort: 2},
	} {
		if _, err := nftScript("raftswarm_n1", RuleSet{Bridges: []BridgeRules{bad}}); err == nil {
			t.Errorf("nftScript accepted %+v", bad)
		}
	}
}

func TestDisjoint(t *testing.T) {
	in := []netip.Prefix{
		netip.MustParsePrefix("10.96.16.0/20"), netip.MustParsePrefix("10.96.0.0/20"),
		netip.MustParsePrefix("10.96.0.0/20"), netip.MustParsePrefix("10.96.4.0/24"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.0.0/24"),
	}
	got := disjoint(in)
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/24")}
	if !slices.Equal(got, want) {
		t.Fatalf("disjoint = %v, want %v", got, want)
	}
}

func TestNFTRulesUnusable(t *testing.T) {
	if _, err := newNFTRules("raftswarm_x", "/nonexistent/nft"); err == nil || !strings.Contains(err.Error(), "nftables unusable") {
		t.Fatalf("newNFTRules with a missing nft: %v", err)
	}
	if _, err := NewNFTRules(""); err == nil {
		t.Fatal("NewNFTRules accepted an empty node ID")
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := osexec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs f on a thread inside the network namespace ns (sockets
// created there stay in it).
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if restoring fails: it then exits
		// with the goroutine instead of serving others in the wrong
		// namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// boundNotListening binds a TCP socket on addr:0 without listening and
// returns its port: connections to it are refused by the kernel.
func boundNotListening(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: addr.As4()}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(sa.(*syscall.SockaddrInet4).Port)
}

// TestNFTRulesRedirect programs a real table for a veth pair whose far end
// is in a network namespace standing in for a container: TCP to a live
// virtual address reaches the proxy listener on the gateway, TCP to a dead
// one is refused at once, and Remove deletes the table.
func TestNFTRulesRedirect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (nft, ip netns)")
	}
	for _, bin := range []string{nftPath, "/usr/sbin/ip"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s missing", bin)
		}
	}
	r := randHex(t, 3)
	ns := "rs-nfttest-" + r
	hostIf, peerIf := "rsth"+r, "rstc"+r
	octet := int(r[0]) % 200 // some spread, so parallel runs rarely share subnets
	gw := netip.MustParseAddr(fmt.Sprintf("10.213.%d.1", octet))
	client := fmt.Sprintf("10.213.%d.2/24", octet)
	vipNet := netip.MustParsePrefix(fmt.Sprintf("10.214.%d.0/24", octet))
	live := netip.MustParseAddr(fmt.Sprintf("10.214.%d.2", octet))
	dead := netip.MustParseAddr(fmt.Sprintf("10.214.%d.3", octet))

	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = osexec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { _ = osexec.Command("ip", "link", "del", hostIf).Run() })
	run(t, "ip", "link", "set", peerIf, "netns", ns)
	run(t, "ip", "addr", "add", gw.String()+"/24", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "-n", ns, "addr", "add", client, "dev", peerIf)
	run(t, "ip", "-n", ns, "link", "set", peerIf, "up")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", gw.String())

	ln, err := net.Listen("tcp4", gw.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proxyPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	refusePort := boundNotListening(t, gw)

	rules, err := newNFTRules("raftswarm_t"+r, nftPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rules.Remove(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	br := BridgeRules{Interface: hostIf, Gateway: gw, VIPSubnet: vipNet, ProxyPort: proxyPort, RefusePort: refusePort, Live: []netip.Addr{live}}
	// Another network's bridge (its interface need not exist): a
	// container on both networks reaches its addresses through this one.
	otherNet := netip.MustParsePrefix(fmt.Sprintf("10.215.%d.0/24", octet))
	otherLive := netip.MustParseAddr(fmt.Sprintf("10.215.%d.2", octet))
	otherDead := netip.MustParseAddr(fmt.Sprintf("10.215.%d.3", octet))
	other := BridgeRules{Interface: "rsty" + r, Gateway: netip.MustParseAddr("10.216.0.1"), VIPSubnet: otherNet, ProxyPort: 1, RefusePort: 2, Live: []netip.Addr{otherLive}}
	// Applied twice: the second run replaces an existing table.
	for i := 0; i < 2; i++ {
		if err := rules.Apply(ctx, RuleSet{Bridges: []BridgeRules{br, other}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := osexec.Command(nftPath, "list", "table", "ip", rules.Table()).CombinedOutput()
	if err != nil {
		t.Fatalf("list table: %v\n%s", err, out)
	}
	for _, want := range []string{live.String(), otherLive.String(), otherNet.String(), fmt.Sprintf("redirect to :%d", proxyPort), fmt.Sprintf("redirect to :%d", refusePort), "drop"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	dial := func(to netip.Addr) error {
		return inNetns(ns, func() error {
			d := net.Dialer{Timeout: 3 * time.Second}
			c, err := d.Dial("tcp4", netip.AddrPortFrom(to, 6379).String())
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(live); err != nil {
		t.Fatalf("connect to live %s: %v", live, err)
	}
	select {
	case c := <-accepted:
		if got := c.LocalAddr().(*net.TCPAddr).Port; got != int(proxyPort) {
			t.Errorf("accepted on port %d, want %d", got, proxyPort)
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy listener accepted nothing")
	}
	for _, to := range []netip.Addr{dead, otherDead} {
		start := time.Now()
		err = dial(to)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect to dead %s: %v, want connection refused", to, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal took %v", d)
		}
	}
	// The other network's live address reaches this bridge's proxy.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	if err := dial(otherLive); err != nil {
		t.Fatalf("connect to the other network's live %s: %v", otherLive, err)
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy listener accepted nothing")
	}

	// Now the dead address goes live: it reaches the proxy too.
	br.Live = append(br.Live, dead)
	if err := rules.Apply(ctx, RuleSet{Bridges: []BridgeRules{br, other}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	if err := dial(dead); err != nil {
		t.Fatalf("connect to newly live %s: %v", dead, err)
	}
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy listener accepted nothing")
	}

	if err := rules.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := osexec.Command(nftPath, "list", "table", "ip", rules.Table()).Run(); err == nil {
		t.Fatal("table still listed after Remove")
	}
	// Removing again is fine.
	if err := rules.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}
