package state

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

type EventKind int

const (
	EventCreate EventKind = iota + 1
	EventUpdate
	EventDelete
)

func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventUpdate:
		return "update"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event describes one applied store action. The objects are the stored
// (shared, immutable) values: clone before modifying.
type Event struct {
	Kind   EventKind
	Index  uint64        // Raft index of the batch that produced the event
	Time   int64         // the batch's write time (unix nanoseconds), the same on every replica
	Object proto.Message // new value; for a delete, the value that was removed
	Old    proto.Message // previous value on update, nil otherwise
}

func (e Event) Cluster() *swarmpb.Cluster { c, _ := e.Object.(*swarmpb.Cluster); return c }
func (e Event) Node() *swarmpb.Node       { n, _ := e.Object.(*swarmpb.Node); return n }
func (e Event) Service() *swarmpb.Service { s, _ := e.Object.(*swarmpb.Service); return s }
func (e Event) Task() *swarmpb.Task       { t, _ := e.Object.(*swarmpb.Task); return t }
func (e Event) Secret() *swarmpb.Secret   { s, _ := e.Object.(*swarmpb.Secret); return s }
func (e Event) Network() *swarmpb.Network { n, _ := e.Object.(*swarmpb.Network); return n }
func (e Event) Config() *swarmpb.Config   { c, _ := e.Object.(*swarmpb.Config); return c }
