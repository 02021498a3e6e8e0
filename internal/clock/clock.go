// Package clock is the wall clock of the code whose behaviour depends on
// wall-clock time (timestamps stored in Raft or compared with stored ones,
// certificate validity): Now is time.Now, shifted by a test offset.
//
// The offset is a test hook for the chaos bed, which jumps one node's clock
// (Go reads time through the vDSO, so libfaketime cannot): when the
// environment variable RAFTSWARM_TEST_CLOCK_FILE names a file at start, its
// content (a Go duration such as "-5m", or empty for none) is read every
// 100 ms and added to every Now. Now keeps time.Now's monotonic reading, so
// durations between two Now values are unaffected by a jump, as with a
// real wall-clock jump; only wall times (UnixNano, certificate checks)
// move. Without the variable Now is time.Now.
package clock

import (
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// EnvFile names the offset file (tests only).
const EnvFile = "RAFTSWARM_TEST_CLOCK_FILE"

var offset atomic.Int64 // nanoseconds

func init() {
	if path := os.Getenv(EnvFile); path != "" {
		go follow(path, nil)
	}
}

// follow reads the offset from path every 100 ms until stop is closed.
func follow(path string, stop <-chan struct{}) {
	read := func() {
		data, err := os.ReadFile(path)
		if err != nil {
			return
		}
		s := strings.TrimSpace(string(data))
		if s == "" {
			offset.Store(0)
			return
		}
		if d, err := time.ParseDuration(s); err == nil {
			offset.Store(int64(d))
		}
	}
	read()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			read()
		}
	}
}

// Now is the wall clock: time.Now plus the test offset, if any.
func Now() time.Time {
	if off := offset.Load(); off != 0 {
		return time.Now().Add(time.Duration(off))
	}
	return time.Now()
}

// Since is Now().Sub(t).
func Since(t time.Time) time.Duration { return Now().Sub(t) }
