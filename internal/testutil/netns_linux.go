package testutil

import (
	"net"
	"os"
	"runtime"
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
