// Package daemonprof runs a node daemon inside a benchmark binary with CPU
// profiling on signals, so benchmarks can profile the daemons they start.
package daemonprof

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/raftswarm/raftswarm/node"
)

// Main is managerd or workerd (node.Main, as cmd/managerd and cmd/workerd
// run it) with a CPU profile that starts on SIGUSR1 and is written on
// SIGUSR2, to PATH.1, PATH.2, ... (one file per SIGUSR1). An empty path
// profiles nothing.
func Main(role, path string) int {
	usr := make(chan os.Signal, 2)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		n := 0
		for s := range usr {
			switch {
			case s == syscall.SIGUSR1 && f == nil && path != "":
				var err error
				n++
				if f, err = os.Create(fmt.Sprintf("%s.%d", path, n)); err == nil {
					_ = pprof.StartCPUProfile(f)
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
	}()
	return node.Main(role, os.Args[1:], os.Stderr)
}
