package spec

import (
	"fmt"
	"net"
	"strconv"
	"unicode"
	"unicode/utf8"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Limits of what a node may say about itself. A node's description is a
// claim made by the node (at join, then in every heartbeat); the managers
// store it only when every field is within these bounds, so no node can
// grow the replicated state or the node list without limit.
const (
	// MaxHostnameLen bounds a node's hostname in bytes. 255 is the longest
	// DNS name written out (253) with room to spare; Linux allows 64.
	MaxHostnameLen = 255
	// MaxPlatformLen bounds the os and arch fields.
	MaxPlatformLen = 64
	// MaxEngineVersionLen bounds the engine version.
	MaxEngineVersionLen = 128
	// MaxEngineErrorLen bounds the engine error message.
	MaxEngineErrorLen = 2048
	// MaxNodeNanoCPUs and MaxNodeMemoryBytes bound the resources a node may
	// report: 65536 CPUs and 1 PiB, well above any real machine.
	MaxNodeNanoCPUs    int64 = 65536 * 1e9
	MaxNodeMemoryBytes int64 = 1 << 50
	// MaxTaskMessageLen bounds a task status's message and error; longer
	// ones reported by a node are cut (ClipText), not refused, so a
	// verbose engine error cannot keep a task's status from being stored.
	MaxTaskMessageLen = 2048
	// MaxContainerIDLen bounds a task status's container ID.
	MaxContainerIDLen = 128
)

// ValidateHostname checks a node's hostname: 1 to MaxHostnameLen bytes of
// valid UTF-8, every character printable (letters, marks, numbers,
// punctuation, symbols and the ASCII space), so no control character or
// invisible formatting can reach a terminal or a log line, and no leading
// or trailing space.
func ValidateHostname(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("invalid hostname: it is empty")
	case len(h) > MaxHostnameLen:
		return fmt.Errorf("invalid hostname: %d bytes, at most %d allowed", len(h), MaxHostnameLen)
	}
	if err := printable(h); err != nil {
		return fmt.Errorf("invalid hostname %s: %v", quoteShort(h), err)
	}
	if h[0] == ' ' || h[len(h)-1] == ' ' {
		return fmt.Errorf("invalid hostname %s: it starts or ends with a space", quoteShort(h))
	}
	return nil
}

// ValidateNodeDescription checks everything a node reports about itself
// against the limits above. A nil description is valid (nothing claimed).
func ValidateNodeDescription(d *swarmpb.NodeDescription) error {
	if d == nil {
		return nil
	}
	if err := ValidateHostname(d.GetHostname()); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"os", d.GetOs(), MaxPlatformLen},
		{"arch", d.GetArch(), MaxPlatformLen},
		{"engine version", d.GetEngineVersion(), MaxEngineVersionLen},
		{"engine error", d.GetEngineError(), MaxEngineErrorLen},
		{"daemon version", d.GetDaemonVersion(), MaxEngineVersionLen},
		{"mesh path reason", d.GetMeshPathReason(), MaxEngineErrorLen},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("invalid node description: %s is %d bytes, at most %d allowed", f.name, len(f.v), f.max)
		}
		if err := printable(f.v); err != nil {
			return fmt.Errorf("invalid node description: %s %s: %v", f.name, quoteShort(f.v), err)
		}
	}
	switch d.GetMeshPath() {
	case "", "kernel", "userspace":
	default:
		return fmt.Errorf("invalid node description: mesh path %s (want kernel or userspace)", quoteShort(d.GetMeshPath()))
	}
	r := d.GetResources()
	if c := r.GetNanoCpus(); c < 0 || c > MaxNodeNanoCPUs {
		return fmt.Errorf("invalid node description: %d nano CPUs, must be between 0 and %d", c, MaxNodeNanoCPUs)
	}
	if m := r.GetMemoryBytes(); m < 0 || m > MaxNodeMemoryBytes {
		return fmt.Errorf("invalid node description: %d bytes of memory, must be between 0 and %d", m, MaxNodeMemoryBytes)
	}
	return validateNodeNetworks(d)
}

// ClipNodeDescription makes an honest node's description fit the limits
// before it is sent: an engine's error or version text is cut and its
// control characters replaced, resources are clamped. The hostname is
// left alone: it is the operator's choice, checked when the daemon starts.
func ClipNodeDescription(d *swarmpb.NodeDescription) {
	if d == nil {
		return
	}
	d.Os = ClipText(d.Os, MaxPlatformLen)
	d.Arch = ClipText(d.Arch, MaxPlatformLen)
	d.EngineVersion = ClipText(d.EngineVersion, MaxEngineVersionLen)
	d.EngineError = ClipText(d.EngineError, MaxEngineErrorLen)
	d.DaemonVersion = ClipText(d.DaemonVersion, MaxEngineVersionLen)
	d.MeshPathReason = ClipText(d.MeshPathReason, MaxEngineErrorLen)
	if r := d.Resources; r != nil {
		r.NanoCpus = min(max(r.NanoCpus, 0), MaxNodeNanoCPUs)
		r.MemoryBytes = min(max(r.MemoryBytes, 0), MaxNodeMemoryBytes)
	}
}

// ClipText returns s as valid UTF-8 of at most max bytes, with every
// non-printable character replaced by a space (a newline in an engine
// error becomes a space) and cut on a character boundary.
func ClipText(s string, max int) string {
	if len(s) <= max && printable(s) == nil {
		return s
	}
	out := make([]byte, 0, min(len(s), max))
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = ' '
		}
		if len(out)+utf8.RuneLen(r) > max {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

// ValidatePortBinding checks a port binding a node reports for one of its
// tasks: ports from 1 to 65535, a known protocol and publish mode, and a
// host address that is either unspecified (the node's own address is
// meant) or one of nodeIPs, the addresses the managers know the node by.
// Anything else would let a node point every routing mesh at an address
// of its choosing.
func ValidatePortBinding(b *swarmpb.PortBinding, nodeIPs ...net.IP) error {
	if p := b.GetTargetPort(); p < 1 || p > 65535 {
		return fmt.Errorf("target port %d is not between 1 and 65535", p)
	}
	if p := b.GetHostPort(); p < 1 || p > 65535 {
		return fmt.Errorf("host port %d is not between 1 and 65535", p)
	}
	switch b.GetProtocol() {
	case "", "tcp", "udp", "sctp":
	default:
		return fmt.Errorf("protocol %s is not tcp, udp or sctp", quoteShort(b.GetProtocol()))
	}
	switch b.GetPublishMode() {
	case "", "ingress", "host":
	default:
		return fmt.Errorf("publish mode %s is not ingress or host", quoteShort(b.GetPublishMode()))
	}
	h := b.GetHostIp()
	if h == "" {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return fmt.Errorf("host address %s is not an IP address", quoteShort(h))
	}
	if ip.IsUnspecified() {
		return nil
	}
	for _, own := range nodeIPs {
		if own != nil && own.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("host address %s is not the node's own address", ip)
}

// printable reports the first reason s is not valid printable UTF-8.
func printable(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("control or non-printable character %s at byte %d", strconv.QuoteRune(r), i)
		}
	}
	return nil
}

// quoteShort quotes s for an error message, escaped and cut to a readable
// length, so a 3 MB claim does not become a 3 MB error.
func quoteShort(s string) string {
	const keep = 64
	if len(s) > keep {
		cut := keep
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
