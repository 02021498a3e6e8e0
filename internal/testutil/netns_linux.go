package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// DialFromNetns dials addr over TCP from the network namespace ns (a name
// under /run/netns, as `ip netns add` makes), within timeout. Only the
// dialing thread enters ns; the connection works from any goroutine after.
func DialFromNetns(ns, addr string, timeout time.Duration) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked if restoring fails: the thread then dies with the
		// goroutine instead of serving others in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		c, derr := net.DialTimeout("tcp", addr, timeout)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			if c != nil {
				c.Close()
			}
			ch <- res{err: err}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{c, derr}
	}()
	r := <-ch
	return r.c, r.err
}

// VethNetns makes network namespace "perf-mesh-"+id joined to the host by a
// veth pair on 10.207.third.0/30 (host side .1, namespace side .2), as a
// client on another host for tests run as root, and removes both in t's
// cleanup. id must be short (interface names are at most 15 bytes).
func VethNetns(t testing.TB, id string, third int) (ns, hostIP, nsIP string) {
	t.Helper()
	ns, hostIf, nsIf := "perf-mesh-"+id, "pmh"+id, "pmc"+id
	hostIP, nsIP = fmt.Sprintf("10.207.%d.1", third), fmt.Sprintf("10.207.%d.2", third)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	run("ip", "-n", ns, "link", "set", nsIf, "up")
	run("ip", "-n", ns, "link", "set", "lo", "up")
	return ns, hostIP, nsIP
}
