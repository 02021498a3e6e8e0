// Command swarmctl is the command-line client of a raftswarm daemon.
package main

import (
	"os"

	"github.com/raftswarm/raftswarm/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
