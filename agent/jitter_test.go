package agent

import (
	"testing"
	"time"
)

// TestJitterStaysWithinPeriod: an agent never waits longer than the
// period the leader named (its deadline allows only a bounded slack past
// it), nor less than 85 % of it.
func TestJitterStaysWithinPeriod(t *testing.T) {
	for _, p := range []time.Duration{time.Nanosecond, 100 * time.Millisecond, 2 * time.Second} {
		lo := p - p*15/100
		seen := map[time.Duration]bool{}
		for i := 0; i < 1000; i++ {
			j := jitter(p)
			if j > p || j < lo {
				t.Fatalf("jitter(%v) = %v, want within [%v, %v]", p, j, lo, p)
			}
			seen[j] = true
		}
		if p >= 100*time.Millisecond && len(seen) < 10 {
			t.Errorf("jitter(%v) took only %d values in 1000 draws", p, len(seen))
		}
	}
}
