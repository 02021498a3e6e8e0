package spec

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// Service spec limits. They bound what one accepted spec can cost the
// managers (memory, Raft log, list replies) and the nodes; the README's
// "Limits" paragraph lists them for users.
const (
	MaxObjectSize = 1 << 20 // a whole spec, encoded

	MaxServiceNameLen = 63
	MaxImageLen       = 512

	MaxEnv       = 1000
	MaxEnvLen    = 32 << 10 // one KEY=VALUE
	MaxArgs      = 1000     // entrypoint words, args, health check words: each list
	MaxArgLen    = 64 << 10 // one word
	MaxHostname  = 64       // what sethostname accepts
	MaxUserLen   = 256
	MaxPathLen   = 4096
	MaxMounts    = 100
	MaxVolumeLen = 255
	MaxPorts     = 1000

	MaxConstraints          = 100
	MaxConstraintLen        = 1024
	MaxSpreadPrefs          = 10
	MaxDuration             = 7 * 24 * time.Hour // every duration of a spec
	MinHealthInterval       = time.Millisecond   // interval, timeout and start period, when set
	MaxNanoCPUs       int64 = 4096 * 1e9         // 4096 CPUs
	MaxMemoryBytes    int64 = 1 << 50            // 1 PiB
	MaxHealthRetries        = 1000
)

