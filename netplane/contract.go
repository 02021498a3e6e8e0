package netplane

// This file is the contract between the data plane (this package) and the
// host it runs on: the container engine's bridge networks (implemented by
// agent/exec/docker) and the kernel's packet rules (implemented with
// nftables in rules_nft.go). The agent wires them together.

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/netip"
)

// Bridges is the container engine as the data plane needs it: one bridge
// network per cluster network this node has tasks on, named for the node so
// that several nodes can share one engine.
type Bridges interface {
	// EnsureBridge creates the engine network for a cluster network on this
	// node, or adopts the one a previous run created (same labels), and
	// returns it. The engine chooses a subnet that clashes with none of its
	// other networks.
	EnsureBridge(ctx context.Context, req BridgeRequest) (Bridge, error)
	// RemoveBridge deletes an engine network this node owns. A missing one
	// is not an error; one that still has containers attached is.
	RemoveBridge(ctx context.Context, dockerName string) error
	// ListBridges lists the engine networks this node owns (by label), so
	// that a restarted daemon adopts or removes what it left.
	ListBridges(ctx context.Context) ([]Bridge, error)
	// Endpoints lists the task containers attached to an engine network:
	// task ID (from the container's task label) -> IPv4 address.
	Endpoints(ctx context.Context, dockerName string) (map[string]netip.Addr, error)
}

// BridgeRequest asks for the engine network of one cluster network.
type BridgeRequest struct {
	NetworkID   string
	NetworkName string
	Internal    bool // tasks get no route out of the cluster
}

// Bridge is one engine network this node owns.
type Bridge struct {
	NetworkID  string       // the cluster network (engine network label)
	DockerName string       // the engine network's name
	Interface  string       // the bridge interface on the host
	Subnet     netip.Prefix // the bridge's subnet (task containers' addresses)
	Gateway    netip.Addr   // the host's address on it: DNS and the proxy listen here
}

// Rules programs the kernel. Apply replaces every rule this node owns (one
// table per node, so nodes sharing a host never touch each other's rules)
// in one atomic transaction; Remove deletes them all.
type Rules interface {
	Apply(ctx context.Context, rs RuleSet) error
	Remove(ctx context.Context) error
}

// RuleSet is everything the kernel must do for this node's bridges.
type RuleSet struct {
	Bridges []BridgeRules
}

// BridgeRules: TCP from containers on Interface to an address in VIPSubnet
// is redirected to Gateway:ProxyPort when the address is in Live, and to
// Gateway:RefusePort (a port bound but never listening, so the kernel
// answers with a reset: "connection refused" at once) otherwise. Every
// other packet from Interface to VIPSubnet is dropped, so nothing addressed
// to a virtual address ever leaves the host.
type BridgeRules struct {
	Interface  string
	Gateway    netip.Addr
	VIPSubnet  netip.Prefix
	ProxyPort  uint16
	RefusePort uint16
	Live       []netip.Addr
}

// ImageSource serves images to other nodes over the data path (KIND_IMAGE
// tunnel requests). Implemented by the container engine; may be nil.
type ImageSource interface {
	// SaveImage streams the image with this exact ID ("sha256:...") in
	// 'docker save' format; an image the engine lacks is an error.
	SaveImage(ctx context.Context, imageID string) (io.ReadCloser, error)
}

// Config is what a Plane needs from the node.
type Config struct {
	NodeID string
	// DataAddr is where the tunnel listener binds (host:port); empty: no
	// listener, so this node's tasks are reachable only from this node.
	DataAddr string
	// TLS returns the node's current mutual-TLS configurations: Server
	// requires and verifies a client certificate of this cluster; Client
	// presents this node's certificate. Called per connection, so renewed
	// certificates take effect.
	ServerTLS func() *tls.Config
	ClientTLS func() *tls.Config
	Bridges   Bridges     // nil: the node's engine has no networks; Attach fails
	Rules     Rules       // nil: no kernel rules (tests)
	Images    ImageSource // nil: this node serves no images
	Logger    *slog.Logger
	// RulesError, when set, is why this node cannot program kernel rules
	// (e.g. NewNFTRules failed: no root, no nf_tables). Attach then fails
	// with it, so tasks with networks are rejected with the cause; tasks
	// without networks are unaffected.
	RulesError error
}

// Attachment is how a task's container joins its networks: the engine
// networks to connect it to, and the DNS servers it must use.
type Attachment struct {
	Networks []AttachedNetwork
	DNS      []netip.Addr
}

// AttachedNetwork is one engine network a container connects to.
type AttachedNetwork struct {
	NetworkID  string
	DockerName string
	Aliases    []string
}
