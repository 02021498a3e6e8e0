package api

import (
	"context"
	"errors"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// Cluster settings and the unlock key (autolock). The key-encrypting key
// lives in Cluster.unlock_key, inside the (encrypted) Raft log, so every
// manager can re-wrap its own data key when it changes; only GetUnlockKey
// (and the call that turns autolock on) ever returns it.

// ClusterInfo is the cluster as the API shows it: never the CA key or the
// unlock key.
func ClusterInfo(c *swarmpb.Cluster) *swarmpb.ClusterInfo {
	info := &swarmpb.ClusterInfo{
		Id: c.GetId(), Name: c.GetName(), RootCaDigest: c.GetRootCa().GetDigest(),
		Version: c.GetMeta().GetVersion(),
	}
	info.Settings = &swarmpb.ClusterSettings{}
	if c.GetSettings() != nil {
		info.Settings = proto.Clone(c.GetSettings()).(*swarmpb.ClusterSettings)
	}
	// Show the cap in force, not 0 for "the default".
	info.Settings.MaxReplicas = spec.MaxReplicas(c.GetSettings())
	return info
}

func (s *ControlServer) cluster(ctx context.Context) (*swarmpb.Cluster, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var c *swarmpb.Cluster
	s.Store.View(func(tx state.ReadTx) { c = tx.Cluster() })
	if c == nil {
		return nil, Status(ErrNotInCluster)
	}
	return c, nil
}

func (s *ControlServer) GetCluster(ctx context.Context, _ *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	c, err := s.cluster(ctx)
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetClusterResponse{Cluster: ClusterInfo(c)}, nil
}

// updateCluster applies fn to a copy of the current cluster object and
// writes it when fn reports a change, retrying when another write raced
// (the update quotes Meta.Version). It returns the object as written.
func (s *ControlServer) updateCluster(ctx context.Context, what string, fn func(*swarmpb.Cluster) (bool, error)) (*swarmpb.Cluster, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.cluster(ctx)
		if err != nil {
			return nil, err
		}
		c := proto.Clone(cur).(*swarmpb.Cluster)
		if c.Settings == nil {
			c.Settings = &swarmpb.ClusterSettings{}
		}
		changed, err := fn(c)
		if err != nil {
			return nil, Status(err)
		}
		if !changed {
			return cur, nil
		}
		idx, err := s.Raft.Apply(ctx, state.Batch(state.Update(c)))
		if errors.Is(err, state.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, Status(fmt.Errorf("%s: %w", what, err))
		}
		if c.Meta == nil {
			c.Meta = &swarmpb.Meta{}
		}
		c.Meta.Version = idx
		return c, nil
	}
}

// UpdateCluster changes the settings that are set in the request. Turning
// autolock on creates an unlock key and returns it; turning it off drops
// the key (every manager then unwraps its data key).
func (s *ControlServer) UpdateCluster(ctx context.Context, req *swarmpb.UpdateClusterRequest) (*swarmpb.UpdateClusterResponse, error) {
	if req.MaxReplicas != nil {
		if err := spec.ValidateMaxReplicas(*req.MaxReplicas); err != nil {
			return nil, Status(invalidf("%v", err))
		}
	}
	var newKey []byte
	c, err := s.updateCluster(ctx, "update cluster", func(c *swarmpb.Cluster) (bool, error) {
		changed := false
		newKey = nil
		if req.MaxReplicas != nil && c.Settings.MaxReplicas != *req.MaxReplicas {
			c.Settings.MaxReplicas = *req.MaxReplicas
			changed = true
		}
		if req.Autolock != nil && *req.Autolock != c.Settings.Autolock {
			c.Settings.Autolock = *req.Autolock
			c.UnlockKey = nil
			if *req.Autolock {
				k, err := raft.NewKey()
				if err != nil {
					return false, err
				}
				c.UnlockKey, newKey = k, k
			}
			changed = true
		}
		return changed, nil
	})
	if err != nil {
		return nil, err
	}
	return &swarmpb.UpdateClusterResponse{Cluster: ClusterInfo(c), UnlockKey: raft.FormatUnlockKey(newKey)}, nil
}

// GetUnlockKey returns the unlock key (empty while autolock is off), first
// replacing it with rotate. Managers re-wrap their data keys under the new
// key as they apply the change; one that is down keeps the old wrapping
// until it is unlocked with the old key.
func (s *ControlServer) GetUnlockKey(ctx context.Context, req *swarmpb.GetUnlockKeyRequest) (*swarmpb.GetUnlockKeyResponse, error) {
	if !req.Rotate {
		c, err := s.cluster(ctx)
		if err != nil {
			return nil, err
		}
		if !c.GetSettings().GetAutolock() {
			return &swarmpb.GetUnlockKeyResponse{}, nil
		}
		return &swarmpb.GetUnlockKeyResponse{UnlockKey: raft.FormatUnlockKey(c.UnlockKey)}, nil
	}
	c, err := s.updateCluster(ctx, "rotate unlock key", func(c *swarmpb.Cluster) (bool, error) {
		if !c.Settings.Autolock {
			return false, refusedf("cannot rotate the unlock key: autolock is off (turn it on with 'swarmctl swarm update --autolock=true')")
		}
		k, err := raft.NewKey()
		if err != nil {
			return false, err
		}
		c.UnlockKey = k
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetUnlockKeyResponse{UnlockKey: raft.FormatUnlockKey(c.UnlockKey)}, nil
}
