package spec

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// Network limits. The README's "Networks and service discovery" section
// lists them for users.
const (
	MaxNetworkNameLen = 63
	// Subnet prefix lengths a network may ask for: a /16 holds 32766
	// service addresses in its lower half, a /24 still 126.
	MinSubnetPrefix = 16
	MaxSubnetPrefix = 24

	MaxServiceNetworks   = 16  // networks one service attaches to
	MaxNetworkAliases    = 32  // aliases of one service on one network
	MaxAliasLen          = 63  // a DNS label
	MaxNetworkRefLen     = 128 // a network name, ID or ID prefix in a service spec
	MaxNodeNetworks      = 256 // entries of a node's description
	MaxNodeNetworkField  = 256 // bytes of each string of those entries
	MaxDataPort          = 65535
	reservedAliasPrefix  = "tasks"
	networkDriverDefault = "overlay"
)

// networkNameRE is Docker's rule for network names.
var networkNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// aliasRE is a DNS label: letters, digits and '-', starting and ending
// with a letter or digit.
var aliasRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

// ValidateNetworkName checks a network name: 1-63 letters, digits, '_',
// '.' or '-', starting with a letter or digit (Docker's rule).
func ValidateNetworkName(name string) error {
	if name == "" {
		return fieldErr("network name", "is required")
	}
	if len(name) > MaxNetworkNameLen || !networkNameRE.MatchString(name) {
		return fieldErr("network name", "%s is invalid: use 1-%d letters, digits, '_', '.' or '-', starting with a letter or digit", quote(name), MaxNetworkNameLen)
	}
	return nil
}

// ValidateNetworkSpec checks a network spec as a user gives it.
func ValidateNetworkSpec(s *swarmpb.NetworkSpec) error {
	if s == nil {
		return fieldErr("network spec", "is required")
	}
	if err := ValidateNetworkName(s.Name); err != nil {
		return err
	}
	// "overlay" and "bridge" are accepted for compatibility with Docker's
	// commands; every driver means raftswarm's own data path.
	switch s.Driver {
	case "", "overlay", "bridge", "raftswarm":
	default:
		return fieldErr("network driver", "%s is not supported: use overlay (the default), bridge or raftswarm; all mean raftswarm's own data path", quote(s.Driver))
	}
	if s.Subnet != "" {
		if _, err := ParseNetworkSubnet(s.Subnet); err != nil {
			return err
		}
	}
	if err := ValidateLabels("network label", s.Labels); err != nil {
		return err
	}
	if n := proto.Size(s); n > MaxObjectSize {
		return fieldErr("network spec", "is %d bytes encoded: at most %d allowed", n, MaxObjectSize)
	}
	return nil
}

// NetworkDriver returns the driver a spec means ("overlay" when empty).
func NetworkDriver(s *swarmpb.NetworkSpec) string {
	if d := s.GetDriver(); d != "" {
		return d
	}
	return networkDriverDefault
}

// ParseNetworkSubnet parses a network's virtual address subnet: an IPv4
// CIDR with a prefix length of 16 to 24, in canonical form (no host bits).
func ParseNetworkSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fieldErr("subnet", "%s is not an IPv4 CIDR such as 10.20.0.0/16", quote(s))
	}
	if b := p.Bits(); b < MinSubnetPrefix || b > MaxSubnetPrefix {
		return netip.Prefix{}, fieldErr("subnet", "%s has a /%d prefix: use /%d to /%d", quote(s), b, MinSubnetPrefix, MaxSubnetPrefix)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fieldErr("subnet", "%s has host bits set: did you mean %s?", quote(s), m)
	}
	return p, nil
}

// ValidateNetworkAlias checks one alias of a service on a network.
func ValidateNetworkAlias(a string) error {
	if len(a) > MaxAliasLen || !aliasRE.MatchString(a) {
		return fieldErr("network alias", "%s is invalid: use 1-%d letters, digits or '-', starting and ending with a letter or digit", quote(a), MaxAliasLen)
	}
	if strings.EqualFold(a, reservedAliasPrefix) {
		return fieldErr("network alias", "%s is reserved (tasks.SERVICE lists a service's tasks)", quote(a))
	}
	return nil
}

// validateServiceNetworks checks spec.networks: at most MaxServiceNetworks,
// each target given once, aliases valid and not repeated on a network.
// Targets are network IDs as stored; a client may send names or ID
// prefixes, which the managers resolve before they store the spec.
func validateServiceNetworks(nets []*swarmpb.NetworkAttachmentConfig) error {
	if len(nets) > MaxServiceNetworks {
		return fieldErr("networks", "count %d exceeds the limit of %d", len(nets), MaxServiceNetworks)
	}
	targets := make(map[string]bool, len(nets))
	for _, n := range nets {
		if n == nil {
			return fieldErr("network", "is empty")
		}
		if err := checkText("network", n.Target, true, MaxNetworkRefLen, wordText); err != nil {
			return err
		}
		if targets[n.Target] {
			return fieldErr("network", "%s is attached more than once", quote(n.Target))
		}
		targets[n.Target] = true
		if len(n.Aliases) > MaxNetworkAliases {
			return fieldErr("network aliases", "count %d on network %s exceeds the limit of %d", len(n.Aliases), quote(n.Target), MaxNetworkAliases)
		}
		seen := make(map[string]bool, len(n.Aliases))
		for _, a := range n.Aliases {
			if err := ValidateNetworkAlias(a); err != nil {
				return err
			}
			if k := strings.ToLower(a); seen[k] {
				return fieldErr("network alias", "%s is given more than once on network %s", quote(a), quote(n.Target))
			} else {
				seen[k] = true
			}
		}
	}
	return nil
}

// validateNodeNetworks checks what a node claims about its networks and
// data port (NodeDescription.data_port and networks).
func validateNodeNetworks(d *swarmpb.NodeDescription) error {
	if p := d.GetDataPort(); p > MaxDataPort {
		return fmt.Errorf("invalid node description: data port %d is not between 1 and %d (or 0 for none)", p, MaxDataPort)
	}
	nets := d.GetNetworks()
	if len(nets) > MaxNodeNetworks {
		return fmt.Errorf("invalid node description: %d networks, at most %d allowed", len(nets), MaxNodeNetworks)
	}
	for i, n := range nets {
		if n == nil {
			return fmt.Errorf("invalid node description: network %d is empty", i)
		}
		for _, f := range []struct{ name, v string }{
			{"network id", n.GetNetworkId()},
			{"docker network", n.GetDockerNetwork()},
			{"bridge", n.GetBridge()},
			{"subnet", n.GetSubnet()},
			{"gateway", n.GetGateway()},
		} {
			if len(f.v) > MaxNodeNetworkField {
				return fmt.Errorf("invalid node description: network %d %s is %d bytes, at most %d allowed", i, f.name, len(f.v), MaxNodeNetworkField)
			}
			if err := printable(f.v); err != nil {
				return fmt.Errorf("invalid node description: network %d %s %s: %v", i, f.name, quoteShort(f.v), err)
			}
		}
		if n.GetNetworkId() == "" {
			return fmt.Errorf("invalid node description: network %d has no network id", i)
		}
		if s := n.GetSubnet(); s != "" {
			if _, _, err := net.ParseCIDR(s); err != nil {
				return fmt.Errorf("invalid node description: network %d subnet %s is not a CIDR", i, quoteShort(s))
			}
		}
		if g := n.GetGateway(); g != "" && net.ParseIP(g) == nil {
			return fmt.Errorf("invalid node description: network %d gateway %s is not an IP address", i, quoteShort(g))
		}
	}
	return nil
}
