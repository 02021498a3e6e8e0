package agent

import (
	"log/slog"
	"time"
)

// outage logs one kind of failing link to the managers (heartbeats, the
// task session, applying assignments) so that a node cut off is visible at
// the default level without a line per retry: Warn at the first failure of
// an outage, Debug for each retry during it, Info when it ends. Not safe
// for concurrent use: each loop owns its own.
type outage struct {
	log      *slog.Logger
	what     string // "heartbeats", "task session", ...
	since    time.Time
	failures int
}

// fail records a failure; args are slog attributes naming the manager and
// the error.
func (o *outage) fail(args ...any) {
	o.failures++
	if o.failures == 1 {
		o.since = time.Now()
		o.log.Warn(o.what+" failing; retrying", args...)
		return
	}
	o.log.Debug(o.what+" still failing", append(args, "failures", o.failures)...)
}

// ok records a success, ending an outage if one was under way.
func (o *outage) ok() {
	if o.failures == 0 {
		return
	}
	o.log.Info(o.what+" recovered", "after", time.Since(o.since).Round(time.Millisecond), "failures", o.failures)
	o.failures = 0
}
