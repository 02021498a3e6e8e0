// Package version says which build of raftswarm is running, for
// 'swarmctl version', Local.Info and the node description. The release
// build stamps Version and Commit with the linker:
//
//	go build -ldflags "-X github.com/raftswarm/raftswarm/internal/version.Version=v1.2.3 \
//	    -X github.com/raftswarm/raftswarm/internal/version.Commit=abc1234"
//
// (make build does, from git describe); otherwise they come from the
// module and VCS information Go embeds in every binary.
package version

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set by the linker; empty in a plain go build.
var (
	Version string
	Commit  string
)

// API is the version of the gRPC API (the proto package raftswarm.v1).
const API = "v1"

// Info describes this binary.
type Info struct {
	Version   string // release version, or the module version, or "dev"
	Commit    string // VCS revision, "+dirty" when built from a modified tree; may be empty
	GoVersion string
	API       string
	OS, Arch  string
}

// buildInfo is debug.ReadBuildInfo, read once: it parses the binary's
// build information on every call, and Get is called on every heartbeat
// of every node (agent.Describe): 1,000 simulated nodes spent 2 % of their
// process's CPU there (BENCHMARKS.md section 14, branch scale-tp).
var buildInfo = sync.OnceValues(debug.ReadBuildInfo)

// Get returns this binary's Info.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), API: API, OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := buildInfo()
	if ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		if i.Commit == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" && dirty {
				rev += "+dirty"
			}
			i.Commit = rev
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}

// String is the one-line form nodes report: "VERSION (COMMIT)".
func (i Info) String() string {
	if i.Commit == "" {
		return i.Version
	}
	return i.Version + " (" + i.Commit + ")"
}
