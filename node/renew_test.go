package node

import (
	"testing"
	"time"
)

func TestCertificateRenewalWindow(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{nb.Add(time.Hour), false},
		{nb.Add(59 * 24 * time.Hour), false},
		{nb.Add(61 * 24 * time.Hour), true},
		{na.Add(time.Hour), true},
	} {
		if got := expiring(nb, na, tc.now); got != tc.want {
			t.Errorf("expiring at %v = %v, want %v", tc.now.Sub(nb), got, tc.want)
		}
	}
}
