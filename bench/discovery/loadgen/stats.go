package main

import (
	"sort"
	"time"
)

// window is a measured interval: only requests that complete in
// [from, to) count, so the warm-up and the requests still in flight when
// the run ends are left out.
type window struct{ from, to time.Time }

// in reports whether a request that completed at t counts.
func (w window) in(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

// Summary is the JSON result of one load run.
type Summary struct {
	URL       string         `json:"url"`
	Workers   int            `json:"workers"`
	KeepAlive bool           `json:"keepalive"`
	Seconds   float64        `json:"seconds"`
	Requests  int            `json:"requests"` // successful, in the window
	Errors    int            `json:"errors"`   // failed, in the window
	RPS       float64        `json:"rps"`
	P50ms     float64        `json:"p50_ms"`
	P90ms     float64        `json:"p90_ms"`
	P99ms     float64        `json:"p99_ms"`
	MaxMs     float64        `json:"max_ms"`
	ErrSample map[string]int `json:"err_sample,omitempty"`
	// The measured window on the wall clock (Unix ns), so that a caller
	// outside the container can match its own samples (CPU time) to it.
	FromNs int64 `json:"from_ns"`
	ToNs   int64 `json:"to_ns"`
}

// summarize computes throughput and latency percentiles of the successful
// requests' latencies over a window of length d. lat is sorted in place.
func summarize(lat []time.Duration, failed int, d time.Duration) Summary {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := Summary{Requests: len(lat), Errors: failed, Seconds: d.Seconds()}
	if d > 0 {
		s.RPS = float64(len(lat)) / d.Seconds()
	}
	s.P50ms = msOf(percentile(lat, 0.50))
	s.P90ms = msOf(percentile(lat, 0.90))
	s.P99ms = msOf(percentile(lat, 0.99))
	s.MaxMs = msOf(percentile(lat, 1))
	return s
}

// percentile is the nearest-rank percentile of sorted durations: the
// smallest value with at least p of the values at or below it (0 for
// none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
