package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// ProxyProtocolV2 is the ServiceEndpoint.proxy_protocol value that makes
// the mesh send a PROXY protocol version 2 header
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) to the
// backend before the client's bytes, so a task learns the client's address
// whichever node took the connection. Such ports are served by the
// userspace proxy only: the kernel cannot add a header.
const ProxyProtocolV2 = "v2"

// proxyV2Sig is the 12-byte signature every v2 header starts with.
var proxyV2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// appendProxyV2 appends the v2 header of a TCP connection from src to dst
// (the address the client connected to). Mixed or unknown families get a
// LOCAL header (no addresses), which receivers treat as "use the socket's".
func appendProxyV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, proxyV2Sig[:]...)
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case s.Is4() && d.Is4():
		b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4, 12 bytes
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
	case s.Is6() && d.Is6():
		b = append(b, 0x21, 0x21, 0, 36) // v2 PROXY, TCP over IPv6, 36 bytes
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
	default:
		return append(b, 0x20, 0x00, 0, 0) // v2 LOCAL
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// writeProxyV2 sends the header describing client to server, within
// timeout (a backend that does not read must not hold the connection).
func writeProxyV2(server *net.TCPConn, client *net.TCPConn, timeout time.Duration) error {
	src, ok1 := client.RemoteAddr().(*net.TCPAddr)
	dst, ok2 := client.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return errors.New("client addresses unknown")
	}
	hdr := appendProxyV2(make([]byte, 0, 52), src.AddrPort(), dst.AddrPort())
	server.SetWriteDeadline(time.Now().Add(timeout))
	_, err := server.Write(hdr)
	server.SetWriteDeadline(time.Time{})
	return err
}

// ReadProxyV2 reads a PROXY protocol v2 header from r and returns the
// source and destination it carries (both invalid for a LOCAL header). It
// is what a backend does; the tests and the test images use it.
func ReadProxyV2(r io.Reader) (src, dst netip.AddrPort, err error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return src, dst, fmt.Errorf("read PROXY header: %w", err)
	}
	if [12]byte(hdr[:12]) != proxyV2Sig {
		return src, dst, errors.New("not a PROXY protocol v2 header")
	}
	if hdr[12]>>4 != 2 {
		return src, dst, fmt.Errorf("PROXY protocol version %d, want 2", hdr[12]>>4)
	}
	n := int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > 512 {
		return src, dst, fmt.Errorf("PROXY header of %d bytes is too long", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return src, dst, fmt.Errorf("read PROXY addresses: %w", err)
	}
	if hdr[12]&0x0F == 0 { // LOCAL
		return src, dst, nil
	}
	switch hdr[13] {
	case 0x11:
		if n < 12 {
			return src, dst, errors.New("short PROXY IPv4 addresses")
		}
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21:
		if n < 36 {
			return src, dst, errors.New("short PROXY IPv6 addresses")
		}
		src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default:
		return src, dst, fmt.Errorf("PROXY family/protocol 0x%02x not supported", hdr[13])
	}
	return src, dst, nil
}
