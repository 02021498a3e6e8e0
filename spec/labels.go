package spec

import (
	"fmt"
	"sort"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Label limits, for service, container and node labels alike.
const (
	MaxLabels        = 1000
	MaxLabelKeyLen   = 256
	MaxLabelValueLen = 4096
)

// ValidateLabels checks one label map; what names it in messages ("label",
// "container label", "node label"). Keys are non-empty, without whitespace,
// control characters or '='; values are one printable line (empty allowed).
func ValidateLabels(what string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fieldErr(what+"s", "count %d exceeds the limit of %d", len(labels), MaxLabels)
	}
	// Sorted, so that the error reported for a map with several bad labels
	// is always the same one.
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := checkText(what+" key", k, true, MaxLabelKeyLen, wordText); err != nil {
			return err
		}
		if strings.Contains(k, "=") {
			return fieldErr(what+" key", "%s contains '='", quote(k))
		}
		if err := checkText(fmt.Sprintf("%s %s value", what, quote(k)), labels[k], false, MaxLabelValueLen, lineText); err != nil {
			return err
		}
	}
	return nil
}

// ValidateNodeSpec checks the part of a node that users set (node update):
// the role and availability enums and the labels.
func ValidateNodeSpec(s *swarmpb.NodeSpec) error {
	if s == nil {
		return nil
	}
	if _, ok := swarmpb.NodeRole_name[int32(s.DesiredRole)]; !ok {
		return fieldErr("node role", "%d is unknown", int32(s.DesiredRole))
	}
	if _, ok := swarmpb.NodeAvailability_name[int32(s.Availability)]; !ok {
		return fieldErr("node availability", "%d is unknown", int32(s.Availability))
	}
	return ValidateLabels("node label", s.Labels)
}
