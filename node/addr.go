package node

import (
	"fmt"
	"net"
	"strconv"
)

// DefaultPort is the manager port, as in Docker swarm mode.
const DefaultPort = 2377

// normalizeAddr parses HOST[:PORT], adding the default port, and refuses
// what cannot be an address.
func normalizeAddr(flag, s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%s is required", flag)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port (or a bare IPv6 address).
		host, port = s, strconv.Itoa(DefaultPort)
		if ip := net.ParseIP(s); ip == nil && !validHostname(s) {
			return "", fmt.Errorf("invalid %s %q: expected HOST[:PORT]", flag, s)
		}
	}
	if host == "" {
		return "", fmt.Errorf("invalid %s %q: the host is missing", flag, s)
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", fmt.Errorf("invalid %s %q: %q is not an IP address or host name", flag, s, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("invalid %s %q: the port must be a number from 1 to 65535", flag, s)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// defaultListen binds where the node advertises when that is a loopback
// address (several nodes share a host on 127.0.0.x), else on every
// address at the advertised port.
func defaultListen(advertise string) string {
	host, port, _ := net.SplitHostPort(advertise)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return advertise
	}
	return net.JoinHostPort("0.0.0.0", port)
}

// localAddrToward returns the local IP the kernel would use to reach
// remote: a sensible default advertise address for a joining node.
func localAddrToward(remote string) (string, error) {
	c, err := net.Dial("udp", remote)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
