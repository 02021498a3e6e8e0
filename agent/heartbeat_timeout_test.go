package agent

import (
	"testing"
	"time"
)

// One hung heartbeat call must not use up the new leader's grace (six
// periods): it is cut at two periods, and never lasts over 3 s.
func TestHeartbeatCallTimeoutFitsTheGrace(t *testing.T) {
	for _, period := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 10 * time.Second} {
		got := heartbeatCallTimeout(period)
		if got > 2*period || got > heartbeatTimeout || got <= 0 {
			t.Errorf("period %v: heartbeat call timeout %v", period, got)
		}
	}
}
