package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is USER_HZ, 100 on every Linux that matters.
const clkTck = 100

// procCPU is the user+system CPU time a process has used, from
// /proc/PID/stat (0 when it is gone).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clkTck
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time all cores spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // steal, guest, guest_nice: guest is already in user
			break
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clkTck
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
	s := cpuSample{self: selfCPU(), machine: machineBusy(), groups: map[string]time.Duration{}, at: time.Now()}
	for _, n := range g.names {
		for _, p := range g.pids[n] {
			s.groups[n] += procCPU(p)
		}
	}
	return s
}
