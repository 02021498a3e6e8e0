package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/raftswarm/raftswarm/internal/nft"
)

// nftPath is the nft CLI the mesh's rules are written with.
const nftPath = nft.Path

// natPriority is the priority of the mesh's nat chains: before Docker's
// (iptables nat, -100) and the discovery plane's (dstnat - 5), so a
// published port is translated once, by the mesh.
const natPriority = -110

// NFTForwarder implements Forwarder and ConnCounter with nftables: one
// table per node, "ip raftswarm_mesh_<node id first 12>", separate from the
// discovery plane's table (netplane) so each is replaced whole by its
// owner, and nodes sharing a host never touch each other's. Every Apply
// replaces the table's rules in one nft transaction (flush every chain,
// delete the chains no longer wanted, add everything), as kube-proxy's
// nftables mode re-syncs whole. The table itself and its named counters
// (one per published port, "conns_<port>") stay: deleting the table, as
// Remove does, would reset the counts on every change.
//
// It drives the nft command, like netplane.NFTRules, rather than
// github.com/google/nftables: the rule set is small and rebuilt whole, one
// text transaction per table change is atomic and readable in `nft list`,
// the error messages name the failing line, and the two tables of a node
// stay written the same way (see docs/architecture.md).
type NFTForwarder struct {
	t nft.Table

	mu     sync.Mutex
	chains map[string]bool // the regular chains of the last committed Apply
}

var (
	_ Forwarder   = (*NFTForwarder)(nil)
	_ ConnCounter = (*NFTForwarder)(nil)
)

// NFTTableName is the nftables table (family ip) of node nodeID's mesh, or
// "" if the ID has no usable character.
func NFTTableName(nodeID string) string { return nft.TableName("raftswarm_mesh_", nodeID) }

// NewNFTForwarder returns node nodeID's forwarder, or an error saying why
// the kernel cannot forward here (no nft, not root nor CAP_NET_ADMIN, no
// nf_tables or nat support), so the node can report it and stay on the
// userspace path.
func NewNFTForwarder(ctx context.Context, nodeID string) (*NFTForwarder, error) {
	return newNFTForwarder(ctx, NFTTableName(nodeID), nftPath)
}

func newNFTForwarder(ctx context.Context, table, bin string) (*NFTForwarder, error) {
	if table == "" {
		return nil, errors.New("kernel forwarding: empty node ID")
	}
	f := &NFTForwarder{t: nft.Table{Name: table, Bin: bin}}
	// A check run of a table with a rule of each kind tells whether this
	// nft and kernel accept what we write.
	script, _, err := nftMeshScript(table, probeRules, nil)
	if err != nil {
		return nil, err
	}
	if err := f.t.Probe(ctx, script, "kernel forwarding unavailable (needs root or CAP_NET_ADMIN, "+nftPath+" and nf_tables with nat in the kernel)"); err != nil {
		return nil, err
	}
	return f, nil
}

// Table returns the table's name.
func (f *NFTForwarder) Table() string { return f.t.Name }

// Apply replaces the rules of the node's mesh table with rs in one
// transaction.
func (f *NFTForwarder) Apply(ctx context.Context, rs KernelRules) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	script, chains, err := nftMeshScript(f.t.Name, rs, f.chains)
	if err != nil {
		return err
	}
	if err := f.t.Apply(ctx, script); err != nil {
		// Nothing committed: the chains are the old ones. (Were they
		// not, a chain believed present is deleted harmlessly, and one
		// unknown stays, empty and unreferenced.)
		return err
	}
	f.chains = chains
	return nil
}

// Remove deletes the node's mesh table, counters included; a missing
// table is not an error.
func (f *NFTForwarder) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chains = nil
	return f.t.Remove(ctx)
}

// Connections reads the table's per-port counters: one `nft -j list
// counters` run, whose output grows with the ports published since the
// table was made (about 150 bytes each), not with the connections.
func (f *NFTForwarder) Connections(ctx context.Context) (map[uint16]uint64, error) {
	out, err := f.t.Run(ctx, "", "-j", "list", "counters", "table", "ip", f.t.Name)
	if err != nil {
		return nil, fmt.Errorf("read the connection counters of nftables table %s: %w", f.t.Name, err)
	}
	return parseNFTCounters(f.t.Name, []byte(out))
}

