// Package spec holds the one set of rules for everything a user or a node
// may hand the managers: service specs, node specs and descriptions, names,
// labels, durations, resources and object sizes. The managers enforce them
// on every write (package api) and the CLI calls the same functions before
// it sends anything, so there is no second copy of a rule to drift.
//
// spec depends only on proto and the standard library (and on the
// scheduler's constraint parser); it must not import api, state, manager,
// node or cli.
package spec
