package api

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// Networks (issue 10, docs/discovery.md). A network is an object in Raft
// with a virtual-address subnet: spec.subnet, or the next free /20 of
// SubnetPool. Services attach to networks by ID (the API resolves names);
// each attached service holds one VIP per network, from the lower half of
// the subnet, which the store keeps unique (state.VIPConflictError).

// SubnetPool is where networks created without --subnet get their subnet,
// AllocatedPrefix bits each: 256 networks.
var SubnetPool = netip.MustParsePrefix("10.96.0.0/12")

// AllocatedPrefix is the prefix length of an allocated subnet.
const AllocatedPrefix = 20

// findNetwork resolves an ID, name or unique ID prefix.
func findNetwork(tx state.ReadTx, ref string) (*swarmpb.Network, error) {
	if ref == "" {
		return nil, invalidf("a network name or ID is required")
	}
	if n := tx.GetNetwork(ref); n != nil {
		return n, nil
	}
	if n := tx.GetNetworkByName(ref); n != nil {
		return n, nil
	}
	var match []*swarmpb.Network
	for _, n := range tx.ListNetworks() {
		if strings.HasPrefix(n.Id, ref) {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, notFoundf("network %s not found", ref)
	}
	return nil, invalidf("network %q is ambiguous: %d network IDs start with it", ref, len(match))
}

func networkName(n *swarmpb.Network) string {
	if name := n.GetSpec().GetName(); name != "" {
		return name
	}
	return n.GetId()
}

// overlaps reports whether two prefixes share an address.
func overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// subnetsInUse parses the subnets of the stored networks.
func subnetsInUse(tx state.ReadTx) map[string]netip.Prefix {
	out := map[string]netip.Prefix{}
	for _, n := range tx.ListNetworks() {
		if p, err := netip.ParsePrefix(n.GetSubnet()); err == nil {
			out[networkName(n)] = p
		}
	}
	return out
}

// allocateSubnet picks the first /20 of SubnetPool that overlaps no
// network's subnet.
func allocateSubnet(used map[string]netip.Prefix) (netip.Prefix, error) {
	step := uint32(1) << (32 - AllocatedPrefix)
	base := SubnetPool.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	count := uint32(1) << (AllocatedPrefix - SubnetPool.Bits())
next:
	for i := uint32(0); i < count; i++ {
		a := start + i*step
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), AllocatedPrefix)
		for _, u := range used {
			if overlaps(p, u) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, refusedf("no free subnet left in %s: remove unused networks or create one with --subnet", SubnetPool)
}

// CreateNetwork stores a new network with its virtual-address subnet.
func (s *ControlServer) CreateNetwork(ctx context.Context, req *swarmpb.CreateNetworkRequest) (*swarmpb.CreateNetworkResponse, error) {
	if err := spec.ValidateNetworkSpec(req.GetSpec()); err != nil {
		return nil, Status(invalidf("%v", err))
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		if err != nil {
			return nil, err
		}
		var out *swarmpb.Network
		s.Store.View(func(tx state.ReadTx) { out = tx.GetNetwork(r.ObjectId) })
		if out != nil {
			return &swarmpb.CreateNetworkResponse{Network: out}, nil
		}
		return nil, Status(notFoundf("the network this request created was removed meanwhile"))
	}
	// Subnets are chosen from this leader's store; serializing creates here
	// keeps two concurrent ones from taking the same subnet.
	s.netMu.Lock()
	defer s.netMu.Unlock()
	sp := proto.Clone(req.Spec).(*swarmpb.NetworkSpec)
	var subnet netip.Prefix
	var err error
	s.Store.View(func(tx state.ReadTx) {
		if tx.GetNetworkByName(sp.Name) != nil {
			err = &userError{kind: state.ErrNameConflict, msg: fmt.Sprintf("network %s already exists", sp.Name)}
			return
		}
		used := subnetsInUse(tx)
		if sp.Subnet == "" {
			subnet, err = allocateSubnet(used)
			return
		}
		subnet, _ = spec.ParseNetworkSubnet(sp.Subnet)
		names := make([]string, 0, len(used))
		for name := range used {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if overlaps(subnet, used[name]) {
				err = refusedf("subnet %s overlaps %s of network %s", subnet, used[name], name)
				return
			}
		}
	})
	if err != nil {
		return nil, Status(err)
	}
	n := &swarmpb.Network{Id: identity.NewID(), Spec: sp, Subnet: subnet.String()}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Create(n))); err != nil {
		if errors.Is(err, state.ErrNameConflict) {
			return nil, Status(&userError{kind: state.ErrNameConflict, msg: fmt.Sprintf("network %s already exists", sp.Name)})
		}
		return nil, Status(fmt.Errorf("create network %s: %w", sp.Name, err))
	}
	var out *swarmpb.Network
	s.Store.View(func(tx state.ReadTx) { out = tx.GetNetwork(n.Id) })
	if out == nil {
		return nil, Status(notFoundf("network %s was removed meanwhile", sp.Name))
	}
	return &swarmpb.CreateNetworkResponse{Network: out}, nil
}

