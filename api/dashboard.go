package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// DashboardTokenPrefix starts every dashboard login token, so that a token
// pasted in the wrong place is recognisable.
const DashboardTokenPrefix = "SWDASH-1-"

// NewDashboardToken returns a fresh random dashboard login token.
func NewDashboardToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate dashboard token: %w", err)
	}
	return DashboardTokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// GetDashboardToken returns the login token of the managers' web dashboard
// (served on non-loopback addresses), creating it on first use and
// replacing it with rotate. The token lives in the Cluster object, in the
// encrypted Raft log, like the join tokens; every manager's dashboard
// watches it, so a rotation ends the old token's sessions everywhere.
func (s *ControlServer) GetDashboardToken(ctx context.Context, req *swarmpb.GetDashboardTokenRequest) (*swarmpb.GetDashboardTokenResponse, error) {
	if !req.Rotate {
		c, err := s.cluster(ctx)
		if err != nil {
			return nil, err
		}
		if c.GetDashboardToken() != "" {
			return &swarmpb.GetDashboardTokenResponse{Token: c.GetDashboardToken()}, nil
		}
	}
	c, err := s.updateCluster(ctx, "set dashboard token", func(c *swarmpb.Cluster) (bool, error) {
		if !req.Rotate && c.DashboardToken != "" {
			return false, nil // a concurrent call created it: keep that one
		}
		t, err := NewDashboardToken()
		if err != nil {
			return false, err
		}
		c.DashboardToken = t
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetDashboardTokenResponse{Token: c.GetDashboardToken()}, nil
}

func (p *ControlProxy) GetDashboardToken(ctx context.Context, r *swarmpb.GetDashboardTokenRequest) (*swarmpb.GetDashboardTokenResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetDashboardToken, swarmpb.ControlClient.GetDashboardToken)
}
