// Package dial keeps mutual-TLS gRPC connections to managers, one per
// address (Pool), shared by the node's agent (as its agent.ConnSource) and
// the manager's forwarding paths, and chooses the local address a node
// dials from (SourceIP).
//
// dial imports only ca, proto and gRPC; it must not import agent, node,
// manager, api or anything above them.
package dial
