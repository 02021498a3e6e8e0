package node

import (
	"crypto/tls"

	"github.com/raftswarm/raftswarm/agent"
)

// DefaultDataPort is the data path's default port (--data-port).
const DefaultDataPort = 4790

// ALPNData is the ALPN protocol of the data path between node daemons.
const ALPNData = "raftswarm-data"

// dataPlaneConfig gives the agent the data path's port and its mutual-TLS
// configurations, built on the node's credentials (renewed certificates
// apply to new connections). Called with n.mu held.
func (n *Node) dataPlaneConfig(cfg *agent.Config) {
	creds := n.creds
	if creds == nil {
		return
	}
	cfg.DataPort = n.cfg.DataPort
	// Server: TLS 1.3 only, and a client certificate of this cluster is
	// required (the data plane then reads the peer's node ID from it).
	cfg.DataServerTLS = func() *tls.Config {
		c := creds.ServerTLSConfig()
		c.MinVersion = tls.VersionTLS13
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.NextProtos = []string{ALPNData}
		return c
	}
	// Client: presents this node's certificate and verifies the server's
	// against the cluster root. ServerName is left for the caller to set
	// to the node ID it dials: node certificates carry it as a DNS name,
	// so the standard verification checks it is that node.
	cfg.DataClientTLS = func() *tls.Config {
		c := creds.ClientTLSConfig(ALPNData)
		c.MinVersion = tls.VersionTLS13
		c.ServerName = ""
		return c
	}
}