// servicesOn lists the services whose spec attaches network id, by name.
func servicesOn(tx state.ReadTx, id string) []*swarmpb.Service {
	var out []*swarmpb.Service
	for _, svc := range tx.ListServices() {
		if attachment(svc.GetSpec(), id) != nil {
			out = append(out, svc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSpec().GetName() < out[j].GetSpec().GetName() })
	return out
}

// attachment returns sp's attachment to network id, or nil.
func attachment(sp *swarmpb.ServiceSpec, id string) *swarmpb.NetworkAttachmentConfig {
	for _, a := range sp.GetNetworks() {
		if a.GetTarget() == id {
			return a
		}
	}
	return nil
}

// vipOn returns svc's VIP on network id, or "".
func vipOn(svc *swarmpb.Service, id string) string {
	for _, v := range svc.GetVirtualIps() {
		if v.GetNetworkId() == id {
			return v.GetAddr()
		}
	}
	return ""
}

// GetNetwork returns a network, the services attached to it with their
// addresses, and what each node reports it set up for it.
func (s *ControlServer) GetNetwork(ctx context.Context, req *swarmpb.GetNetworkRequest) (*swarmpb.GetNetworkResponse, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	resp := &swarmpb.GetNetworkResponse{}
	var err error
	s.Store.View(func(tx state.ReadTx) {
		var n *swarmpb.Network
		if n, err = findNetwork(tx, req.GetNetwork()); err != nil {
			return
		}
		resp.Network = n
		for _, svc := range servicesOn(tx, n.Id) {
			resp.Services = append(resp.Services, &swarmpb.NetworkAttachedService{
				ServiceId:   svc.Id,
				ServiceName: svc.GetSpec().GetName(),
				Vip:         vipOn(svc, n.Id),
				Aliases:     attachment(svc.GetSpec(), n.Id).GetAliases(),
			})
		}
		for _, node := range tx.ListNodes() {
			for _, nn := range node.GetDescription().GetNetworks() {
				if nn.GetNetworkId() == n.Id {
					resp.Nodes = append(resp.Nodes, &swarmpb.NetworkNodeInfo{NodeId: node.Id, Hostname: node.GetDescription().GetHostname(), State: nn})
					break
				}
			}
		}
	})
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}

// ListNetworks returns one page of networks in ID order (see paging.go),
// each with the number of services attached.
func (s *ControlServer) ListNetworks(ctx context.Context, req *swarmpb.ListNetworksRequest) (*swarmpb.ListNetworksResponse, error) {
	size, after, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, Status(err)
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	resp := &swarmpb.ListNetworksResponse{}
	s.Store.View(func(tx state.ReadTx) {
		counts := map[string]uint32{}
		for _, svc := range tx.ListServices() {
			for _, a := range svc.GetSpec().GetNetworks() {
				counts[a.GetTarget()]++
			}
		}
		var page []*swarmpb.Network
		for _, n := range tx.ListNetworks() { // in ID order
			if n.Id > after {
				page = append(page, n)
				if len(page) > size {
					break
				}
			}
		}
		pg := pager{limit: size}
		for _, n := range page {
			info := &swarmpb.NetworkInfo{Network: n, Services: counts[n.Id]}
			if !pg.fits(proto.Size(info)) {
				break
			}
			resp.Networks = append(resp.Networks, info)
		}
		if len(resp.Networks) > 0 {
			resp.NextPageToken = pg.next(len(page), resp.Networks[len(resp.Networks)-1].Network.Id)
		}
	})
	return resp, nil
}

// RemoveNetwork deletes a network no service's spec attaches.
func (s *ControlServer) RemoveNetwork(ctx context.Context, req *swarmpb.RemoveNetworkRequest) (*swarmpb.RemoveNetworkResponse, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		return &swarmpb.RemoveNetworkResponse{}, err
	}
	var n *swarmpb.Network
	var err error
	s.Store.View(func(tx state.ReadTx) {
		if n, err = findNetwork(tx, req.GetNetwork()); err != nil {
			return
		}
		if users := servicesOn(tx, n.Id); len(users) > 0 {
			names := make([]string, len(users))
			for i, u := range users {
				names[i] = u.GetSpec().GetName()
			}
			noun := "services"
			if len(names) == 1 {
				noun = "service"
			}
			err = refusedf("network %s is in use by %s %s", networkName(n), noun, strings.Join(names, ", "))
		}
	})
	if err != nil {
		return nil, Status(err)
	}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Delete(n))); err != nil {
		if inUse := (*state.NetworkInUseError)(nil); errors.As(err, &inUse) {
			// A service attached it since the check above.
			return nil, Status(refusedf("%s", inUse.Error()))
		}
		return nil, Status(fmt.Errorf("remove network %s: %w", networkName(n), err))
	}
	return &swarmpb.RemoveNetworkResponse{}, nil
}

