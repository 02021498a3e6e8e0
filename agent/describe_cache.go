package agent

import (
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// descRefresh is how long an agent may leave its unchanged description out
// of its heartbeats before it sends it once more anyway (a safety net: a
// store restored from a backup, a manager that lost it).
const descRefresh = 5 * time.Minute

// descCache decides whether a heartbeat carries the node description. A
// heartbeat used to carry it every period, and the leader compared it
// with the stored one every time; now it goes out when it changed since
// the leader last confirmed it stored (HeartbeatResponse.
// description_current), to a leader other than the one that confirmed it,
// after a refusal (the leader's write budget), and every descRefresh.
// Only the heartbeat loop uses it.
type descCache struct {
	acked *swarmpb.NodeDescription // the last description a leader confirmed
	addr  string                   // that leader
	at    time.Time                // when it was sent
}

// toSend returns what the next heartbeat to addr carries: d, or nil when
// the leader at addr already stores d.
func (c *descCache) toSend(d *swarmpb.NodeDescription, addr string, now time.Time) *swarmpb.NodeDescription {
	if c.acked != nil && c.addr == addr && now.Sub(c.at) < descRefresh && proto.Equal(c.acked, d) {
		return nil
	}
	return d
}

// answered records the leader's answer to a heartbeat that carried sent
// (nil if it carried none).
func (c *descCache) answered(sent *swarmpb.NodeDescription, addr string, current bool, now time.Time) {
	switch {
	case !current:
		c.acked = nil // send it again next time
	case sent != nil:
		c.acked, c.addr, c.at = sent, addr, now
	}
}

// failed forgets the confirmation after a heartbeat that got no answer:
// the next leader may be another one.
func (c *descCache) failed() { c.acked = nil }
