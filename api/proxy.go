package api

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Router picks where a control call goes: the local leader's ControlServer,
// or a connection to the leader. It fails with ErrNotInCluster,
// ErrNotManager or a quorum error when there is nowhere to go.
type Router interface {
	RouteControl(ctx context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error)
}

// ControlProxy serves Control on the local socket and relays each call to
// the leader, so swarmctl may talk to any manager.
type ControlProxy struct {
	swarmpb.UnimplementedControlServer
	Router Router
	// Images, when set, pins created and updated services to the image ID
	// this node's engine has for their image (images.go).
	Images LocalImages
}

// LeaderWatcher is an optional Router ability: LeaderChanged returns a
// channel closed at the next change of the leader this manager knows
// (including to none). A relay uses it to give up on a leader that was cut
// off without its connection closing: the call would otherwise hang on
// dropped packets until the client's deadline.
type LeaderWatcher interface {
	LeaderChanged() <-chan struct{}
}

// relayRetryDelay is how long a relay waits for an election before routing
// again; a relay routes at most 10 times.
const relayRetryDelay = 200 * time.Millisecond

func relay[Req, Resp any](ctx context.Context, p *ControlProxy, req Req,
	local func(swarmpb.ControlServer, context.Context, Req) (Resp, error),
	remote func(swarmpb.ControlClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var zero Resp
	var lastErr error
	// One request ID for every attempt: a resent write is applied once
	// (requests.go).
	rid := newRequestID()
	ctx = metadata.AppendToOutgoingContext(ctx, RequestIDHeader, rid)
	for attempt := 0; attempt < 10; attempt++ {
		changed := p.leaderChanged()
		srv, conn, err := p.Router.RouteControl(ctx)
		if err != nil {
			return zero, Status(err)
		}
		var resp Resp
		moved := false
		if srv != nil {
			// Each attempt counts its own writes (raft.WithRequestID).
			resp, err = local(srv, raft.WithRequestID(ctx, rid), req)
		} else {
			resp, err, moved = relayOnce(ctx, changed, func(actx context.Context) (Resp, error) {
				return remote(swarmpb.NewControlClient(conn), actx, req)
			})
		}
		if !moved && !errors.Is(FromStatus(err), raft.ErrNotLeader) && !leaderUnreachable(err) {
			return resp, err
		}
		// The leader changed, died or was cut off under us (a leader that
		// lost its quorum answers with the quorum error, or not at all, while
		// the majority elects another). Give the election a moment and route
		// again: the next route either finds the new leader or, if this
		// manager is the one cut off, reports quorum loss. A write the old
		// leader could not commit is safe to send again; one it did commit
		// is not applied again (the request ID above): it answers as the
		// first attempt would have.
		lastErr = err
		if !retry.Sleep(ctx, relayRetryDelay) {
			return zero, Status(ctx.Err())
		}
	}
	return zero, lastErr
}

// leaderChanged returns the router's leader-change channel, or nil (never
// ready) when the router cannot tell.
func (p *ControlProxy) leaderChanged() <-chan struct{} {
	if w, ok := p.Router.(LeaderWatcher); ok {
		return w.LeaderChanged()
	}
	return nil
}

// relayOnce makes one call to the leader, cancelled if the known leader
// changes before it answers. moved reports that the leader changed during a
// call that failed while ctx is still live: the caller should route again.
func relayOnce[Resp any](ctx context.Context, changed <-chan struct{}, call func(context.Context) (Resp, error)) (resp Resp, err error, moved bool) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-actx.Done(): // answered, or the caller gave up
		}
	}()
	resp, err = call(actx)
	if err == nil || ctx.Err() != nil {
		return resp, err, false
	}
	select {
	case <-changed:
		return resp, err, true
	default:
		return resp, err, false
	}
}

