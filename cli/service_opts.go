package cli

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Parsers for the values of service flags. Each returns a one-line error
// naming the flag and the bad value.

func parseDuration(flag, s string) (int64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: expected a duration such as 10s or 1m30s", flag, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid %s %q: must not be negative", flag, s)
	}
	return int64(d), nil
}

func parseMemory(flag, s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %q: expected a size such as 64MiB, 1GiB, 512M or a number of bytes", flag, s)
	}
	return n, nil
}

func parseCPU(flag, s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid %s %q: expected a number of CPUs such as 0.5", flag, s)
	}
	if f < 0 {
		return 0, fmt.Errorf("invalid %s %q: must not be negative", flag, s)
	}
	return int64(math.Round(f * 1e9)), nil
}

func parseEnv(flag, s string) (string, error) {
	k, _, _ := strings.Cut(s, "=")
	if k == "" || strings.ContainsAny(k, " \t") {
		return "", fmt.Errorf("invalid %s %q: expected KEY=VALUE with a non-empty key", flag, s)
	}
	return s, nil
}

var constraintRE = regexp.MustCompile(`^\s*(node\.id|node\.hostname|node\.role|node\.platform\.os|node\.platform\.arch|node\.labels\.[^\s=!]+)\s*(==|!=)\s*(\S.*?)\s*$`)

func parseConstraint(flag, s string) (string, error) {
	m := constraintRE.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("invalid %s %q: expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.KEY, then == or !=, then a value", flag, s)
	}
	if m[1] == "node.role" && m[3] != "manager" && m[3] != "worker" {
		return "", fmt.Errorf("invalid %s %q: node.role must be compared with manager or worker", flag, s)
	}
	return m[1] + m[2] + m[3], nil
}

var spreadRE = regexp.MustCompile(`^(node\.id|node\.hostname|node\.role|node\.platform\.os|node\.platform\.arch|node\.labels\.[^\s=!]+)$`)

func parsePlacementPref(flag, s string) (string, error) {
	strategy, desc, ok := strings.Cut(s, "=")
	if !ok || strategy != "spread" || !spreadRE.MatchString(desc) {
		return "", fmt.Errorf("invalid %s %q: expected spread=node.labels.KEY", flag, s)
	}
	return desc, nil
}

func parsePortNumber(flag, whole, s string) (uint32, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid %s %q: port %q must be a number between 1 and 65535", flag, whole, s)
	}
	return uint32(n), nil
}

func parseProtocol(flag, whole, s string) (string, error) {
	switch strings.ToLower(s) {
	case "", "tcp":
		return "tcp", nil
	case "udp":
		return "udp", nil
	}
	return "", fmt.Errorf("invalid %s %q: protocol must be tcp or udp", flag, whole)
}

// parsePort accepts PUB:TGT[/proto], TGT[/proto] and the long form
// mode=host,published=P,target=T,protocol=udp.
func parsePort(flag, s string) (*swarmpb.PortConfig, error) {
	p := &swarmpb.PortConfig{Protocol: "tcp", PublishMode: "ingress"}
	if strings.Contains(s, "=") {
		for _, field := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
			if !ok {
				return nil, fmt.Errorf("invalid %s %q: field %q must be KEY=VALUE", flag, s, field)
			}
			var err error
			switch strings.ToLower(k) {
			case "mode":
				if v != "host" && v != "ingress" {
					return nil, fmt.Errorf("invalid %s %q: mode must be ingress or host", flag, s)
				}
				p.PublishMode = v
			case "published":
				p.PublishedPort, err = parsePortNumber(flag, s, v)
			case "target":
				p.TargetPort, err = parsePortNumber(flag, s, v)
			case "protocol":
				p.Protocol, err = parseProtocol(flag, s, v)
			default:
				return nil, fmt.Errorf("invalid %s %q: unknown field %q", flag, s, k)
			}
			if err != nil {
				return nil, err
			}
		}
		if p.TargetPort == 0 {
			return nil, fmt.Errorf("invalid %s %q: target is required", flag, s)
		}
		return p, nil
	}
	ports, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		var err error
		if p.Protocol, err = parseProtocol(flag, s, proto); err != nil {
			return nil, err
		}
		if proto == "" {
			return nil, fmt.Errorf("invalid %s %q: empty protocol", flag, s)
		}
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
		switch strings.ToLower(k) {
		case "type":
			switch v {
			case "bind":
				m.Type = swarmpb.Mount_TYPE_BIND
			case "volume":
				m.Type = swarmpb.Mount_TYPE_VOLUME
			default:
				return nil, fmt.Errorf("invalid %s %q: type must be bind or volume", flag, s)
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
				return nil, fmt.Errorf("invalid %s %q: readonly must be true or false", flag, s)
			}
			m.ReadOnly = b
		default:
			return nil, fmt.Errorf("invalid %s %q: unknown field %q", flag, s, k)
		}
		if !hasValue && k != "readonly" && k != "ro" {
			return nil, fmt.Errorf("invalid %s %q: field %q must be KEY=VALUE", flag, s, field)
		}
	}
	if m.Target == "" || !path.IsAbs(m.Target) {
		return nil, fmt.Errorf("invalid %s %q: target must be an absolute path", flag, s)
	}
	if m.Type == swarmpb.Mount_TYPE_BIND && (m.Source == "" || !path.IsAbs(m.Source)) {
		return nil, fmt.Errorf("invalid %s %q: a bind mount needs an absolute source path", flag, s)
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
	return 0, fmt.Errorf("invalid --restart-condition %q: must be none, on-failure or any", s)
}

func parseMode(s string) (swarmpb.ServiceMode, error) {
	switch s {
	case "replicated":
		return swarmpb.ServiceMode_SERVICE_MODE_REPLICATED, nil
	case "global":
		return swarmpb.ServiceMode_SERVICE_MODE_GLOBAL, nil
	}
	return 0, fmt.Errorf("invalid --mode %q: must be replicated or global", s)
}
