package listing

import (
	"context"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
)

// maxPages stops a client from following a server that keeps returning
// the same token.
const maxPages = 1 << 20

// pageSize is what each request asks for: the servers' maximum, since
// their byte budget per page usually ends a page first, and fewer pages
// mean fewer round trips (each a linearizable read on the leader).
const pageSize = 10_000

// all calls page with each next_page_token until one comes back empty.
func all(ctx context.Context, page func(ctx context.Context, token string) (next string, err error)) error {
	token := ""
	for i := 0; i < maxPages; i++ {
		next, err := page(ctx, token)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if next == token {
			return fmt.Errorf("list: the server returned the same page token twice (%q)", next)
		}
		token = next
	}
	return fmt.Errorf("list: more than %d pages", maxPages)
}

// NodeLister is the part of swarmpb.ControlClient that Nodes uses.
type NodeLister interface {
	ListNodes(ctx context.Context, in *swarmpb.ListNodesRequest, opts ...grpc.CallOption) (*swarmpb.ListNodesResponse, error)
}

// Nodes returns every node, in the server's order (by ID).
func Nodes(ctx context.Context, c NodeLister) ([]*swarmpb.NodeInfo, error) {
	var out []*swarmpb.NodeInfo
	err := all(ctx, func(ctx context.Context, token string) (string, error) {
		resp, err := c.ListNodes(ctx, &swarmpb.ListNodesRequest{PageSize: pageSize, PageToken: token})
		out = append(out, resp.GetNodes()...)
		return resp.GetNextPageToken(), err
	})
	return out, err
}

// ServiceLister is the part of swarmpb.ControlClient that Services uses.
type ServiceLister interface {
	ListServices(ctx context.Context, in *swarmpb.ListServicesRequest, opts ...grpc.CallOption) (*swarmpb.ListServicesResponse, error)
}

// Services returns every service, in the server's order (by ID).
func Services(ctx context.Context, c ServiceLister) ([]*swarmpb.ServiceInfo, error) {
	var out []*swarmpb.ServiceInfo
	err := all(ctx, func(ctx context.Context, token string) (string, error) {
		resp, err := c.ListServices(ctx, &swarmpb.ListServicesRequest{PageSize: pageSize, PageToken: token})
		out = append(out, resp.GetServices()...)
		return resp.GetNextPageToken(), err
	})
	return out, err
}

// TaskLister is the part of swarmpb.ControlClient that Tasks uses.
type TaskLister interface {
	ListTasks(ctx context.Context, in *swarmpb.ListTasksRequest, opts ...grpc.CallOption) (*swarmpb.ListTasksResponse, error)
}

// Tasks returns every task req selects (its page fields are ignored), in
// the server's order (by ID), and the hostnames of the nodes they are on.
func Tasks(ctx context.Context, c TaskLister, req *swarmpb.ListTasksRequest) ([]*swarmpb.Task, map[string]string, error) {
	var out []*swarmpb.Task
	names := map[string]string{}
	err := all(ctx, func(ctx context.Context, token string) (string, error) {
		resp, err := c.ListTasks(ctx, &swarmpb.ListTasksRequest{Services: req.GetServices(), Node: req.GetNode(), PageSize: pageSize, PageToken: token})
		out = append(out, resp.GetTasks()...)
		for id, n := range resp.GetNodeNames() {
			names[id] = n
		}
		return resp.GetNextPageToken(), err
	})
	return out, names, err
}
