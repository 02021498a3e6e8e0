package docker

import (
	"net/netip"
	"testing"
)

// Bridges get /24s of the pool that clash with no engine network and no
// host route, in order.
func TestCandidateSubnets(t *testing.T) {
	pool := netip.MustParsePrefix("172.16.0.0/22")
	used := []netip.Prefix{
		netip.MustParsePrefix("172.16.1.0/24"),  // another engine network
		netip.MustParsePrefix("172.16.2.64/26"), // a host route inside a candidate
		netip.MustParsePrefix("10.0.0.0/8"),     // unrelated
	}
	got := candidateSubnets(pool, 24, used)
	want := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/24"), netip.MustParsePrefix("172.16.3.0/24")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	if c := candidateSubnets(pool, 24, []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}); len(c) != 0 {
		t.Fatalf("a route covering the pool left %v", c)
	}
	if gw := ipamFor(want[0]).Config[0].Gateway; gw != "172.16.0.1" {
		t.Fatalf("gateway %s", gw)
	}
}

func TestLittleEndianIPv4(t *testing.T) {
	a, err := littleEndianIPv4("0011A8C0") // 192.168.17.0 as /proc/net/route writes it
	if err != nil || a != netip.MustParseAddr("192.168.17.0") {
		t.Fatalf("%v %v", a, err)
	}
	if _, err := littleEndianIPv4("zz"); err == nil {
		t.Fatal("bad hex accepted")
	}
}

// Each node and network starts at its own place in the pool, so nodes on
// different engines of one host that create bridges at the same moment
// rarely pick the same subnet; the rotation keeps every candidate.
func TestRotateSubnets(t *testing.T) {
	c := candidateSubnets(netip.MustParsePrefix("172.16.0.0/16"), 24, nil)
	a, b := rotateSubnets(c, "node-a/net"), rotateSubnets(c, "node-b/net")
	if len(a) != len(c) || len(b) != len(c) {
		t.Fatalf("rotation lost candidates: %d %d of %d", len(a), len(b), len(c))
	}
	if a[0] == b[0] {
		t.Fatalf("two nodes start at the same subnet %v", a[0])
	}
	if got := rotateSubnets(c, "node-a/net"); got[0] != a[0] {
		t.Fatalf("rotation not stable: %v then %v", a[0], got[0])
	}
}