func (p *ControlProxy) ListNodes(ctx context.Context, r *swarmpb.ListNodesRequest) (*swarmpb.ListNodesResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListNodes, swarmpb.ControlClient.ListNodes)
}
func (p *ControlProxy) GetNode(ctx context.Context, r *swarmpb.GetNodeRequest) (*swarmpb.GetNodeResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetNode, swarmpb.ControlClient.GetNode)
}
func (p *ControlProxy) UpdateNode(ctx context.Context, r *swarmpb.UpdateNodeRequest) (*swarmpb.UpdateNodeResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.UpdateNode, swarmpb.ControlClient.UpdateNode)
}
func (p *ControlProxy) RemoveNode(ctx context.Context, r *swarmpb.RemoveNodeRequest) (*swarmpb.RemoveNodeResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveNode, swarmpb.ControlClient.RemoveNode)
}
func (p *ControlProxy) GetJoinToken(ctx context.Context, r *swarmpb.GetJoinTokenRequest) (*swarmpb.GetJoinTokenResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetJoinToken, swarmpb.ControlClient.GetJoinToken)
}
func (p *ControlProxy) CreateService(ctx context.Context, r *swarmpb.CreateServiceRequest) (*swarmpb.CreateServiceResponse, error) {
	r = p.createWithLocalImage(ctx, r)
	return relay(ctx, p, r, swarmpb.ControlServer.CreateService, swarmpb.ControlClient.CreateService)
}
func (p *ControlProxy) UpdateService(ctx context.Context, r *swarmpb.UpdateServiceRequest) (*swarmpb.UpdateServiceResponse, error) {
	r = p.updateWithLocalImage(ctx, r)
	return relay(ctx, p, r, swarmpb.ControlServer.UpdateService, swarmpb.ControlClient.UpdateService)
}
func (p *ControlProxy) GetService(ctx context.Context, r *swarmpb.GetServiceRequest) (*swarmpb.GetServiceResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetService, swarmpb.ControlClient.GetService)
}
func (p *ControlProxy) ListServices(ctx context.Context, r *swarmpb.ListServicesRequest) (*swarmpb.ListServicesResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListServices, swarmpb.ControlClient.ListServices)
}
func (p *ControlProxy) RemoveService(ctx context.Context, r *swarmpb.RemoveServiceRequest) (*swarmpb.RemoveServiceResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveService, swarmpb.ControlClient.RemoveService)
}
func (p *ControlProxy) ListTasks(ctx context.Context, r *swarmpb.ListTasksRequest) (*swarmpb.ListTasksResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListTasks, swarmpb.ControlClient.ListTasks)
}
func (p *ControlProxy) GetCluster(ctx context.Context, r *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetCluster, swarmpb.ControlClient.GetCluster)
}
func (p *ControlProxy) UpdateCluster(ctx context.Context, r *swarmpb.UpdateClusterRequest) (*swarmpb.UpdateClusterResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.UpdateCluster, swarmpb.ControlClient.UpdateCluster)
}
func (p *ControlProxy) GetUnlockKey(ctx context.Context, r *swarmpb.GetUnlockKeyRequest) (*swarmpb.GetUnlockKeyResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetUnlockKey, swarmpb.ControlClient.GetUnlockKey)
}

