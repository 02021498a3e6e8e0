package dial

import (
	"context"
	"errors"
	"net"
	"syscall"

	"google.golang.org/grpc"
)

// SourceIP is the local address a node dials managers from, given the
// address it advertises: the advertised IP when it is a loopback address,
// nil (the kernel's choice) otherwise.
//
// Managers record a node's address from the connections it makes (its
// advertised host must be the IP they see it connect from), so the address
// can never be a free claim. Several nodes sharing one host on 127.0.0.x
// addresses (make demo, the tests) would all connect from 127.0.0.1 unless
// each binds its own address. On a real network the kernel's choice is the
// address that routes to the managers, which is what they must record;
// binding there could break on multi-homed hosts with reverse-path filters.
func SourceIP(advertise string) net.IP {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		host = advertise
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil
	}
	return ip
}

// DialOptions are the gRPC options that make a client connection dial from
// src; none when src is nil.
func DialOptions(src net.IP) []grpc.DialOption {
	if src == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithContextDialer(ContextDialer(src))}
}

// ContextDialer dials TCP from src, or from the kernel's choice when src
// cannot be bound here (the address is not local, or cannot reach the
// destination).
func ContextDialer(src net.IP) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EINVAL)) {
			d.LocalAddr = nil
			return d.DialContext(ctx, "tcp", addr)
		}
		return c, err
	}
}
