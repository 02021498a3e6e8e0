package docker

import (
	"maps"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/strslice"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// applyExtras maps the container options Compose files bring (stack
// deploy) onto the engine's container and host configs.
func applyExtras(spec *swarmpb.ContainerSpec, cfg *container.Config, hostCfg *container.HostConfig) {
	cfg.Tty = spec.GetTty()
	cfg.OpenStdin = spec.GetOpenStdin()
	cfg.StopSignal = spec.GetStopSignal()
	if spec.GetInit() {
		init := true
		hostCfg.Init = &init
	}
	hostCfg.ReadonlyRootfs = spec.GetReadOnly()
	if len(spec.GetCapAdd()) > 0 {
		hostCfg.CapAdd = strslice.StrSlice(append([]string(nil), spec.GetCapAdd()...))
	}
	if len(spec.GetCapDrop()) > 0 {
		hostCfg.CapDrop = strslice.StrSlice(append([]string(nil), spec.GetCapDrop()...))
	}
	if len(spec.GetSysctls()) > 0 {
		hostCfg.Sysctls = maps.Clone(spec.GetSysctls())
	}
	hostCfg.GroupAdd = append([]string(nil), spec.GetGroupAdd()...)
	for _, u := range spec.GetUlimits() {
		hostCfg.Ulimits = append(hostCfg.Ulimits, &container.Ulimit{Name: u.GetName(), Soft: u.GetSoft(), Hard: u.GetHard()})
	}
	hostCfg.ExtraHosts = append(hostCfg.ExtraHosts, spec.GetExtraHosts()...)
}
