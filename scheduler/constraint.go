package scheduler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ErrInvalidConstraint is matched (errors.Is) by every error returned by
// ParseConstraint, ValidateConstraints and ValidateSpreadDescriptors.
var ErrInvalidConstraint = errors.New("invalid constraint")

// ConstraintError describes why a placement expression is not valid. Its
// message is one line, meant to be shown to users as is.
type ConstraintError struct {
	Kind   string // "constraint" or "spread descriptor"
	Expr   string // the expression as the user wrote it
	Reason string
}

func (e *ConstraintError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Kind, excerpt(e.Expr), e.Reason)
}

// excerpt quotes s for a message, escaping control characters and
// shortening it, so that no expression makes a long or multi-line error.
func excerpt(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// Is makes errors.Is(err, ErrInvalidConstraint) true.
func (e *ConstraintError) Is(target error) bool { return target == ErrInvalidConstraint }

// Operator is the comparison of a Constraint.
type Operator int

const (
	OpEqual    Operator = iota // ==
	OpNotEqual                 // !=
)

func (o Operator) String() string {
	if o == OpNotEqual {
		return "!="
	}
	return "=="
}

// attribute kinds a constraint or spread descriptor can refer to.
type attrKind uint8

const (
	attrNodeID attrKind = iota + 1
	attrHostname
	attrRole
	attrOS
	attrArch
	attrNodeLabel
	attrEngineLabel
)

// Constraint is one parsed placement constraint, e.g. node.labels.zone==a.
type Constraint struct {
	Key      string // canonical key: node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME, engine.labels.NAME
	Operator Operator
	Value    string

	kind  attrKind
	label string // label name for node.labels / engine.labels
}

func (c Constraint) String() string { return c.Key + c.Operator.String() + c.Value }

const validKeys = "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME"

// parseKey resolves an attribute key. Prefixes are matched
// case-insensitively; label names are kept as written.
func parseKey(key string) (kind attrKind, label, canonical string, reason string) {
	lower := strings.ToLower(key)
	switch lower {
	case "node.id":
		return attrNodeID, "", lower, ""
	case "node.hostname":
		return attrHostname, "", lower, ""
	case "node.role":
		return attrRole, "", lower, ""
	case "node.platform.os":
		return attrOS, "", lower, ""
	case "node.platform.arch":
		return attrArch, "", lower, ""
	}
	for _, p := range []struct {
		prefix string
		kind   attrKind
	}{{"node.labels.", attrNodeLabel}, {"engine.labels.", attrEngineLabel}} {
		if strings.HasPrefix(lower, p.prefix) {
			name := key[len(p.prefix):]
			if name == "" {
				return 0, "", "", "empty label name"
			}
			return p.kind, name, p.prefix + name, ""
		}
	}
	return 0, "", "", fmt.Sprintf("unknown key %s (expected %s)", excerpt(key), validKeys)
}

// ParseConstraint parses KEY==VALUE or KEY!=VALUE. Spaces around the key and
// the value are ignored.
func ParseConstraint(s string) (Constraint, error) {
	fail := func(reason string) (Constraint, error) {
		return Constraint{}, &ConstraintError{Kind: "constraint", Expr: s, Reason: reason}
	}
	const expected = "expected KEY==VALUE or KEY!=VALUE"
	eq, ne := strings.Index(s, "=="), strings.Index(s, "!=")
	var op Operator
	var i int
	switch {
	case eq < 0 && ne < 0:
		return fail(expected)
	case ne < 0 || (eq >= 0 && eq < ne):
		op, i = OpEqual, eq
	default:
		op, i = OpNotEqual, ne
	}
	key := strings.TrimSpace(s[:i])
	value := strings.TrimSpace(s[i+2:])
	if key == "" || value == "" || strings.ContainsAny(key, "=! \t") || strings.ContainsAny(value, "=\n") {
		return fail(expected)
	}
	kind, label, canonical, reason := parseKey(key)
	if reason != "" {
		return fail(reason)
	}
	if kind == attrRole {
		v := strings.ToLower(value)
		if v != "manager" && v != "worker" {
			return fail("node.role must be manager or worker")
		}
	}
	return Constraint{Key: canonical, Operator: op, Value: value, kind: kind, label: label}, nil
}

// ParseConstraints parses every expression, stopping at the first error.
func ParseConstraints(exprs []string) ([]Constraint, error) {
	if len(exprs) == 0 {
		return nil, nil
	}
	out := make([]Constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := ParseConstraint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ValidateConstraints returns the first invalid constraint's error, or nil.
func ValidateConstraints(exprs []string) error {
	_, err := ParseConstraints(exprs)
	return err
}

// ParseSpreadDescriptor checks a spread preference descriptor such as
// node.labels.zone and returns its canonical form. Any key a constraint
// accepts is accepted.
func ParseSpreadDescriptor(d string) (string, error) {
	key := strings.TrimSpace(d)
	if key == "" || strings.ContainsAny(key, "=! \t") {
		return "", &ConstraintError{Kind: "spread descriptor", Expr: d, Reason: "expected a key such as node.labels.NAME"}
	}
	_, _, canonical, reason := parseKey(key)
	if reason != "" {
		return "", &ConstraintError{Kind: "spread descriptor", Expr: d, Reason: reason}
	}
	return canonical, nil
}

// ValidateSpreadDescriptors checks spread preference descriptors.
func ValidateSpreadDescriptors(descs []string) error {
	for _, d := range descs {
		if _, err := ParseSpreadDescriptor(d); err != nil {
			return err
		}
	}
	return nil
}

// normArch maps common aliases to Go's architecture names.
func normArch(a string) string {
	switch a = strings.ToLower(a); a {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	case "i386", "i686":
		return "386"
	}
	return a
}

func roleName(r swarmpb.NodeRole) string {
	if r == swarmpb.NodeRole_NODE_ROLE_MANAGER {
		return "manager"
	}
	return "worker"
}

// matchValue compares an attribute value with the constraint's.
func (c Constraint) matchValue(v string, ok bool) bool {
	var eq bool
	switch {
	case !ok:
		eq = false // a missing label equals nothing
	case c.kind == attrRole || c.kind == attrOS || c.kind == attrHostname:
		eq = strings.EqualFold(v, c.Value)
	case c.kind == attrArch:
		eq = normArch(v) == normArch(c.Value)
	default:
		eq = v == c.Value
	}
	if c.Operator == OpNotEqual {
		return !eq
	}
	return eq
}

// Match reports whether node satisfies the constraint. engine.labels are not
// reported by nodes, so they behave as absent labels.
func (c Constraint) Match(n *swarmpb.Node) bool {
	v, ok := protoAttr(n, c.kind, c.label)
	return c.matchValue(v, ok)
}

func protoAttr(n *swarmpb.Node, kind attrKind, label string) (string, bool) {
	switch kind {
	case attrNodeID:
		return n.GetId(), true
	case attrHostname:
		return n.GetDescription().GetHostname(), true
	case attrRole:
		return roleName(n.GetRole()), true
	case attrOS:
		return n.GetDescription().GetOs(), true
	case attrArch:
		return n.GetDescription().GetArch(), true
	case attrNodeLabel:
		v, ok := n.GetSpec().GetLabels()[label]
		return v, ok
	}
	return "", false
}
