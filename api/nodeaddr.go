package api

import (
	"context"
	"net"
	"strconv"

	"google.golang.org/grpc/peer"
)

// defaultNodePort is the port recorded for a node that advertised none.
const defaultNodePort = "2377"

// peerIP is the IP address the caller connects from; ok is false for a
// call that did not come over TCP (an in-process call).
func peerIP(ctx context.Context) (ip net.IP, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found || p.Addr == nil {
		return nil, false
	}
	tcp, isTCP := p.Addr.(*net.TCPAddr)
	if !isTCP || tcp.IP == nil {
		return nil, false
	}
	if v4 := tcp.IP.To4(); v4 != nil {
		return v4, true
	}
	return tcp.IP, true
}

// nodeAddr works out the address recorded for a node from the address it
// advertises and the connection it uses. The host is never taken on trust:
// it is the IP the manager sees the node connect from (the routing mesh
// sends traffic there, and a node's address is what its published task
// ports must be). An advertised IP that is not that one is refused, so a
// misconfigured --advertise-addr is reported at join; an advertised name,
// or none, is replaced by the peer's IP. Only the port is the node's to
// choose. Without a peer (an in-process call) the advertised address is
// only checked for form.
func nodeAddr(ctx context.Context, advertised string) (string, error) {
	host, port := "", defaultNodePort
	if advertised != "" {
		h, p, err := net.SplitHostPort(advertised)
		if err != nil {
			return "", invalidf("invalid advertise address %q: expected HOST:PORT", clip(advertised))
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", invalidf("invalid advertise address %q: the port must be a number from 1 to 65535", clip(advertised))
		}
		host, port = h, p
	}
	ip, ok := peerIP(ctx)
	if !ok {
		if host == "" {
			return "", nil
		}
		return net.JoinHostPort(host, port), nil
	}
	if adv := net.ParseIP(host); adv != nil && !adv.Equal(ip) {
		return "", invalidf("advertise address %s is not the address this node connects from (%s): managers record a node's address from its connection; use --advertise-addr %s",
			net.JoinHostPort(host, port), ip, net.JoinHostPort(ip.String(), port))
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// hostIP is the IP of a host:port address, nil if it has none.
func hostIP(addr string) net.IP {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	return net.ParseIP(h)
}

// clip cuts a claimed value for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
