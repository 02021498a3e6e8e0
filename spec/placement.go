package spec

import "github.com/raftswarm/raftswarm/scheduler"

// ParseConstraint checks a placement constraint (KEY==VALUE or KEY!=VALUE)
// with the scheduler's own parser, the one that later matches it against
// nodes, and returns its canonical form (e.g. "node.labels.zone!=a" for
// " node.labels.zone != a"). The CLI stores what it returns.
func ParseConstraint(s string) (string, error) {
	if err := checkText("constraint", s, true, MaxConstraintLen, lineText); err != nil {
		return "", err
	}
	c, err := scheduler.ParseConstraint(s)
	if err != nil {
		return "", &FieldError{Field: "constraint", Msg: err.Error()}
	}
	return c.String(), nil
}

// ParseSpreadDescriptor checks a spread preference's descriptor (any key a
// constraint accepts, e.g. node.labels.zone) with the scheduler's parser and
// returns its canonical form.
func ParseSpreadDescriptor(s string) (string, error) {
	if err := checkText("placement preference", s, true, MaxConstraintLen, lineText); err != nil {
		return "", err
	}
	d, err := scheduler.ParseSpreadDescriptor(s)
	if err != nil {
		return "", &FieldError{Field: "placement preference", Msg: err.Error()}
	}
	return d, nil
}
