package spec

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Limits of the container options Compose files bring (stacks).
const (
	MaxCapabilities = 64
	MaxSysctls      = 100
	MaxSysctlLen    = 1024 // one KEY=VALUE
	MaxGroups       = 64
	MaxUlimits      = 32
	MaxExtraHosts   = 100
)

var (
	capabilityRE = regexp.MustCompile(`^(?i:CAP_)?[A-Za-z_]{1,40}$`)
	sysctlRE     = regexp.MustCompile(`^[a-z0-9_]+(?:[./][a-z0-9_-]+)*$`)
	signalRE     = regexp.MustCompile(`^(?:SIG)?[A-Z][A-Z0-9+-]{0,15}$`)
	hostRE       = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)
)

// ulimitNames are the limits Docker knows.
var ulimitNames = map[string]bool{
	"as": true, "core": true, "cpu": true, "data": true, "fsize": true, "locks": true, "memlock": true,
	"msgqueue": true, "nice": true, "nofile": true, "nproc": true, "rss": true, "rtprio": true,
	"rttime": true, "sigpending": true, "stack": true,
}

// validateContainerExtras checks ContainerSpec's Compose-born options:
// stop signal, capabilities, sysctls, groups, ulimits and extra hosts.
func validateContainerExtras(c *swarmpb.ContainerSpec) error {
	if s := c.GetStopSignal(); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			if n < 1 || n > 64 {
				return fieldErr("stop signal", "%d is out of range: use 1-64 or a name like SIGTERM", n)
			}
		} else if !signalRE.MatchString(s) {
			return fieldErr("stop signal", "%s is invalid: use a name like SIGTERM or a number", quote(s))
		}
	}
	for _, caps := range []struct {
		field string
		list  []string
	}{{"cap_add", c.GetCapAdd()}, {"cap_drop", c.GetCapDrop()}} {
		if len(caps.list) > MaxCapabilities {
			return fieldErr(caps.field, "has %d capabilities: at most %d allowed", len(caps.list), MaxCapabilities)
		}
		for _, cp := range caps.list {
			if !capabilityRE.MatchString(cp) {
				return fieldErr(caps.field, "%s is not a capability name (e.g. NET_ADMIN, ALL)", quote(cp))
			}
		}
	}
	if len(c.GetSysctls()) > MaxSysctls {
		return fieldErr("sysctls", "has %d entries: at most %d allowed", len(c.GetSysctls()), MaxSysctls)
	}
	for k, v := range c.GetSysctls() {
		if !sysctlRE.MatchString(k) || len(k)+len(v)+1 > MaxSysctlLen {
			return fieldErr("sysctl", "%s is not a kernel parameter name (e.g. net.core.somaxconn)", quote(k))
		}
		if why := badChar(v, wordText); why != "" {
			return fieldErr(fmt.Sprintf("sysctl %s value", quote(k)), "%s", why)
		}
	}
	if len(c.GetGroupAdd()) > MaxGroups {
		return fieldErr("group_add", "has %d groups: at most %d allowed", len(c.GetGroupAdd()), MaxGroups)
	}
	for _, g := range c.GetGroupAdd() {
		if err := checkText("group_add group", g, true, MaxUserLen, wordText); err != nil {
			return err
		}
	}
	if len(c.GetUlimits()) > MaxUlimits {
		return fieldErr("ulimits", "has %d entries: at most %d allowed", len(c.GetUlimits()), MaxUlimits)
	}
	seen := map[string]bool{}
	for _, u := range c.GetUlimits() {
		if !ulimitNames[u.GetName()] {
			return fieldErr("ulimit", "%s is unknown: use one of nofile, nproc, core, memlock, stack, ...", quote(u.GetName()))
		}
		if seen[u.GetName()] {
			return fieldErr("ulimit", "%s is given twice", quote(u.GetName()))
		}
		seen[u.GetName()] = true
		if u.GetSoft() < -1 || u.GetHard() < -1 || (u.GetHard() != -1 && u.GetSoft() > u.GetHard()) {
			return fieldErr(fmt.Sprintf("ulimit %s", u.GetName()), "soft %d, hard %d: soft must be at most hard (-1: unlimited)", u.GetSoft(), u.GetHard())
		}
	}
	if len(c.GetExtraHosts()) > MaxExtraHosts {
		return fieldErr("extra_hosts", "has %d entries: at most %d allowed", len(c.GetExtraHosts()), MaxExtraHosts)
	}
	for _, h := range c.GetExtraHosts() {
		host, ip, ok := strings.Cut(h, ":")
		if !ok || !hostRE.MatchString(host) || net.ParseIP(ip) == nil {
			return fieldErr("extra_hosts", "%s is not HOST:IP", quote(h))
		}
	}
	return nil
}
