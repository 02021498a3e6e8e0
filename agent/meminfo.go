package agent

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// memTotal is the machine's memory, read from /proc/meminfo once: it is
// part of every heartbeat's description and does not change while the
// daemon runs (the engine's own figure, refreshed with its description,
// takes precedence when there is an engine).
var memTotal = sync.OnceValue(readMemTotal)

// readMemTotal reads the machine's memory from /proc/meminfo; 0 if unknown.
func readMemTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
