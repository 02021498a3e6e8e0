package state

import (
	"errors"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ErrPortConflict marks a service write that claims a published port
// another service already publishes.
var ErrPortConflict = errors.New("published port conflicts with another service")

// PortConflictError names the port and the service that owns it. Its
// message is the one the user sees.
type PortConflictError struct {
	Port      uint32
	Protocol  string
	OwnerID   string
	OwnerName string
}

func (e *PortConflictError) Error() string {
	return fmt.Sprintf("port %d/%s is already published by service %s", e.Port, e.Protocol, e.OwnerName)
}

func (e *PortConflictError) Unwrap() error { return ErrPortConflict }

// PortKey identifies a published port in the port index.
type PortKey struct {
	Port     uint32
	Protocol string
}

// publishedPorts lists the ports a spec publishes (published port 0 is
// not a claim: nothing is bound on the cluster's side).
func publishedPorts(s *swarmpb.Service) []PortKey {
	var out []PortKey
	for _, p := range s.GetSpec().GetPorts() {
		if p.GetPublishedPort() != 0 {
			out = append(out, PortKey{Port: p.GetPublishedPort(), Protocol: p.GetProtocol()})
		}
	}
	return out
}

// indexPorts records s as the owner of its ports. The batch that wrote s
// has checked them; a snapshot written before ports were checked here may
// hold two owners of a port, and the last one loaded (by ID) then wins.
func (d *data) indexPorts(s *swarmpb.Service) {
	for _, k := range publishedPorts(s) {
		d.portOwner[k] = s.GetId()
	}
}

// unindexPorts only drops ports still pointing at this service: in a batch
// that moves a port from one service to another, commit order is map
// order, and the new owner may already have been indexed.
func (d *data) unindexPorts(s *swarmpb.Service) {
	for _, k := range publishedPorts(s) {
		if d.portOwner[k] == s.GetId() {
			delete(d.portOwner, k)
		}
	}
}

func (tx *txn) portOwner(k PortKey) string {
	if id, ok := tx.ports[k]; ok {
		return id
	}
	return tx.d.portOwner[k]
}

// stageServicePorts enforces that a published port/protocol belongs to
// one service. Checking here, where every replica applies the batch, is
// what makes it hold under concurrent creates: a check before the write
// would let two of them claim the same port. Only ports a write newly
// claims are checked, so a service keeps what it has.
func (tx *txn) stageServicePorts(k swarmpb.StoreAction_Kind, ev Event) error {
	s := ev.Object.(*swarmpb.Service)
	id := s.GetId()
	var before, after []PortKey
	switch ev.Kind {
	case EventCreate:
		after = publishedPorts(s)
	case EventUpdate:
		before, after = publishedPorts(ev.Old.(*swarmpb.Service)), publishedPorts(s)
	case EventDelete:
		before = publishedPorts(s)
	}
	had := make(map[PortKey]bool, len(before))
	for _, p := range before {
		had[p] = true
	}
	keep := make(map[PortKey]bool, len(after))
	for _, p := range after {
		keep[p] = true
		if had[p] {
			continue
		}
		if owner := tx.portOwner(p); owner != "" && owner != id {
			name := owner
			if o, ok := tx.services.get(owner); ok {
				name = o.GetSpec().GetName()
			}
			return fmt.Errorf("%s service %s: %w", verb(k), id,
				&PortConflictError{Port: p.Port, Protocol: p.Protocol, OwnerID: owner, OwnerName: name})
		}
	}
	if tx.ports == nil {
		tx.ports = make(map[PortKey]string)
	}
	for _, p := range before {
		if !keep[p] && tx.portOwner(p) == id {
			tx.ports[p] = ""
		}
	}
	for _, p := range after {
		if tx.portOwner(p) == "" {
			tx.ports[p] = id
		}
	}
	return nil
}
