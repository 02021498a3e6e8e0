package listing

import (
	"context"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
)

// NetworkLister is the part of swarmpb.ControlClient that Networks uses.
type NetworkLister interface {
	ListNetworks(ctx context.Context, in *swarmpb.ListNetworksRequest, opts ...grpc.CallOption) (*swarmpb.ListNetworksResponse, error)
}

// Networks returns every network, in the server's order (by ID).
func Networks(ctx context.Context, c NetworkLister) ([]*swarmpb.NetworkInfo, error) {
	var out []*swarmpb.NetworkInfo
	err := all(ctx, func(ctx context.Context, token string) (string, error) {
		resp, err := c.ListNetworks(ctx, &swarmpb.ListNetworksRequest{PageSize: pageSize, PageToken: token})
		out = append(out, resp.GetNetworks()...)
		return resp.GetNextPageToken(), err
	})
	return out, err
}
