package state

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ErrNetworkInUse marks the removal of a network that a service's spec
// still attaches.
var ErrNetworkInUse = errors.New("network is in use")

// ErrNoSuchNetwork marks a service write that attaches a network the store
// does not hold.
var ErrNoSuchNetwork = errors.New("no such network")

// NetworkInUseError names the services that keep a network from being
// removed. The API checks first, with the same message; this check, where
// batches are applied, catches a service attached meanwhile.
type NetworkInUseError struct {
	Network  string // name
	Services []string
}

func (e *NetworkInUseError) Error() string {
	noun := "services"
	if len(e.Services) == 1 {
		noun = "service"
	}
	return fmt.Sprintf("network %s is in use by %s %s", e.Network, noun, strings.Join(e.Services, ", "))
}

func (e *NetworkInUseError) Unwrap() error { return ErrNetworkInUse }

func attachedNetworks(s *swarmpb.Service) []string {
	var out []string
	for _, a := range s.GetSpec().GetNetworks() {
		out = append(out, a.GetTarget())
	}
	return out
}

// stageServiceNetworks refuses a service write that newly attaches a
// network the store does not hold (as of this batch), so that a network
// removed while a service was being created to use it is not left
// referenced.
func (tx *txn) stageServiceNetworks(k swarmpb.StoreAction_Kind, ev Event) error {
	if ev.Kind == EventDelete {
		return nil
	}
	s := ev.Object.(*swarmpb.Service)
	had := map[string]bool{}
	if ev.Kind == EventUpdate {
		for _, id := range attachedNetworks(ev.Old.(*swarmpb.Service)) {
			had[id] = true
		}
	}
	for _, id := range attachedNetworks(s) {
		if had[id] {
			continue
		}
		if _, ok := tx.networks.get(id); !ok {
			return fmt.Errorf("%s service %s: network %s not found: %w", verb(k), s.GetId(), id, ErrNoSuchNetwork)
		}
	}
	return nil
}

// stageNetworkDelete refuses to delete a network a service's spec (as of
// this batch) attaches.
func (tx *txn) stageNetworkDelete(ev Event) error {
	if ev.Kind != EventDelete {
		return nil
	}
	n := ev.Object.(*swarmpb.Network)
	var users []string
	check := func(s *swarmpb.Service) {
		for _, id := range attachedNetworks(s) {
			if id == n.GetId() {
				users = append(users, s.GetSpec().GetName())
				return
			}
		}
	}
	for id, s := range tx.services.base {
		if _, staged := tx.services.pending[id]; !staged {
			check(s)
		}
	}
	for _, e := range tx.services.pending {
		if !e.deleted {
			check(e.v)
		}
	}
	if len(users) == 0 {
		return nil
	}
	sort.Strings(users)
	name := n.GetSpec().GetName()
	if name == "" {
		name = n.GetId()
	}
	return fmt.Errorf("delete network %s: %w", n.GetId(), &NetworkInUseError{Network: name, Services: users})
}
