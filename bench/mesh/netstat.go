package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// netCounters are the host's TCP and conntrack counters that tell where
// a new connection stalled (system-wide: /proc/net/snmp, /proc/net/netstat,
// /proc/net/stat/nf_conntrack summed over CPUs), read before and after
// each run so the run's line shows their increase.
//
// The ones printed (when they moved):
//
//	Tcp.RetransSegs, TcpExt.TCPSynRetrans   segments and SYNs sent again (a SYN's first
//	                                        retransmission comes 1 s after it)
//	TcpExt.PAWSTimewait                     SYNs a TIME-WAIT socket refused for an older
//	                                        timestamp (it answers with an ACK, the client
//	                                        resets and sends the SYN again after 1 s)
//	TcpExt.PAWSEstab, PAWSActive,
//	TSEcrRejected                           other timestamp (PAWS) rejections
//	TcpExt.TCPACKSkippedTimeWait            such ACKs a TIME-WAIT socket did not send (rate limit)
//	TcpExt.TCPChallengeACK, Tcp.OutRsts     challenge ACKs, resets sent
//	TcpExt.TW, TWRecycled, TWKilled         TIME-WAIT sockets ended, reused, killed
//	TcpExt.TCPTimeWaitOverflow              TIME-WAIT sockets not made (table full)
//	TcpExt.ListenOverflows, ListenDrops     accept queue full
//	ct.clashres, insert_failed, drop,
//	early_drop, invalid                     conntrack's clashes and drops
type netCounters map[string]int64

var netShown = []string{
	"Tcp.ActiveOpens", "Tcp.RetransSegs", "TcpExt.TCPSynRetrans", "TcpExt.PAWSTimewait", "TcpExt.PAWSEstab",
	"TcpExt.PAWSActive", "TcpExt.TSEcrRejected", "TcpExt.TCPACKSkippedTimeWait", "TcpExt.TCPChallengeACK", "Tcp.OutRsts", "Tcp.AttemptFails",
	"TcpExt.TW", "TcpExt.TWRecycled", "TcpExt.TWKilled", "TcpExt.TCPTimeWaitOverflow",
	"TcpExt.ListenOverflows", "TcpExt.ListenDrops",
	"ct.clashres", "ct.insert_failed", "ct.drop", "ct.early_drop", "ct.invalid",
}

func readNetCounters() netCounters {
	c := netCounters{}
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		readPairedLines(f, c)
	}
	readConntrackStat(c)
	return c
}

// readPairedLines parses the "Prefix: name name ..." / "Prefix: value
// value ..." line pairs of /proc/net/snmp and /proc/net/netstat.
func readPairedLines(path string, c netCounters) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(string(data), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(vals) || names[0] != vals[0] {
			continue
		}
		prefix := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseInt(vals[j], 10, 64); err == nil {
				c[prefix+"."+names[j]] = v
			}
		}
	}
}

// readConntrackStat sums the per-CPU rows (hexadecimal) of
// /proc/net/stat/nf_conntrack; absent without conntrack.
func readConntrackStat(c netCounters) {
	f, err := os.Open("/proc/net/stat/nf_conntrack")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var names []string
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if names == nil {
			names = fs
			continue
		}
		for j := 0; j < len(fs) && j < len(names); j++ {
			if names[j] == "entries" {
				continue // a gauge, the same on every row
			}
			if v, err := strconv.ParseInt(fs[j], 16, 64); err == nil {
				c["ct."+names[j]] += v
			}
		}
	}
}

// delta formats the shown counters that moved from before to c.
func (c netCounters) delta(before netCounters) string {
	var out []string
	for _, k := range netShown {
		if d := c[k] - before[k]; d != 0 {
			out = append(out, fmt.Sprintf("%s=%d", strings.TrimPrefix(strings.TrimPrefix(k, "TcpExt."), "Tcp."), d))
		}
	}
	if len(out) == 0 {
		return "(none moved)"
	}
	return strings.Join(out, " ")
}