func (p *ControlProxy) CreateNetwork(ctx context.Context, r *swarmpb.CreateNetworkRequest) (*swarmpb.CreateNetworkResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.CreateNetwork, swarmpb.ControlClient.CreateNetwork)
}
func (p *ControlProxy) GetNetwork(ctx context.Context, r *swarmpb.GetNetworkRequest) (*swarmpb.GetNetworkResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetNetwork, swarmpb.ControlClient.GetNetwork)
}
func (p *ControlProxy) ListNetworks(ctx context.Context, r *swarmpb.ListNetworksRequest) (*swarmpb.ListNetworksResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListNetworks, swarmpb.ControlClient.ListNetworks)
}
func (p *ControlProxy) RemoveNetwork(ctx context.Context, r *swarmpb.RemoveNetworkRequest) (*swarmpb.RemoveNetworkResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveNetwork, swarmpb.ControlClient.RemoveNetwork)
}
func (p *ControlProxy) CreateSecret(ctx context.Context, r *swarmpb.CreateSecretRequest) (*swarmpb.CreateSecretResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.CreateSecret, swarmpb.ControlClient.CreateSecret)
}
func (p *ControlProxy) GetSecret(ctx context.Context, r *swarmpb.GetSecretRequest) (*swarmpb.GetSecretResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetSecret, swarmpb.ControlClient.GetSecret)
}
func (p *ControlProxy) ListSecrets(ctx context.Context, r *swarmpb.ListSecretsRequest) (*swarmpb.ListSecretsResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListSecrets, swarmpb.ControlClient.ListSecrets)
}
func (p *ControlProxy) UpdateSecret(ctx context.Context, r *swarmpb.UpdateSecretRequest) (*swarmpb.UpdateSecretResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.UpdateSecret, swarmpb.ControlClient.UpdateSecret)
}
func (p *ControlProxy) RemoveSecret(ctx context.Context, r *swarmpb.RemoveSecretRequest) (*swarmpb.RemoveSecretResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveSecret, swarmpb.ControlClient.RemoveSecret)
}
func (p *ControlProxy) CreateConfig(ctx context.Context, r *swarmpb.CreateConfigRequest) (*swarmpb.CreateConfigResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.CreateConfig, swarmpb.ControlClient.CreateConfig)
}
func (p *ControlProxy) GetConfig(ctx context.Context, r *swarmpb.GetConfigRequest) (*swarmpb.GetConfigResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.GetConfig, swarmpb.ControlClient.GetConfig)
}
func (p *ControlProxy) ListConfigs(ctx context.Context, r *swarmpb.ListConfigsRequest) (*swarmpb.ListConfigsResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.ListConfigs, swarmpb.ControlClient.ListConfigs)
}
func (p *ControlProxy) UpdateConfig(ctx context.Context, r *swarmpb.UpdateConfigRequest) (*swarmpb.UpdateConfigResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.UpdateConfig, swarmpb.ControlClient.UpdateConfig)
}
func (p *ControlProxy) RemoveConfig(ctx context.Context, r *swarmpb.RemoveConfigRequest) (*swarmpb.RemoveConfigResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveConfig, swarmpb.ControlClient.RemoveConfig)
}
func (p *ControlProxy) RemoveVolumes(ctx context.Context, r *swarmpb.RemoveVolumesRequest) (*swarmpb.RemoveVolumesResponse, error) {
	return relay(ctx, p, r, swarmpb.ControlServer.RemoveVolumes, swarmpb.ControlClient.RemoveVolumes)
}

// leaderUnreachable reports a transport failure reaching the leader, as
// opposed to an answer from it.
func leaderUnreachable(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && !strings.Contains(st.Message(), raft.ErrQuorumLost.Error())
}

// ServiceLogs relays the log stream from the leader. Like relay, it routes
// again when the leader changed or was unreachable, but only while nothing
// was sent: a stream cannot be replayed.
func (p *ControlProxy) ServiceLogs(req *swarmpb.ServiceLogsRequest, stream swarmpb.Control_ServiceLogsServer) error {
	ctx := stream.Context()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		var srv swarmpb.ControlServer
		var conn *grpc.ClientConn
		changed := p.leaderChanged()
		if srv, conn, err = p.Router.RouteControl(ctx); err != nil {
			return Status(err)
		}
		out := &sentTracker{Control_ServiceLogsServer: stream}
		moved := false
		if srv != nil {
			err = srv.ServiceLogs(req, out)
		} else {
			_, err, moved = relayOnce(ctx, changed, func(actx context.Context) (struct{}, error) {
				return struct{}{}, relayLogs(actx, swarmpb.NewControlClient(conn), req, out)
			})
		}
		if out.sent || (!moved && !errors.Is(FromStatus(err), raft.ErrNotLeader) && !leaderUnreachable(err)) {
			return err
		}
		if !retry.Sleep(ctx, relayRetryDelay) {
			return Status(ctx.Err())
		}
	}
	return err
}

// relayLogs copies the leader's stream to out until it ends.
func relayLogs(ctx context.Context, c swarmpb.ControlClient, req *swarmpb.ServiceLogsRequest, out swarmpb.Control_ServiceLogsServer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the leader's call if our client went away
	in, err := c.ServiceLogs(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := in.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := out.Send(msg); err != nil {
			return err
		}
	}
}

// sentTracker records whether anything went out on a log stream.
type sentTracker struct {
	swarmpb.Control_ServiceLogsServer
	sent bool
}

func (s *sentTracker) Send(m *swarmpb.ServiceLogsMessage) error {
	s.sent = true
	return s.Control_ServiceLogsServer.Send(m)
}
