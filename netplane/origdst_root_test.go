package netplane

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// inNetnsT runs fn on a thread switched into the named network namespace
// (sockets fn creates live there), failing the test if it cannot switch.
func inNetnsT(t *testing.T, name string, fn func()) {
	t.Helper()
	if err := inNetns(name, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestOriginalDstWithRedirect checks originalDst against a real nftables
// redirect, in a network namespace of its own (root only).
func TestOriginalDstWithRedirect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	ns := "rs-h2a-odst-" + hex.EncodeToString(rnd[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "-n", ns, "route", "add", "local", "10.99.0.0/24", "dev", "lo")

	var ln *net.TCPListener
	inNetnsT(t, ns, func() {
		var err error
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Error(err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	rules := fmt.Sprintf("table ip rsodst {\n chain out {\n  type nat hook output priority -100\n  ip daddr 10.99.0.7 tcp dport 8080 redirect to :%d\n }\n}\n", port)
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("nft unusable here: %v\n%s", err, out)
	}

	var client net.Conn
	inNetnsT(t, ns, func() {
		var err error
		client, err = net.DialTimeout("tcp4", "10.99.0.7:8080", 3*time.Second)
		if err != nil {
			t.Error(err)
		}
	})
	if client == nil {
		t.FailNow()
	}
	defer client.Close()
	ln.SetDeadline(time.Now().Add(3 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := originalDst(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("10.99.0.7:8080"); got != want {
		t.Fatalf("original destination %v, want %v", got, want)
	}
}
