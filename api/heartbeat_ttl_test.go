package api

import (
	"testing"
	"time"
)

// TestHeartbeatTTL pins the node-loss arithmetic documented in
// BENCHMARKS.md ("An idle cluster"): a period plus a slack of two periods,
// at most HeartbeatSlack, and a period stretched to keep the leader's
// heartbeat rate under MaxHeartbeatRate.
func TestHeartbeatTTL(t *testing.T) {
	d := &Dispatcher{}
	cases := []struct {
		nodes       int
		base        time.Duration
		period, ttl time.Duration
	}{
		{5, 0, 2 * time.Second, 4 * time.Second},
		{100, 0, 2 * time.Second, 4 * time.Second},
		{1000, 0, 5 * time.Second, 7 * time.Second},
		{5, 100 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}, // test clusters
		{5, 500 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond},
		{5, time.Second, time.Second, 3 * time.Second},
	}
	for _, c := range cases {
		d.Period = c.base
		if got := d.period(c.nodes); got != c.period {
			t.Errorf("%d nodes, base %v: period %v, want %v", c.nodes, c.base, got, c.period)
		}
		if got := d.ttl(c.nodes); got != c.ttl {
			t.Errorf("%d nodes, base %v: TTL %v, want %v", c.nodes, c.base, got, c.ttl)
		}
	}
}
