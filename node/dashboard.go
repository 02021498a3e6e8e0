package node

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/raftswarm/raftswarm/dashboard"
	"github.com/raftswarm/raftswarm/manager"
)

// startDashboard binds --dashboard-addr at start, whatever the node's role,
// so that a bad address fails the daemon at once; the page says when this
// node runs no manager.
func (n *Node) startDashboard() error {
	if n.cfg.DashboardAddr == "" || n.dash != nil {
		return nil
	}
	d, err := dashboard.Listen(n.cfg.DashboardAddr, dashboard.Config{Certificate: n.dashboardCert, Logger: n.log})
	if err != nil {
		return fmt.Errorf("--dashboard-addr: %w", err)
	}
	n.mu.Lock()
	n.dash = d
	mgr, member := n.mgr, n.member
	n.mu.Unlock()
	if mgr != nil && member != nil {
		n.dashboardSource(mgr, member.NodeID)
	}
	n.log.Info("dashboard serving", "url", d.URL(), "https_and_token", d.Secure())
	return nil
}

// dashboardCert serves this node's certificate (from the cluster's CA).
func (n *Node) dashboardCert() (*tls.Certificate, error) {
	n.mu.Lock()
	creds := n.creds
	n.mu.Unlock()
	if creds == nil {
		return nil, errors.New("this node is not in a cluster yet: it has no certificate")
	}
	return creds.ServerTLSConfig().GetCertificate(nil)
}

// dashboardSource points the dashboard at mgr's store (nil: no manager).
func (n *Node) dashboardSource(mgr *manager.Manager, nodeID string) {
	n.mu.Lock()
	d := n.dash
	n.mu.Unlock()
	if d == nil {
		return
	}
	if mgr == nil {
		d.SetSource(nil)
		return
	}
	d.SetSource(&dashboard.Source{Store: mgr.Store(), NodeID: nodeID, IsLeader: mgr.Raft().IsLeader})
}

// DashboardURL is where the dashboard is served, "" without one.
func (n *Node) DashboardURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dash == nil {
		return ""
	}
	return n.dash.URL()
}

func (n *Node) stopDashboard() {
	n.mu.Lock()
	d := n.dash
	n.dash = nil
	n.mu.Unlock()
	if d != nil {
		if err := d.Close(); err != nil {
			n.log.Warn("stopping dashboard", "err", err)
		}
	}
}
