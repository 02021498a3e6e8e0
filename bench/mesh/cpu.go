package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
)

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dockerProxyPids finds the docker-proxy processes publishing one of ports.
func dockerProxyPids(ports map[string]bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), "docker-proxy") {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-host-port" && ports[args[i+1]] {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// containerPids is the main process of each container.
func containerPids(ids []string) []int {
	var pids []int
	for _, id := range ids {
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
		if err != nil {
			continue
		}
		if p, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	return pids
}

// cpuGroups samples the CPU time of named groups of processes.
type cpuGroups struct {
	names []string
	pids  map[string][]int
}

type cpuSample struct {
	self, machine time.Duration
	groups        map[string]time.Duration
	at            time.Time
}

func (g *cpuGroups) sample() cpuSample {
	s := cpuSample{self: selfCPU(), machine: proccpu.MachineBusy(), groups: map[string]time.Duration{}, at: time.Now()}
	for _, n := range g.names {
		for _, p := range g.pids[n] {
			s.groups[n] += proccpu.Process(p)
		}
	}
	return s
}
