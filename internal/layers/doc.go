// Package layers holds no code, only a test: the table of raftswarm's
// package layers, lowest first, and a check that no package imports one
// from a higher layer (for example state importing api, or orchestrator
// importing api). It runs with the other tests and from `make lint`.
//
// A new package takes the layer of the closest listed directory above it
// (manager/dispatcher sits with manager); a package under no listed
// directory fails the test until it is placed in the table.
//
// layers imports nothing of raftswarm; its test reads the import graph
// through `go list`.
package layers