// serviceNameRE is Docker's rule for service names: a DNS label made of
// letters, digits, '-' and '_', starting and ending with a letter or digit.
// Dots are refused: a container is named SERVICE.SLOT.TASKID.
var serviceNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[a-zA-Z0-9]+)*$`)

// volumeNameRE is Docker's rule for named volumes.
var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidateNewServiceSpec checks the spec of a service to be created. It is
// ValidateServiceSpec, except that the name may be empty: the managers then
// give the service a generated name, as Docker does.
func ValidateNewServiceSpec(s *swarmpb.ServiceSpec, maxReplicas uint64) error {
	if s != nil && s.Name == "" {
		named := proto.Clone(s).(*swarmpb.ServiceSpec)
		named.Name = "unnamed"
		s = named
	}
	return ValidateServiceSpec(s, maxReplicas)
}

// ValidateServiceSpec checks every field of a service spec. maxReplicas is
// the cluster's replica cap (MaxReplicas of its settings); the managers
// always pass it. A client that does not know the cluster's setting passes
// 0 to skip that one check and leaves it to the managers, which have the
// last word on every rule anyway.
func ValidateServiceSpec(s *swarmpb.ServiceSpec, maxReplicas uint64) error {
	if s == nil {
		return fieldErr("service spec", "is required")
	}
	if err := validateServiceName(s.Name); err != nil {
		return err
	}
	if err := ValidateLabels("label", s.Labels); err != nil {
		return err
	}
	if err := validateContainer(s.Container); err != nil {
		return err
	}
	switch s.Mode {
	case swarmpb.ServiceMode_SERVICE_MODE_REPLICATED:
		if maxReplicas > 0 && s.Replicas > maxReplicas {
			return fieldErr("replicas", "%d exceeds the cluster's limit of %d (swarmctl swarm update --max-replicas)", s.Replicas, maxReplicas)
		}
	case swarmpb.ServiceMode_SERVICE_MODE_GLOBAL:
		if s.Replicas != 0 {
			return fieldErr("replicas", "cannot be set for a global service")
		}
		if s.GetPlacement().GetMaxReplicasPerNode() != 0 {
			return fieldErr("replicas max per node", "cannot be set for a global service (it runs one task per node)")
		}
	default:
		return fieldErr("mode", "%d is unknown: use replicated or global", int32(s.Mode))
	}
	if err := validateRestart(s.Restart); err != nil {
		return err
	}
	if err := validatePlacement(s.Placement); err != nil {
		return err
	}
	if err := validateResources(s.Resources); err != nil {
		return err
	}
	if err := validatePorts(s.Ports); err != nil {
		return err
	}
	if err := validateServiceNetworks(s.Networks); err != nil {
		return err
	}
	if err := validateUpdateConfig("update", s.Update); err != nil {
		return err
	}
	if err := validateUpdateConfig("rollback", s.Rollback); err != nil {
		return err
	}
	if n := proto.Size(s); n > MaxObjectSize {
		return fieldErr("service spec", "is %d bytes encoded: at most %d allowed", n, MaxObjectSize)
	}
	return nil
}

func validateServiceName(name string) error {
	if name == "" {
		return fieldErr("service name", "is required (--name)")
	}
	if len(name) > MaxServiceNameLen || !serviceNameRE.MatchString(name) {
		return fieldErr("service name", "%s is invalid: use 1-%d letters, digits, '-' or '_', starting and ending with a letter or digit", quote(name), MaxServiceNameLen)
	}
	return nil
}

func validateContainer(c *swarmpb.ContainerSpec) error {
	if c == nil {
		return fieldErr("image", "is required")
	}
	if err := checkText("image", c.Image, true, MaxImageLen, wordText); err != nil {
		return err
	}
	if err := ValidateImageID(c.ImageId); err != nil {
		return err
	}
	if err := validateWords("entrypoint", c.Command); err != nil {
		return err
	}
	if err := validateWords("args", c.Args); err != nil {
		return err
	}
	if err := validateEnv(c.Env); err != nil {
		return err
	}
	if err := ValidateLabels("container label", c.Labels); err != nil {
		return err
	}
	if c.Dir != "" {
		if err := checkText("workdir", c.Dir, false, MaxPathLen, lineText); err != nil {
			return err
		}
		if !path.IsAbs(c.Dir) {
			return fieldErr("workdir", "%s must be an absolute path", quote(c.Dir))
		}
	}
	if err := checkText("user", c.User, false, MaxUserLen, wordText); err != nil {
		return err
	}
	if err := checkText("hostname", c.Hostname, false, MaxHostname, wordText); err != nil {
		return err
	}
	if err := validateMounts(c.Mounts); err != nil {
		return err
	}
	if err := checkDuration("stop grace period", c.StopGracePeriodNs); err != nil {
		return err
	}
	if err := validateDataRefs(c); err != nil { // secret.go
		return err
	}
	if err := validateContainerExtras(c); err != nil {
		return err
	}
	return validateHealth(c.Healthcheck)
}

// validateWords checks a command line: count and size of each word.
func validateWords(field string, words []string) error {
	if len(words) > MaxArgs {
		return fieldErr(field, "has %d words: at most %d allowed", len(words), MaxArgs)
	}
	for i, w := range words {
		if err := checkText(fmt.Sprintf("%s[%d]", field, i), w, false, MaxArgLen, anyText); err != nil {
			return err
		}
	}
	return nil
}

func validateEnv(env []string) error {
	if len(env) > MaxEnv {
		return fieldErr("env", "has %d variables: at most %d allowed", len(env), MaxEnv)
	}
	for _, e := range env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fieldErr("env", "%s is not KEY=VALUE with a non-empty KEY", quote(e))
		}
		if len(e) > MaxEnvLen {
			return fieldErr(fmt.Sprintf("env %s", quote(k)), "is %d bytes long: at most %d allowed", len(e), MaxEnvLen)
		}
		if why := badChar(k, wordText); why != "" {
			return fieldErr("env key", "%s %s", quote(k), why)
		}
		if why := badChar(v, anyText); why != "" {
			return fieldErr(fmt.Sprintf("env %s value", quote(k)), "%s", why)
		}
	}
	return nil
}

func validateMounts(mounts []*swarmpb.Mount) error {
	if len(mounts) > MaxMounts {
		return fieldErr("mounts", "count %d exceeds the limit of %d", len(mounts), MaxMounts)
	}
	targets := make(map[string]bool, len(mounts))
	for _, m := range mounts {
		if m == nil {
			return fieldErr("mount", "is empty")
		}
		if err := checkText("mount target", m.Target, true, MaxPathLen, lineText); err != nil {
			return err
		}
		if !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
			return fieldErr("mount target", "%s must be an absolute path other than /", quote(m.Target))
		}
		if t := path.Clean(m.Target); targets[t] {
			return fieldErr("mount target", "%s is used by more than one mount", quote(m.Target))
		} else {
			targets[t] = true
		}
		switch m.Type {
		case swarmpb.Mount_TYPE_BIND:
			if err := checkText("bind mount source", m.Source, true, MaxPathLen, lineText); err != nil {
				return err
			}
			if !path.IsAbs(m.Source) {
				return fieldErr("bind mount source", "%s must be an absolute path", quote(m.Source))
			}
		case swarmpb.Mount_TYPE_VOLUME:
			if m.Source != "" && (len(m.Source) > MaxVolumeLen || !volumeNameRE.MatchString(m.Source)) {
				return fieldErr("volume name", "%s is invalid: use 1-%d letters, digits, '_', '.' or '-', starting with a letter or digit", quote(m.Source), MaxVolumeLen)
			}
			if err := validateVolumeMount(m); err != nil { // volumes.go
				return err
			}
		case swarmpb.Mount_TYPE_TMPFS:
			if err := validateTmpfsMount(m); err != nil {
				return err
			}
		default:
			return fieldErr("mount type", "%d is unknown: use bind, volume or tmpfs", int32(m.Type))
		}
	}
	return nil
}

// checkDuration bounds a duration field: 0 (unset or none) to MaxDuration.
func checkDuration(field string, ns int64) error {
	if ns < 0 || ns > int64(MaxDuration) {
		return fieldErr(field, "%s is out of range: use 0s to %s", time.Duration(ns), MaxDuration)
	}
	return nil
}

func validateHealth(h *swarmpb.HealthConfig) error {
	if h == nil {
		return nil
	}
	if err := validateWords("health check", h.Test); err != nil {
		return err
	}
	if len(h.Test) > 0 {
		switch h.Test[0] {
		case "NONE":
			if len(h.Test) != 1 {
				return fieldErr("health check", "NONE takes no command")
			}
		case "CMD":
			if len(h.Test) < 2 {
				return fieldErr("health check", "CMD needs a command")
			}
		case "CMD-SHELL":
			if len(h.Test) != 2 {
				return fieldErr("health check", "CMD-SHELL takes exactly one command string")
			}
		default:
			return fieldErr("health check", "%s is not NONE, CMD or CMD-SHELL", quote(h.Test[0]))
		}
	}
	for _, d := range []struct {
		field string
		ns    int64
	}{{"health interval", h.IntervalNs}, {"health timeout", h.TimeoutNs}, {"health start period", h.StartPeriodNs}} {
		if err := checkDuration(d.field, d.ns); err != nil {
			return err
		}
		if d.ns != 0 && d.ns < int64(MinHealthInterval) {
			return fieldErr(d.field, "%s is too short: use 0 (the default) or at least %s", time.Duration(d.ns), MinHealthInterval)
		}
	}
	if h.Retries < 0 || h.Retries > MaxHealthRetries {
		return fieldErr("health retries", "%d is out of range: use 0 to %d", h.Retries, MaxHealthRetries)
	}
	return nil
}

func validateRestart(r *swarmpb.RestartPolicy) error {
	if r == nil {
		return nil
	}
	if _, ok := swarmpb.RestartPolicy_Condition_name[int32(r.Condition)]; !ok {
		return fieldErr("restart condition", "%d is unknown: use none, on-failure or any", int32(r.Condition))
	}
	if err := checkDuration("restart delay", r.DelayNs); err != nil {
		return err
	}
	return checkDuration("restart window", r.WindowNs)
}

func validatePlacement(p *swarmpb.Placement) error {
	if p == nil {
		return nil
	}
	if len(p.Constraints) > MaxConstraints {
		return fieldErr("constraints", "count %d exceeds the limit of %d", len(p.Constraints), MaxConstraints)
	}
	for _, c := range p.Constraints {
		if err := checkText("constraint", c, true, MaxConstraintLen, lineText); err != nil {
			return err
		}
		if _, err := ParseConstraint(c); err != nil {
			return err
		}
	}
	if len(p.SpreadDescriptors) > MaxSpreadPrefs {
		return fieldErr("placement preferences", "count %d exceeds the limit of %d", len(p.SpreadDescriptors), MaxSpreadPrefs)
	}
	for _, d := range p.SpreadDescriptors {
		if err := checkText("placement preference", d, true, MaxConstraintLen, lineText); err != nil {
			return err
		}
		if _, err := ParseSpreadDescriptor(d); err != nil {
			return err
		}
	}
	return nil
}

func validateResources(r *swarmpb.ResourceRequirements) error {
	if r == nil {
		return nil
	}
	for _, x := range []struct {
		what string
		res  *swarmpb.Resources
	}{{"reserve", r.Reservations}, {"limit", r.Limits}} {
		if x.res == nil {
			continue
		}
		if c := x.res.NanoCpus; c < 0 || c > MaxNanoCPUs {
			return fieldErr(x.what+" cpu", "%g is out of range: use 0 to %d CPUs", float64(c)/1e9, MaxNanoCPUs/1_000_000_000)
		}
		if m := x.res.MemoryBytes; m < 0 || m > MaxMemoryBytes {
			return fieldErr(x.what+" memory", "%d bytes is out of range: use 0 to %d (1 PiB)", m, MaxMemoryBytes)
		}
	}
	res, lim := r.Reservations, r.Limits
	if l := lim.GetNanoCpus(); l > 0 && res.GetNanoCpus() > l {
		return fieldErr("reserve cpu", "%g exceeds the cpu limit of %g", float64(res.GetNanoCpus())/1e9, float64(l)/1e9)
	}
	if l := lim.GetMemoryBytes(); l > 0 && res.GetMemoryBytes() > l {
		return fieldErr("reserve memory", "%d bytes exceeds the memory limit of %d bytes", res.GetMemoryBytes(), l)
	}
	return nil
}

func validatePorts(ports []*swarmpb.PortConfig) error {
	if len(ports) > MaxPorts {
		return fieldErr("published ports", "count %d exceeds the limit of %d", len(ports), MaxPorts)
	}
	seen := make(map[string]bool, len(ports))
	for _, p := range ports {
		if p == nil {
			return fieldErr("published port", "is empty")
		}
		if p.TargetPort < 1 || p.TargetPort > 65535 {
			return fieldErr("target port", "%d is out of range: use 1 to 65535", p.TargetPort)
		}
		if p.PublishedPort > 65535 {
			return fieldErr("published port", "%d is out of range: use 1 to 65535 (or none)", p.PublishedPort)
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return fieldErr("port protocol", "%s is invalid: use tcp or udp", quote(p.Protocol))
		}
		switch p.PublishMode {
		case "", "ingress", "host":
		default:
			return fieldErr("port publish mode", "%s is invalid: use ingress or host", quote(p.PublishMode))
		}
		switch {
		case p.ProxyProtocol == "":
		case p.ProxyProtocol != "v2":
			return fieldErr("port proxy-protocol", "%s is invalid: use v2", quote(p.ProxyProtocol))
		case p.Protocol != "tcp" || p.PublishMode == "host" || p.PublishedPort == 0:
			return fieldErr("port proxy-protocol", "applies to published tcp ports in ingress mode only (the routing mesh sends the header)")
		}
		if p.PublishedPort == 0 {
			continue
		}
		key := fmt.Sprintf("%d/%s", p.PublishedPort, p.Protocol)
		if seen[key] {
			return fieldErr("published port", "%s is used more than once", key)
		}
		seen[key] = true
	}
	return nil
}

// enumText is the text form of a setting given as a deprecated string, an
// enum (value, with its text form name), or both.
func enumText(field, str string, value int32, name string) (string, error) {
	switch {
	case value == 0:
		return str, nil
	case name == "":
		return "", fieldErr(field, "%d is not a known value (is this manager older than the client?): use the text form", value)
	case str != "" && str != name:
		return "", fieldErr(field, "%s and %s disagree: send one", quote(str), quote(name))
	}
	return name, nil
}

// validateUpdateConfig checks --update-* (which "update") or --rollback-*.
func validateUpdateConfig(which string, u *swarmpb.UpdateConfig) error {
	if u == nil {
		return nil
	}
	// The enums replaced the strings; a client may send either, or both
	// when they agree.
	failureAction, err := enumText(which+" failure action", u.FailureAction, int32(u.OnFailure), u.OnFailure.Text())
	if err != nil {
		return err
	}
	order, err := enumText(which+" order", u.Order, int32(u.UpdateOrder), u.UpdateOrder.Text())
	if err != nil {
		return err
	}
	switch failureAction {
	case "", "pause", "continue":
	case "rollback":
		if which == "rollback" {
			return fieldErr("rollback failure action", "cannot be rollback: use pause or continue")
		}
	default:
		allowed := "pause, continue or rollback"
		if which == "rollback" {
			allowed = "pause or continue"
		}
		return fieldErr(which+" failure action", "%s is invalid: use %s", quote(failureAction), allowed)
	}
	switch order {
	case "", "stop-first", "start-first":
	default:
		return fieldErr(which+" order", "%s is invalid: use stop-first or start-first", quote(order))
	}
	if r := u.MaxFailureRatio; !(r >= 0 && r <= 1) {
		return fieldErr(which+" max failure ratio", "%g is out of range: use 0 to 1", r)
	}
	if err := checkDuration(which+" delay", u.DelayNs); err != nil {
		return err
	}
	return checkDuration(which+" monitor", u.MonitorNs)
}
