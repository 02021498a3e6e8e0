package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memSample is one reading: the process's resident set and the Go heap in
// use (runtime/metrics, which does not stop the world).
type memSample struct{ rss, heap uint64 }

// memSampler records the peak of each, every 100 ms, since the last reset.
type memSampler struct {
	mu  sync.Mutex
	max memSample
}

func startMemSampler() *memSampler {
	s := &memSampler{}
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
	m := make([]metrics.Sample, len(heapMetric))
	copy(m, heapMetric)
	metrics.Read(m)
	cur := memSample{rss: rss(), heap: m[0].Value.Uint64() + m[1].Value.Uint64()}
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

// rss reads VmRSS from /proc/self/status, in bytes (0 if unreadable).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
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
