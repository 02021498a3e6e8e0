package netplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/raftswarm/raftswarm/internal/nft"
)

// nftPath is the nft CLI the rules are written with.
const nftPath = nft.Path

// NFTRules implements Rules with the nft command: one table per node
// ("ip raftswarm_<node id first 12>"), replaced whole by one atomic
// transaction on every Apply, so a node never sees half its rules and
// nodes sharing a host never touch each other's.
type NFTRules struct {
	t nft.Table
}

var _ Rules = (*NFTRules)(nil)

// NewNFTRules returns the rules of the node nodeID, or an error saying why
// nft cannot be used here (not installed, not root, no nf_tables in the
// kernel), so the node can report it.
func NewNFTRules(nodeID string) (*NFTRules, error) {
	name := TableName(nodeID)
	if name == "" {
		return nil, errors.New("nftables rules: empty node ID")
	}
	return newNFTRules(name, nftPath)
}

func newNFTRules(table, bin string) (*NFTRules, error) {
	r := &NFTRules{t: nft.Table{Name: table, Bin: bin}}
	ctx, cancel := context.WithTimeout(context.Background(), nft.Timeout)
	defer cancel()
	script, err := nftScript(table, RuleSet{})
	if err != nil {
		return nil, err
	}
	// A check run of an empty table tells whether this nft understands the
	// script we write.
	if err := r.t.Probe(ctx, script, "nftables unusable (the daemon needs root or CAP_NET_ADMIN, "+nftPath+" and a kernel with nf_tables)"); err != nil {
		return nil, err
	}
	return r, nil
}

// TableName is the nftables table (family ip) of node nodeID.
func TableName(nodeID string) string { return nft.TableName("raftswarm_", nodeID) }

// Table returns the table's name.
func (r *NFTRules) Table() string { return r.t.Name }

// Apply replaces the node's table with rs in one transaction.
func (r *NFTRules) Apply(ctx context.Context, rs RuleSet) error {
	script, err := nftScript(r.t.Name, rs)
	if err != nil {
		return err
	}
	return r.t.Apply(ctx, script)
}

// Remove deletes the node's table; a missing table is not an error.
func (r *NFTRules) Remove(ctx context.Context) error { return r.t.Remove(ctx) }

// nftScript renders the transaction that replaces table with rs: create
// the table if absent, delete it, and create it again with everything, all
// in one commit.
//
// Each bridge's rules cover the virtual addresses of every network in rs,
// not only its own: a container on several networks reaches all of them
// through its default route, which is one bridge, and that bridge's proxy
// serves the networks of the connecting container (and resets connections
// to networks it is not on). So from any bridge: TCP to a live virtual
// address goes to that bridge's proxy, TCP to any other address of a
// virtual subnet is refused, and every other packet to a virtual subnet is
// dropped, so none leaves the host.
func nftScript(table string, rs RuleSet) (string, error) {
	var live []string
	seenLive := map[netip.Addr]bool{}
	var subnets []netip.Prefix
	for _, br := range rs.Bridges {
		if err := checkBridgeRules(br); err != nil {
			return "", err
		}
		subnets = append(subnets, br.VIPSubnet.Masked())
		for _, a := range br.Live {
			if a = a.Unmap(); a.Is4() && !seenLive[a] {
				seenLive[a] = true
				live = append(live, a.String())
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\ntable ip %s {\n", table, table, table)
	b.WriteString("\tset live {\n\t\ttype ipv4_addr\n")
	if len(live) > 0 {
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(live, ", "))
	}
	b.WriteString("\t}\n")
	b.WriteString("\tset vips {\n\t\ttype ipv4_addr\n\t\tflags interval\n")
	if vips := disjoint(subnets); len(vips) > 0 {
		strs := make([]string, len(vips))
		for i, p := range vips {
			strs[i] = p.String()
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(strs, ", "))
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat - 5; policy accept;\n")
	for _, br := range rs.Bridges {
		iif := strconv.Quote(br.Interface)
		fmt.Fprintf(&b, "\t\tiifname %s ip daddr @live meta l4proto tcp redirect to :%d\n", iif, br.ProxyPort)
		fmt.Fprintf(&b, "\t\tiifname %s ip daddr @vips meta l4proto tcp redirect to :%d\n", iif, br.RefusePort)
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter - 5; policy accept;\n")
	for _, br := range rs.Bridges {
		fmt.Fprintf(&b, "\t\tiifname %s ip daddr @vips drop\n", strconv.Quote(br.Interface))
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

// disjoint returns the prefixes without duplicates and without those
// inside another (nft refuses overlapping intervals), sorted.
func disjoint(ps []netip.Prefix) []netip.Prefix {
	sorted := append([]netip.Prefix(nil), ps...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Bits() != sorted[j].Bits() {
			return sorted[i].Bits() < sorted[j].Bits()
		}
		return sorted[i].Addr().Less(sorted[j].Addr())
	})
	var out []netip.Prefix
	for _, p := range sorted {
		inside := false
		for _, q := range out {
			if q.Overlaps(p) { // CIDR prefixes overlap only by containment; q is the wider
				inside = true
				break
			}
		}
		if !inside {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

// checkBridgeRules refuses what would make a broken or dangerous rule: the
// names and numbers end up in an nft script.
func checkBridgeRules(br BridgeRules) error {
	if !validIfName(br.Interface) {
		return fmt.Errorf("nftables rules: invalid bridge interface name %q", br.Interface)
	}
	if !br.VIPSubnet.IsValid() || !br.VIPSubnet.Addr().Is4() {
		return fmt.Errorf("nftables rules for %s: virtual subnet %v is not an IPv4 prefix", br.Interface, br.VIPSubnet)
	}
	if br.ProxyPort == 0 || br.RefusePort == 0 {
		return fmt.Errorf("nftables rules for %s: proxy port %d / refuse port %d must be set", br.Interface, br.ProxyPort, br.RefusePort)
	}
	return nil
}

// validIfName accepts Linux interface names (1-15 bytes) made of the
// characters our bridge names and test veths use.
func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
