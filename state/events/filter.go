package events

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Types and Actions are the values of the "type" and "event" filters.
var (
	Types   = []string{TypeCluster, TypeNode, TypeService, TypeTask, TypeNetwork, TypeSecret, TypeConfig}
	Actions = []string{ActionCreate, ActionUpdate, ActionRemove}
)

const (
	TypeCluster = "cluster"
	TypeNode    = "node"
	TypeService = "service"
	TypeTask    = "task"
	TypeNetwork = "network"
	TypeSecret  = "secret"
	TypeConfig  = "config"

	ActionCreate = "create"
	ActionUpdate = "update"
	ActionRemove = "remove"
)

// filterKeys are the filter names, Docker's where they exist.
var filterKeys = []string{"type", "event", "id", "name", "service", "node"}

// Limits on a filter list: it arrives from clients.
const (
	maxFilters     = 64
	maxFilterValue = 256
)

// Filter selects events: values of one key are alternatives, different keys
// must all match. The zero Filter matches everything.
type Filter map[string][]string

// ParseFilter reads "key=value" filters, with the same rules as Docker's
// --filter: an unknown key, a missing "=" or an unknown type or event is an
// error naming what is accepted.
func ParseFilter(args []string) (Filter, error) {
	if len(args) > maxFilters {
		return nil, fmt.Errorf("too many filters (%d): at most %d", len(args), maxFilters)
	}
	f := Filter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("invalid filter %q: use key=value with key one of %s", a, strings.Join(filterKeys, ", "))
		}
		if len(v) > maxFilterValue {
			return nil, fmt.Errorf("invalid filter %s: value longer than %d bytes", k, maxFilterValue)
		}
		switch k {
		case "type":
			if !slices.Contains(Types, v) {
				return nil, fmt.Errorf("invalid filter type=%s: the type is one of %s", v, strings.Join(Types, ", "))
			}
		case "event":
			if v == "delete" {
				v = ActionRemove
			}
			if !slices.Contains(Actions, v) {
				return nil, fmt.Errorf("invalid filter event=%s: the event is one of %s", v, strings.Join(Actions, ", "))
			}
		case "id", "name", "service", "node":
		default:
			return nil, fmt.Errorf("unknown filter %q: the filters are %s", k, strings.Join(filterKeys, ", "))
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// String renders f as sorted key=value pairs, for messages.
func (f Filter) String() string {
	var out []string
	for k, vs := range f {
		for _, v := range vs {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Match reports whether f selects ev.
func (f Filter) Match(ev *swarmpb.ClusterEvent) bool {
	for k, vs := range f {
		if !f.matchKey(k, vs, ev) {
			return false
		}
	}
	return true
}

func (f Filter) matchKey(k string, vs []string, ev *swarmpb.ClusterEvent) bool {
	attr := ev.GetAttributes()
	for _, v := range vs {
		switch k {
		case "type":
			if ev.Type == v {
				return true
			}
		case "event":
			if ev.Action == v {
				return true
			}
		case "id":
			if ev.Id == v {
				return true
			}
		case "name":
			if ev.Name == v {
				return true
			}
		case "service":
			// A service's own events and those of its tasks.
			if ev.Type == TypeService && (ev.Id == v || ev.Name == v) {
				return true
			}
			if ev.Type == TypeTask && (attr["service"] == v || attr["service.id"] == v) {
				return true
			}
		case "node":
			// A node's own events and those of the tasks placed on it.
			if ev.Type == TypeNode && (ev.Id == v || ev.Name == v) {
				return true
			}
			if ev.Type == TypeTask && (attr["node"] == v || attr["node.id"] == v) {
				return true
			}
		}
	}
	return false
}
