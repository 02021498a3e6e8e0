package state

import (
	"errors"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ErrVIPConflict marks a service write that gives a service a virtual IP
// another service already holds on the same network.
var ErrVIPConflict = errors.New("virtual IP conflicts with another service")

// VIPConflictError names the address and its holder. Managers allocate
// VIPs from what their store shows; two concurrent allocations can pick the
// same free address, and the store, where writes are applied in order,
// refuses the second: the API then allocates again.
type VIPConflictError struct {
	Key       VIPKey
	OwnerID   string
	OwnerName string
}

func (e *VIPConflictError) Error() string {
	return fmt.Sprintf("virtual IP %s on network %s is already held by service %s", e.Key.Addr, e.Key.NetworkID, e.OwnerName)
}

func (e *VIPConflictError) Unwrap() error { return ErrVIPConflict }

// VIPKey identifies a virtual IP: an address on one network.
type VIPKey struct {
	NetworkID string
	Addr      string
}

func serviceVIPs(s *swarmpb.Service) []VIPKey {
	var out []VIPKey
	for _, v := range s.GetVirtualIps() {
		if v.GetAddr() != "" {
			out = append(out, VIPKey{NetworkID: v.GetNetworkId(), Addr: v.GetAddr()})
		}
	}
	return out
}

// indexVIPs records s as the holder of its VIPs; as for ports, a snapshot
// holding two holders of one VIP keeps the last loaded.
func (d *data) indexVIPs(s *swarmpb.Service) {
	for _, k := range serviceVIPs(s) {
		d.vipOwner[k] = s.GetId()
	}
}

// unindexVIPs only drops entries still pointing at this service (see
// unindexPorts).
func (d *data) unindexVIPs(s *swarmpb.Service) {
	for _, k := range serviceVIPs(s) {
		if d.vipOwner[k] == s.GetId() {
			delete(d.vipOwner, k)
		}
	}
}

func (tx *txn) vipOwner(k VIPKey) string {
	if id, ok := tx.vips[k]; ok {
		return id
	}
	return tx.d.vipOwner[k]
}

// stageServiceVIPs enforces that a VIP on a network belongs to one service,
// as stageServicePorts does for published ports. Only VIPs a write newly
// claims are checked, so a service keeps what it has.
func (tx *txn) stageServiceVIPs(k swarmpb.StoreAction_Kind, ev Event) error {
	s := ev.Object.(*swarmpb.Service)
	id := s.GetId()
	var before, after []VIPKey
	switch ev.Kind {
	case EventCreate:
		after = serviceVIPs(s)
	case EventUpdate:
		before, after = serviceVIPs(ev.Old.(*swarmpb.Service)), serviceVIPs(s)
	case EventDelete:
		before = serviceVIPs(s)
	}
	had := make(map[VIPKey]bool, len(before))
	for _, v := range before {
		had[v] = true
	}
	keep := make(map[VIPKey]bool, len(after))
	for _, v := range after {
		if keep[v] {
			return fmt.Errorf("%s service %s: virtual IP %s on network %s given twice: %w", verb(k), id, v.Addr, v.NetworkID, ErrInvalid)
		}
		keep[v] = true
		if had[v] {
			continue
		}
		if owner := tx.vipOwner(v); owner != "" && owner != id {
			name := owner
			if o, ok := tx.services.get(owner); ok {
				name = o.GetSpec().GetName()
			}
			return fmt.Errorf("%s service %s: %w", verb(k), id, &VIPConflictError{Key: v, OwnerID: owner, OwnerName: name})
		}
	}
	if tx.vips == nil {
		tx.vips = make(map[VIPKey]string)
	}
	for _, v := range before {
		if !keep[v] && tx.vipOwner(v) == id {
			tx.vips[v] = ""
		}
	}
	for _, v := range after {
		if tx.vipOwner(v) == "" {
			tx.vips[v] = id
		}
	}
	return nil
}
