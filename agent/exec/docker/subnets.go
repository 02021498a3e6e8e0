package docker

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"strings"

	"github.com/docker/docker/api/types/network"
)

// Bridge subnets. Left to itself the engine gives every bridge network a
// /16 from its default pools (172.17-31.0.0/16, then 192.168.0.0/16 in
// /20s): about 30 networks per engine, which nodes sharing one engine (the
// tests, the demo) and their networks exhaust quickly. Each bridge gets a
// /24 from bridgePool instead, which the engine's default pools do not
// include, skipping every subnet of another engine network and every route
// of the host. When the pool is full (or the host uses it), the engine
// chooses as before.
var bridgePool = netip.MustParsePrefix("172.16.0.0/16")

// bridgeSubnetBits is the size of each bridge's subnet: 253 containers.
const bridgeSubnetBits = 24

// freeSubnets lists the candidate /24s of the pool, in order, that overlap
// neither an engine network nor a host route.
func (e *Executor) freeSubnets(ctx context.Context) ([]netip.Prefix, error) {
	nets, err := e.engine.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list engine networks: %w", err)
	}
	var used []netip.Prefix
	for _, n := range nets {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	used = append(used, hostRoutes()...)
	return candidateSubnets(bridgePool, bridgeSubnetBits, used), nil
}

// candidateSubnets splits pool into subnets of the given size and keeps
// those that overlap nothing in used.
func candidateSubnets(pool netip.Prefix, bits int, used []netip.Prefix) []netip.Prefix {
	if !pool.Addr().Is4() || bits < pool.Bits() || bits > 30 {
		return nil
	}
	var out []netip.Prefix
	base := binary.BigEndian.Uint32(pool.Masked().Addr().AsSlice())
	step := uint32(1) << (32 - bits)
	n := uint32(1) << (bits - pool.Bits())
	for i := uint32(0); i < n; i++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+i*step)
		p := netip.PrefixFrom(netip.AddrFrom4(b), bits)
		clash := false
		for _, u := range used {
			if u.Overlaps(p) {
				clash = true
				break
			}
		}
		if !clash {
			out = append(out, p)
		}
	}
	return out
}

// rotateSubnets starts the candidate list at a place chosen by key.
func rotateSubnets(c []netip.Prefix, key string) []netip.Prefix {
	if len(c) < 2 {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	i := int(h.Sum32() % uint32(len(c)))
	return append(append([]netip.Prefix(nil), c[i:]...), c[:i]...)
}

// hostRoutes reads the IPv4 routes of the host's main table from
// /proc/net/route, default route excluded. Unreadable: none (the engine
// still refuses a subnet that clashes with one of its own networks).
func hostRoutes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range readRoutes() {
		out = append(out, r.dst)
	}
	return out
}

// routedElsewhere reports whether the host has a route overlapping p on an
// interface other than iface.
func routedElsewhere(p netip.Prefix, iface string) bool {
	if !p.IsValid() {
		return false
	}
	for _, r := range readRoutes() {
		if r.iface != iface && r.dst.Overlaps(p) {
			return true
		}
	}
	return false
}

type route struct {
	iface string
	dst   netip.Prefix
}

// readRoutes reads /proc/net/route (default routes excluded).
func readRoutes() []route {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []route
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := littleEndianIPv4(fields[1])
		mask, err2 := littleEndianIPv4(fields[7])
		if err1 != nil || err2 != nil {
			continue
		}
		bits := 0
		for _, b := range mask.AsSlice() {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
		}
		if bits == 0 {
			continue // the default route
		}
		out = append(out, route{iface: fields[0], dst: netip.PrefixFrom(dst, bits).Masked()})
	}
	return out
}

// littleEndianIPv4 parses /proc/net/route's hex addresses (host byte order,
// little-endian on the machines we run on).
func littleEndianIPv4(s string) (netip.Addr, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return netip.Addr{}, fmt.Errorf("bad route address %q", s)
	}
	return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), nil
}

// ipamFor is the IPAM configuration of a bridge on subnet p: the gateway
// is its first address.
func ipamFor(p netip.Prefix) *network.IPAM {
	return &network.IPAM{Config: []network.IPAMConfig{{
		Subnet:  p.String(),
		Gateway: p.Addr().Next().String(),
	}}}
}

// isPoolClash reports the engine refusing a subnet that overlaps one of
// its networks (another node sharing the engine took it first).
func isPoolClash(err error) bool {
	s := err.Error()
	return strings.Contains(s, "overlaps") || strings.Contains(s, "Pool overlaps")
}