// counterPrefix starts the name of a port's counter: conns_<port>.
const counterPrefix = "conns_"

// parseNFTCounters reads the per-port connection counters of table from
// the output of `nft -j list counters table ip <table>`. The DNAT rules
// count in the nat chains, which only a connection's first packet
// crosses, so a counter's packets are its port's connections. Counters
// not named conns_<port> are ignored.
func parseNFTCounters(table string, out []byte) (map[uint16]uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Family  string `json:"family"`
				Table   string `json:"table"`
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse the counters nft listed for table %s: %w%s", table, err, nft.Excerpt(string(out)))
	}
	ports := make(map[uint16]uint64)
	for _, o := range doc.Nftables {
		c := o.Counter
		if c == nil || c.Family != "ip" || c.Table != table || !strings.HasPrefix(c.Name, counterPrefix) {
			continue
		}
		p, err := strconv.ParseUint(strings.TrimPrefix(c.Name, counterPrefix), 10, 16)
		if err != nil || p == 0 {
			continue
		}
		ports[uint16(p)] = c.Packets
	}
	return ports, nil
}

// probeRules has one rule of every kind nftMeshScript writes (TEST-NET
// addresses; only ever check-run, never committed).
var probeRules = KernelRules{Ports: []KernelPort{{Port: 9, Slots: []KernelSlot{
	{Addr: mustAddrPort("192.0.2.1:9"), Direct: mustAddrPort("192.0.2.2:9")},
	{},
}}}}

