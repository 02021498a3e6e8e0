package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/bench/internal/proccpu"
)

// memSample is one reading: the process's resident set and, for this
// process, the Go heap in use (runtime/metrics, which does not stop the
// world).
type memSample struct{ rss, heap uint64 }

// memSampler records the peak of each, every 100 ms, since the last
// reset. The process is pid() at each sample (the leader's can change);
// the heap is read only when it is this process (self).
type memSampler struct {
	pid  func() int
	self bool
	mu   sync.Mutex
	max  memSample
}

func startMemSampler(pid func() int, self bool) *memSampler {
	s := &memSampler{pid: pid, self: self}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for range t.C {
			s.sample()
		}
	}()
	return s
}

var heapMetric = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}

func (s *memSampler) sample() {
	cur := memSample{rss: rss(s.pid())}
	if s.self {
		m := make([]metrics.Sample, len(heapMetric))
		copy(m, heapMetric)
		metrics.Read(m)
		cur.heap = m[0].Value.Uint64() + m[1].Value.Uint64()
	}
	s.mu.Lock()
	s.max.rss = max(s.max.rss, cur.rss)
	s.max.heap = max(s.max.heap, cur.heap)
	s.mu.Unlock()
}

func (s *memSampler) reset() {
	s.mu.Lock()
	s.max = memSample{}
	s.mu.Unlock()
	s.sample()
}

func (s *memSampler) peak() memSample {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// rss reads VmRSS from /proc/PID/status, in bytes (0 if unreadable).
func rss(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }

// cpuMeter is the CPU time the process pid() used since the last reset,
// in cores (CPU seconds per second). A leader change between reset and
// reading counts only the process leading at the end.
type cpuMeter struct {
	pid   func() int
	mu    sync.Mutex
	proc  int
	start time.Duration
	at    time.Time
}

func (c *cpuMeter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proc = c.pid()
	c.start = proccpu.Process(c.proc)
	c.at = time.Now()
}

func (c *cpuMeter) cores() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pid()
	start := c.start
	if p != c.proc {
		start = 0 // a new leader: its CPU since it started
	}
	wall := time.Since(c.at)
	if p <= 0 || wall <= 0 {
		return 0
	}
	return (proccpu.Process(p) - start).Seconds() / wall.Seconds()
}
