package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestValidateNetworkSpec(t *testing.T) {
	ok := []*swarmpb.NetworkSpec{
		{Name: "appnet"},
		{Name: "a"},
		{Name: "my_net.v2-x", Driver: "overlay", Subnet: "10.20.0.0/16", Labels: map[string]string{"team": "web"}, Internal: true},
		{Name: strings.Repeat("n", 63), Driver: "bridge", Subnet: "192.168.7.0/24"},
		{Name: "rs", Driver: "raftswarm", Subnet: "10.96.16.0/20"},
	}
	for _, s := range ok {
		if err := ValidateNetworkSpec(s); err != nil {
			t.Errorf("ValidateNetworkSpec(%v): %v", s, err)
		}
	}
	bad := []struct {
		s    *swarmpb.NetworkSpec
		want string
	}{
		{nil, "network spec is required"},
		{&swarmpb.NetworkSpec{}, "network name is required"},
		{&swarmpb.NetworkSpec{Name: "-x"}, `network name "-x" is invalid`},
		{&swarmpb.NetworkSpec{Name: "a b"}, `network name "a b" is invalid`},
		{&swarmpb.NetworkSpec{Name: "a/b"}, `network name "a/b" is invalid`},
		{&swarmpb.NetworkSpec{Name: strings.Repeat("n", 64)}, "is invalid: use 1-63"},
		{&swarmpb.NetworkSpec{Name: "n", Driver: "macvlan"}, `network driver "macvlan" is not supported: use overlay (the default), bridge or raftswarm`},
		{&swarmpb.NetworkSpec{Name: "n", Subnet: "10.0.0.0"}, `subnet "10.0.0.0" is not an IPv4 CIDR`},
		{&swarmpb.NetworkSpec{Name: "n", Subnet: "fd00::/64"}, `subnet "fd00::/64" is not an IPv4 CIDR`},
		{&swarmpb.NetworkSpec{Name: "n", Subnet: "10.0.0.0/8"}, `subnet "10.0.0.0/8" has a /8 prefix: use /16 to /24`},
		{&swarmpb.NetworkSpec{Name: "n", Subnet: "10.0.0.0/28"}, "has a /28 prefix"},
		{&swarmpb.NetworkSpec{Name: "n", Subnet: "10.0.0.1/24"}, `subnet "10.0.0.1/24" has host bits set: did you mean 10.0.0.0/24?`},
		{&swarmpb.NetworkSpec{Name: "n", Labels: map[string]string{"a=b": ""}}, `network label key "a=b" contains '='`},
	}
	for _, c := range bad {
		err := ValidateNetworkSpec(c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ValidateNetworkSpec(%v) = %v, want %q", c.s, err, c.want)
		}
	}
}

func TestValidateServiceNetworks(t *testing.T) {
	spec := func(nets ...*swarmpb.NetworkAttachmentConfig) *swarmpb.ServiceSpec {
		s := validSpec()
		s.Networks = nets
		return s
	}
	att := func(target string, aliases ...string) *swarmpb.NetworkAttachmentConfig {
		return &swarmpb.NetworkAttachmentConfig{Target: target, Aliases: aliases}
	}
	if err := ValidateServiceSpec(spec(att("appnet", "db", "Cache-1"), att("other")), 0); err != nil {
		t.Fatal(err)
	}
	many := make([]*swarmpb.NetworkAttachmentConfig, 17)
	for i := range many {
		many[i] = att(fmt.Sprintf("n%d", i))
	}
	manyAliases := make([]string, 33)
	for i := range manyAliases {
		manyAliases[i] = fmt.Sprintf("a%d", i)
	}
	bad := []struct {
		s    *swarmpb.ServiceSpec
		want string
	}{
		{spec(many...), "networks count 17 exceeds the limit of 16"},
		{spec(att("")), "network is required"},
		{spec(att("a b")), `network "a b" contains whitespace`},
		{spec(att("appnet"), att("appnet")), `network "appnet" is attached more than once`},
		{spec(att("appnet", manyAliases...)), "network aliases count 33"},
		{spec(att("appnet", "-db")), `network alias "-db" is invalid`},
		{spec(att("appnet", "db-")), `network alias "db-" is invalid`},
		{spec(att("appnet", "a.b")), `network alias "a.b" is invalid`},
		{spec(att("appnet", "a_b")), `network alias "a_b" is invalid`},
		{spec(att("appnet", strings.Repeat("a", 64))), "is invalid"},
		{spec(att("appnet", "Tasks")), `network alias "Tasks" is reserved`},
		{spec(att("appnet", "db", "DB")), `network alias "DB" is given more than once on network "appnet"`},
	}
	for _, c := range bad {
		err := ValidateServiceSpec(c.s, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.s.Networks, err, c.want)
		}
	}
}

// A node's network claims are bounded and parsed, like the rest of its
// description.
func TestValidateNodeDescriptionNetworks(t *testing.T) {
	desc := func(port uint32, nets ...*swarmpb.NodeNetwork) *swarmpb.NodeDescription {
		return &swarmpb.NodeDescription{Hostname: "w1", DataPort: port, Networks: nets}
	}
	good := &swarmpb.NodeNetwork{NetworkId: "n1", DockerNetwork: "rs-appnet-abcd1234", Bridge: "rs0123456789ab", Subnet: "172.18.0.0/16", Gateway: "172.18.0.1", Tasks: 2}
	if err := ValidateNodeDescription(desc(4790, good)); err != nil {
		t.Fatal(err)
	}
	if err := ValidateNodeDescription(desc(0)); err != nil {
		t.Fatal(err)
	}
	many := make([]*swarmpb.NodeNetwork, 257)
	for i := range many {
		many[i] = &swarmpb.NodeNetwork{NetworkId: fmt.Sprint(i)}
	}
	bad := []struct {
		d    *swarmpb.NodeDescription
		want string
	}{
		{desc(65536), "data port 65536"},
		{desc(1, many...), "257 networks, at most 256"},
		{desc(1, &swarmpb.NodeNetwork{}), "has no network id"},
		{desc(1, &swarmpb.NodeNetwork{NetworkId: strings.Repeat("x", 3<<20)}), "network id is 3145728 bytes, at most 256"},
		{desc(1, &swarmpb.NodeNetwork{NetworkId: "n", Bridge: "br\n0"}), "non-printable"},
		{desc(1, &swarmpb.NodeNetwork{NetworkId: "n", Subnet: "nope"}), `subnet "nope" is not a CIDR`},
		{desc(1, &swarmpb.NodeNetwork{NetworkId: "n", Gateway: "1.2.3"}), `gateway "1.2.3" is not an IP address`},
	}
	for _, c := range bad {
		err := ValidateNodeDescription(c.d)
		if err == nil || !strings.Contains(err.Error(), c.want) || len(err.Error()) > 300 {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}
