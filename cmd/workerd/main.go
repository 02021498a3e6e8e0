// Command workerd runs a raftswarm node. See package node.
package main

import (
	"os"

	"github.com/raftswarm/raftswarm/node"
)

func main() { os.Exit(node.Main("workerd", os.Args[1:], os.Stderr)) }