// nftMeshScript renders the transaction that replaces the rules of table
// with rs, given the regular chains prev the table has now, and returns
// the regular chains it leaves:
//
//	prerouting, output (nat, priority -110): new TCP connections to a local
//	  address (or the ingress address) jump to chain "ingress"
//	ingress: tcp dport P jump port_P, one rule per published port
//	port_P: numgen random mod N vmap { i : goto be_P_i | accept }
//	be_P_i: loopback clients dnat to the published address; others to the
//	  container when known, else to the published address unless it is a
//	  loopback one (then they fall through to the userspace listener);
//	  every dnat counts in the named counter conns_P
//
// A slot without an address is "accept": the connection goes on to the
// userspace listener bound on the same port (and is not counted here: the
// listener counts it). Only the first packet of a connection crosses nat
// chains; conntrack translates the rest, so established connections
// survive every re-apply, a removed backend drains, and a counter counts
// connections.
//
// The transaction creates the table if it is missing, flushes every chain
// (so no rule references a chain any more), deletes the chains of prev
// not wanted now ("add" first, so that one already gone is no error), and
// adds everything. Named counters are only ever added: one already there
// keeps its count.
func nftMeshScript(table string, rs KernelRules, prev map[string]bool) (string, map[string]bool, error) {
	if rs.IngressIP.IsValid() && !rs.IngressIP.Is4() {
		return "", nil, fmt.Errorf("kernel forwarding: ingress address %s is not IPv4", rs.IngressIP)
	}
	chains := map[string]bool{"ingress": true}
	for _, p := range rs.Ports {
		if len(p.Slots) == 0 {
			continue
		}
		chains[fmt.Sprintf("port_%d", p.Port)] = true
		for i, s := range p.Slots {
			if s.Addr.IsValid() {
				chains[fmt.Sprintf("be_%d_%d", p.Port, i)] = true
			}
		}
	}
	var stale []string
	for c := range prev {
		if !chains[c] {
			stale = append(stale, c)
		}
	}
	sort.Strings(stale)
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\nflush table ip %s\n", table, table)
	for _, c := range stale {
		fmt.Fprintf(&b, "chain ip %s %s\ndelete chain ip %s %s\n", table, c, table, c)
	}
	fmt.Fprintf(&b, "table ip %s {\n", table)
	match := "fib daddr type local"
	if rs.IngressIP.IsValid() {
		match = "ip daddr " + rs.IngressIP.String()
	}
	for _, hook := range []string{"prerouting", "output"} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority %d; policy accept;\n\t\t%s jump ingress\n\t}\n", hook, hook, natPriority, match)
	}
	b.WriteString("\tchain ingress {\n")
	seen := map[uint16]bool{}
	for _, p := range rs.Ports {
		if p.Port == 0 || seen[p.Port] {
			return "", nil, fmt.Errorf("kernel forwarding: port %d is zero or listed twice", p.Port)
		}
		seen[p.Port] = true
		if len(p.Slots) > 0 {
			fmt.Fprintf(&b, "\t\ttcp dport %d jump port_%d\n", p.Port, p.Port)
		}
	}
	b.WriteString("\t}\n")
	for _, p := range rs.Ports {
		if len(p.Slots) == 0 {
			continue
		}
		cnt := fmt.Sprintf("counter name %s%d ", counterPrefix, p.Port)
		fmt.Fprintf(&b, "\tcounter %s%d {\n\t}\n", counterPrefix, p.Port)
		var vm []string
		for i, s := range p.Slots {
			if !s.Addr.IsValid() {
				vm = append(vm, fmt.Sprintf("%d : accept", i))
				continue
			}
			vm = append(vm, fmt.Sprintf("%d : goto be_%d_%d", i, p.Port, i))
		}
		fmt.Fprintf(&b, "\tchain port_%d {\n\t\tnumgen random mod %d vmap { %s }\n\t}\n", p.Port, len(p.Slots), strings.Join(vm, ", "))
		for i, s := range p.Slots {
			if !s.Addr.IsValid() {
				continue
			}
			if err := checkSlotAddr(s.Addr); err != nil {
				return "", nil, fmt.Errorf("kernel forwarding, port %d: %w", p.Port, err)
			}
			fmt.Fprintf(&b, "\tchain be_%d_%d {\n", p.Port, i)
			switch {
			case s.Direct.IsValid():
				if err := checkSlotAddr(s.Direct); err != nil {
					return "", nil, fmt.Errorf("kernel forwarding, port %d: %w", p.Port, err)
				}
				fmt.Fprintf(&b, "\t\tmeta l4proto tcp ip saddr 127.0.0.0/8 %sdnat to %s\n", cnt, s.Addr)
				if !s.Addr.Addr().IsLoopback() {
					// The task calling its own published port: sent
					// back to itself, the packet would have to leave
					// the bridge by the port it came in (hairpin mode,
					// which Docker sets only without its userland
					// proxy) and the connection hangs. Through the
					// published address it reaches the task as from
					// Docker's proxy, as on the userspace path.
					fmt.Fprintf(&b, "\t\tmeta l4proto tcp ip saddr %s %sdnat to %s\n", s.Direct.Addr(), cnt, s.Addr)
				}
				fmt.Fprintf(&b, "\t\tmeta l4proto tcp %sdnat to %s\n", cnt, s.Direct)
			case s.Addr.Addr().IsLoopback():
				// A packet from outside cannot be sent to a loopback
				// address (martian without route_localnet): clients not
				// on loopback fall through to the userspace listener.
				fmt.Fprintf(&b, "\t\tmeta l4proto tcp ip saddr 127.0.0.0/8 %sdnat to %s\n", cnt, s.Addr)
			default:
				fmt.Fprintf(&b, "\t\tmeta l4proto tcp %sdnat to %s\n", cnt, s.Addr)
			}
			b.WriteString("\t}\n")
		}
	}
	b.WriteString("}\n")
	return b.String(), chains, nil
}

func checkSlotAddr(a netip.AddrPort) error {
	if !a.Addr().Is4() || a.Port() == 0 || a.Addr().IsUnspecified() {
		return fmt.Errorf("backend %s is not an IPv4 address and port", a)
	}
	return nil
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// RemoveNFTTable removes node nodeID's mesh table, if there is one and nft
// can: what a node that does not forward in the kernel (--mesh-path=
// userspace) does at start, in case an earlier run died with its rules in
// place. Without nft there is nothing to remove.
func RemoveNFTTable(ctx context.Context, nodeID string) error {
	table := NFTTableName(nodeID)
	if table == "" {
		return nil
	}
	if _, err := os.Stat(nftPath); err != nil {
		return nil
	}
	return nft.Table{Name: table, Bin: nftPath}.Remove(ctx)
}
