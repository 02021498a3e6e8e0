package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

// Parsers for the values of service flags. They only turn text into spec
// fields, refusing what cannot be represented, with a one-line error naming
// the flag and the bad value. Whether a value is allowed (ranges, names,
// sizes, absolute paths...) is decided by spec.ValidateServiceSpec, the same
// code the managers run, on the spec the flags built.

// maxFlagEcho bounds how much of a bad value an error repeats.
const maxFlagEcho = 60

func echo(s string) string {
	if len(s) > maxFlagEcho {
		s = s[:maxFlagEcho] + "..."
	}
	return strconv.Quote(s)
}

func parseDuration(flag, s string) (int64, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid %s %s: expected a duration such as 10s or 1m30s", flag, echo(s))
	}
	return int64(d), nil
}

func parseMemory(flag, s string) (int64, error) {
	t := strings.TrimSpace(s)
	// go-units parses the number with ParseFloat, which also takes NaN and
	// Inf; their conversion to int64 is undefined.
	if f, err := strconv.ParseFloat(strings.TrimRight(strings.ToLower(t), "bkmgtpi "), 64); err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return 0, fmt.Errorf("invalid %s %s: expected a size such as 64MiB, 1GiB, 512M or a number of bytes", flag, echo(s))
	}
	n, err := units.RAMInBytes(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %s: expected a size such as 64MiB, 1GiB, 512M or a number of bytes", flag, echo(s))
	}
	return n, nil
}

func parseCPU(flag, s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid %s %s: expected a number of CPUs such as 0.5", flag, echo(s))
	}
	n := math.Round(f * 1e9)
	if n >= math.MaxInt64 || n <= math.MinInt64 {
		return 0, fmt.Errorf("invalid %s %s: too many CPUs", flag, echo(s))
	}
	return int64(n), nil
}

// parseConstraint checks a constraint with the scheduler's parser (through
// package spec) and returns its canonical form; its error is the one the
// managers would give.
func parseConstraint(s string) (string, error) {
	return spec.ParseConstraint(s)
}

// parsePlacementPref accepts spread=DESCRIPTOR, DESCRIPTOR being any key a
// constraint accepts (node.labels.KEY, engine.labels.KEY, node.hostname...).
func parsePlacementPref(flag, s string) (string, error) {
	strategy, desc, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(strategy) != "spread" {
		return "", fmt.Errorf("invalid %s %s: expected spread=node.labels.KEY", flag, echo(s))
	}
	return spec.ParseSpreadDescriptor(desc)
}

func parsePortNumber(flag, whole, s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %s: port %s is not a number", flag, echo(whole), echo(s))
	}
	return uint32(n), nil
}

func parseProtocol(s string) string {
	if s = strings.ToLower(strings.TrimSpace(s)); s == "" {
		return "tcp"
	}
	return s
}

// parsePort accepts PUB:TGT[/proto], TGT[/proto] and the long form
// mode=host,published=P,target=T,protocol=udp,proxy-protocol=v2.
func parsePort(flag, s string) (*swarmpb.PortConfig, error) {
	p := &swarmpb.PortConfig{Protocol: "tcp", PublishMode: "ingress"}
	if strings.Contains(s, "=") {
		hasTarget := false
		for _, field := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
			if !ok {
				return nil, fmt.Errorf("invalid %s %s: field %s must be KEY=VALUE", flag, echo(s), echo(field))
			}
			var err error
			switch strings.ToLower(k) {
			case "mode":
				p.PublishMode = strings.ToLower(strings.TrimSpace(v))
			case "published":
				p.PublishedPort, err = parsePortNumber(flag, s, v)
			case "target":
				p.TargetPort, err = parsePortNumber(flag, s, v)
				hasTarget = true
			case "protocol":
				p.Protocol = parseProtocol(v)
			case "proxy-protocol":
				// The spec check refuses values other than v2 (and
				// udp or host-mode ports) with the reason.
				p.ProxyProtocol = strings.ToLower(strings.TrimSpace(v))
			default:
				return nil, fmt.Errorf("invalid %s %s: unknown field %s", flag, echo(s), echo(k))
			}
			if err != nil {
				return nil, err
			}
		}
		if !hasTarget {
			return nil, fmt.Errorf("invalid %s %s: target is required", flag, echo(s))
		}
		return p, nil
	}
	ports, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		if strings.TrimSpace(proto) == "" {
			return nil, fmt.Errorf("invalid %s %s: empty protocol", flag, echo(s))
		}
		p.Protocol = parseProtocol(proto)
	}
	pub, tgt, hasPub := strings.Cut(ports, ":")
	if !hasPub {
		tgt, pub = pub, ""
	}
	var err error
	if p.TargetPort, err = parsePortNumber(flag, s, tgt); err != nil {
		return nil, err
	}
	if hasPub {
		if p.PublishedPort, err = parsePortNumber(flag, s, pub); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parseMount accepts type=bind|volume,source=...,target=...[,readonly].
func parseMount(flag, s string) (*swarmpb.Mount, error) {
	m := &swarmpb.Mount{Type: swarmpb.Mount_TYPE_VOLUME}
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		k, v, hasValue := strings.Cut(field, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		switch k {
		case "type":
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "bind":
				m.Type = swarmpb.Mount_TYPE_BIND
			case "volume":
				m.Type = swarmpb.Mount_TYPE_VOLUME
			default:
				return nil, fmt.Errorf("invalid %s %s: type must be bind or volume", flag, echo(s))
			}
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("invalid %s %s: readonly must be true or false", flag, echo(s))
			}
			m.ReadOnly = b
		default:
			return nil, fmt.Errorf("invalid %s %s: unknown field %s", flag, echo(s), echo(k))
		}
		if !hasValue && k != "readonly" && k != "ro" {
			return nil, fmt.Errorf("invalid %s %s: field %s must be KEY=VALUE", flag, echo(s), echo(field))
		}
	}
	return m, nil
}

func parseRestartCondition(s string) (swarmpb.RestartPolicy_Condition, error) {
	switch s {
	case "any":
		return swarmpb.RestartPolicy_CONDITION_ANY, nil
	case "on-failure":
		return swarmpb.RestartPolicy_CONDITION_ON_FAILURE, nil
	case "none":
		return swarmpb.RestartPolicy_CONDITION_NONE, nil
	}
	return 0, fmt.Errorf("invalid --restart-condition %s: must be none, on-failure or any", echo(s))
}

func parseMode(s string) (swarmpb.ServiceMode, error) {
	switch s {
	case "replicated":
		return swarmpb.ServiceMode_SERVICE_MODE_REPLICATED, nil
	case "global":
		return swarmpb.ServiceMode_SERVICE_MODE_GLOBAL, nil
	}
	return 0, fmt.Errorf("invalid --mode %s: must be replicated or global", echo(s))
}
