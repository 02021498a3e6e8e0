package api

import (
	"context"

	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc/metadata"
)

// RequestIDHeader is the gRPC metadata key carrying a relayed call's
// request ID from the ControlProxy to the leader. The proxy keeps the ID
// across its attempts, so a write it resends after a leader change (the
// first leader may have committed it before the change cut the answer off)
// is applied once: its store batches carry the ID (raft.WithRequestID), the
// store skips a batch it already applied, and a create or remove whose
// first write was applied answers as the first attempt did (replayed).
const RequestIDHeader = "raftswarm-request-id"

// newRequestID is the ID of one relayed call.
func newRequestID() string { return identity.NewID() }

// withIncomingRequestID marks ctx with the request ID the caller's
// metadata carries, if any.
func withIncomingRequestID(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	if v := md.Get(RequestIDHeader); len(v) == 1 {
		return raft.WithRequestID(ctx, v[0])
	}
	return ctx
}

// replayed reports the earlier application of this request's first write
// (nil: none, or no request ID), after a read barrier so that this
// leader's store has every committed write.
func (s *ControlServer) replayed(ctx context.Context) (*swarmpb.AppliedRequest, error) {
	id := raft.RequestID(ctx)
	if id == "" {
		return nil, nil
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	r, ok := s.Store.AppliedRequest(raft.FirstWriteID(id))
	if !ok {
		return nil, nil
	}
	return r, nil
}
