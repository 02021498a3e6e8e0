// Package integration holds tests that run in-process clusters against the
// real Docker engine. They build every image they use locally (no registry
// is reachable), and remove the containers and images they create.
package integration
