package spec

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Replica cap. A service may ask for at most the cluster's max_replicas
// replicas (DefaultMaxReplicas when the setting is 0); the setting itself
// is bounded by MaxReplicasLimit so that no accepted spec can exhaust the
// leader's memory.
const (
	DefaultMaxReplicas uint64 = 100_000
	MaxReplicasLimit   uint64 = 1_000_000
)

// MaxReplicas is the replica cap in force under settings s.
func MaxReplicas(s *swarmpb.ClusterSettings) uint64 {
	if v := s.GetMaxReplicas(); v > 0 {
		return v
	}
	return DefaultMaxReplicas
}

// ValidateMaxReplicas checks a new value of the max_replicas setting.
func ValidateMaxReplicas(v uint64) error {
	if v < 1 || v > MaxReplicasLimit {
		return fmt.Errorf("max replicas must be between 1 and %d, got %d", MaxReplicasLimit, v)
	}
	return nil
}
