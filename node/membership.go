package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const membershipFile = "node.json"

// Membership is what a node remembers of its cluster across restarts.
type Membership struct {
	NodeID        string           `json:"node_id"`
	ClusterID     string           `json:"cluster_id"`
	Role          swarmpb.NodeRole `json:"role"`
	AdvertiseAddr string           `json:"advertise_addr"`
	ListenAddr    string           `json:"listen_addr"`
	Managers      []string         `json:"managers"`
}

func (m *Membership) manager() bool { return m.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER }

func loadMembership(dir string) (*Membership, error) {
	data, err := os.ReadFile(filepath.Join(dir, membershipFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read membership: %w", err)
	}
	var m Membership
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, membershipFile), err)
	}
	return &m, nil
}

// save writes the file atomically: a crash leaves the old or the new one.
func (m *Membership) save(dir string) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, membershipFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write membership: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write membership: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write membership: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write membership: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, membershipFile))
}
