package cli

import (
	"fmt"
	"slices"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// listFilters are parsed --filter flags: Docker's semantics, values of one
// key are alternatives, different keys must all match.
type listFilters map[string][]string

// parseListFilters reads key=value filters, accepting only the keys
// Docker's command of the same name accepts.
func parseListFilters(command string, allowed []string, args []string) (listFilters, error) {
	f := listFilters{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --filter %q for %s: use key=value with key one of %s", a, command, strings.Join(allowed, ", "))
		}
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown --filter %q for %s: the filters are %s", k, command, strings.Join(allowed, ", "))
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// match reports whether every key of f has a value that test accepts.
func (f listFilters) match(test func(key, value string) bool) bool {
	for k, vs := range f {
		if !slices.ContainsFunc(vs, func(v string) bool { return test(k, v) }) {
			return false
		}
	}
	return true
}

// matchLabel is Docker's label filter: "KEY" (present) or "KEY=VALUE".
func matchLabel(labels map[string]string, v string) bool {
	k, want, withValue := strings.Cut(v, "=")
	got, ok := labels[k]
	return ok && (!withValue || got == want)
}

var nodeLsFilters = []string{"id", "label", "membership", "name", "node.label", "role"}

// nodeFilterMatch applies one node ls filter. The node's labels are its
// spec's (raftswarm nodes have no engine labels), so label and node.label
// test the same map. Every node of a raftswarm cluster is accepted: a
// pending membership matches none.
func nodeFilterMatch(n *swarmpb.Node, k, v string) bool {
	switch k {
	case "id":
		return strings.HasPrefix(n.GetId(), v)
	case "name":
		return strings.HasPrefix(n.GetDescription().GetHostname(), v)
	case "label", "node.label":
		return matchLabel(n.GetSpec().GetLabels(), v)
	case "membership":
		return strings.EqualFold(v, "accepted")
	case "role":
		return strings.EqualFold(v, roleString(n.GetRole()))
	}
	return false
}

// validateNodeFilters checks the values that have a fixed set.
func validateNodeFilters(f listFilters) error {
	for _, v := range f["role"] {
		if v != "manager" && v != "worker" {
			return fmt.Errorf("invalid --filter role=%s: the role is manager or worker", v)
		}
	}
	for _, v := range f["membership"] {
		if v != "accepted" && v != "pending" {
			return fmt.Errorf("invalid --filter membership=%s: the membership is accepted or pending", v)
		}
	}
	return nil
}

var serviceLsFilters = []string{"id", "label", "mode", "name"}

func serviceFilterMatch(s *swarmpb.Service, k, v string) bool {
	switch k {
	case "id":
		return strings.HasPrefix(s.GetId(), v)
	case "name":
		return strings.HasPrefix(s.GetSpec().GetName(), v)
	case "label":
		return matchLabel(s.GetSpec().GetLabels(), v)
	case "mode":
		return strings.EqualFold(v, modeString(s.GetSpec().GetMode()))
	}
	return false
}

func validateServiceFilters(f listFilters) error {
	for _, v := range f["mode"] {
		if v != "replicated" && v != "global" {
			return fmt.Errorf("invalid --filter mode=%s: the mode is replicated or global", v)
		}
	}
	return nil
}

var taskPsFilters = []string{"desired-state", "id", "name", "node"}

// taskFilterMatch applies one service ps / node ps filter to a row's task.
func taskFilterMatch(t *swarmpb.Task, nodeNames map[string]string, k, v string) bool {
	switch k {
	case "desired-state":
		return strings.EqualFold(v, stateWord(t.GetDesiredState()))
	case "id":
		return strings.HasPrefix(t.GetId(), v)
	case "name":
		name := fmt.Sprintf("%s.%d", t.GetServiceName(), t.GetSlot())
		if t.GetSlot() == 0 {
			name = t.GetServiceName() + "." + t.GetNodeId()
		}
		return strings.HasPrefix(name, v)
	case "node":
		return t.GetNodeId() == v || (v != "" && nodeNames[t.GetNodeId()] == v)
	}
	return false
}

func validateTaskFilters(f listFilters) error {
	for _, v := range f["desired-state"] {
		switch strings.ToLower(v) {
		case "running", "shutdown", "accepted":
		default:
			return fmt.Errorf("invalid --filter desired-state=%s: the desired state is running, shutdown or accepted", v)
		}
	}
	return nil
}

// filterTasks parses and applies task filters (service ps, node ps, stack ps).
func filterTasks(command string, args []string, tasks []*swarmpb.Task, nodeNames map[string]string) ([]*swarmpb.Task, error) {
	f, err := parseTaskFilterArgs(command, args)
	if err != nil {
		return nil, err
	}
	var out []*swarmpb.Task
	for _, t := range tasks {
		if f.match(func(k, v string) bool { return taskFilterMatch(t, nodeNames, k, v) }) {
			out = append(out, t)
		}
	}
	return out, nil
}

func parseTaskFilterArgs(command string, args []string) (listFilters, error) {
	f, err := parseListFilters(command, taskPsFilters, args)
	if err != nil {
		return nil, err
	}
	return f, validateTaskFilters(f)
}
