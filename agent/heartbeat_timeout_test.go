package agent

import (
	"testing"
	"time"
)

// One hung heartbeat call must not use up the new leader's grace (two TTLs:
// 3 s at the chaos bed's 500 ms period), and a slow but live call on a
// loaded host must not be cut at short test periods.
func TestHeartbeatCallTimeoutFitsTheGrace(t *testing.T) {
	for _, c := range []struct{ period, want time.Duration }{
		{100 * time.Millisecond, minHeartbeatCall},
		{250 * time.Millisecond, minHeartbeatCall},
		{500 * time.Millisecond, minHeartbeatCall},
		{time.Second, 2 * time.Second},
		{2 * time.Second, heartbeatTimeout},
		{10 * time.Second, heartbeatTimeout},
	} {
		if got := heartbeatCallTimeout(c.period); got != c.want {
			t.Errorf("period %v: heartbeat call timeout %v, want %v", c.period, got, c.want)
		}
	}
	if minHeartbeatCall > 3*time.Second/2 {
		t.Errorf("the floor %v leaves less than half of a 3 s grace", minHeartbeatCall)
	}
}