// resolveNetworks rewrites sp.networks targets (names, IDs or unique ID
// prefixes) to network IDs, refusing an unknown network, one attached
// twice, and a name or alias that another service on the same network
// already answers to. exceptID is the service being updated.
func resolveNetworks(tx state.ReadTx, exceptID string, sp *swarmpb.ServiceSpec) error {
	seen := map[string]string{}
	for _, a := range sp.GetNetworks() {
		n, err := findNetwork(tx, a.Target)
		if err != nil {
			return err
		}
		if prev, dup := seen[n.Id]; dup {
			return invalidf("network %s is attached more than once (as %s and %s)", networkName(n), prev, a.Target)
		}
		seen[n.Id] = a.Target
		a.Target = n.Id
	}
	for _, a := range sp.GetNetworks() {
		mine := dnsNames(sp.GetName(), a)
		for _, other := range servicesOn(tx, a.Target) {
			if other.Id == exceptID {
				continue
			}
			theirs := dnsNames(other.GetSpec().GetName(), attachment(other.GetSpec(), a.Target))
			for _, m := range mine {
				for _, t := range theirs {
					if strings.EqualFold(m.name, t.name) {
						return refusedf("%s of service %s clashes with %s of service %s on network %s",
							m.describe(), sp.GetName(), t.describe(), other.GetSpec().GetName(), networkName(tx.GetNetwork(a.Target)))
					}
				}
			}
		}
	}
	return nil
}

type dnsName struct {
	name  string
	alias bool
}

func (d dnsName) describe() string {
	if d.alias {
		return fmt.Sprintf("alias %q", d.name)
	}
	return fmt.Sprintf("name %q", d.name)
}

// dnsNames lists what a service answers to on a network: its name and
// its aliases there.
func dnsNames(service string, a *swarmpb.NetworkAttachmentConfig) []dnsName {
	out := []dnsName{{name: service}}
	for _, al := range a.GetAliases() {
		out = append(out, dnsName{name: al, alias: true})
	}
	return out
}

// allocateVIPs returns the VIPs of a service (id, being given spec sp)
// holding cur: the VIP it has on each network it stays on, the lowest free
// address of the subnet's lower half (skipping the first two) on each new
// one, none for networks it leaves.
func allocateVIPs(tx state.ReadTx, id string, sp *swarmpb.ServiceSpec, cur []*swarmpb.VirtualIP) ([]*swarmpb.VirtualIP, error) {
	var out []*swarmpb.VirtualIP
	for _, a := range sp.GetNetworks() {
		kept := false
		for _, v := range cur {
			if v.GetNetworkId() == a.Target && v.GetAddr() != "" {
				out = append(out, &swarmpb.VirtualIP{NetworkId: a.Target, Addr: v.GetAddr()})
				kept = true
				break
			}
		}
		if kept {
			continue
		}
		n := tx.GetNetwork(a.Target)
		subnet, err := netip.ParsePrefix(n.GetSubnet())
		if err != nil || !subnet.Addr().Is4() {
			return nil, refusedf("network %s has no usable subnet (%q)", networkName(n), n.GetSubnet())
		}
		used := map[netip.Addr]bool{}
		for _, other := range tx.ListServices() {
			if other.Id == id {
				continue
			}
			if ip, err := netip.ParseAddr(vipOn(other, a.Target)); err == nil {
				used[ip] = true
			}
		}
		addr, ok := lowestFreeVIP(subnet, used)
		if !ok {
			return nil, refusedf("network %s has no free service address left in %s", networkName(n), subnet)
		}
		out = append(out, &swarmpb.VirtualIP{NetworkId: a.Target, Addr: addr.String()})
	}
	return out, nil
}

// lowestFreeVIP returns the lowest address of subnet's lower half, from the
// third on, that used lacks.
func lowestFreeVIP(subnet netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	half := 1 << (32 - subnet.Bits() - 1)
	a := subnet.Masked().Addr().Next().Next()
	for i := 2; i < half; i++ {
		if !used[a] {
			return a, true
		}
		a = a.Next()
	}
	return netip.Addr{}, false
}

func vipsEqual(a, b []*swarmpb.VirtualIP) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
