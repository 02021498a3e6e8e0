package raft

import (
	"context"
	"fmt"
	"sync"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// MaxRequestIDLen bounds a client request ID (it is stored in the log and
// remembered by the store).
const MaxRequestIDLen = 64

type requestKey struct{}

// request is the client request a handler carries out: its ID and how many
// of its writes succeeded so far.
type request struct {
	id string
	mu sync.Mutex
	ok int
}

// WithRequestID marks ctx as carrying out the client request id: every
// store batch Apply writes under ctx gets the request_id "<id>/<n>" (n-th
// successful write of the request), so that the store applies a resent
// request's writes once (state.Store.AppliedRequest). An empty or
// over-long id is ignored.
func WithRequestID(ctx context.Context, id string) context.Context {
	if id == "" || len(id) > MaxRequestIDLen {
		return ctx
	}
	return context.WithValue(ctx, requestKey{}, &request{id: id})
}

// RequestID returns the request ID ctx carries, or "".
func RequestID(ctx context.Context) string {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		return r.id
	}
	return ""
}

// FirstWriteID is the request_id of the first write of request id: the
// one a handler that writes once (a create, a remove) looks up to tell a
// resend.
func FirstWriteID(id string) string { return id + "/1" }

// TagBatch returns b with the request_id of ctx's request's next write
// (b itself when ctx carries none), and a function to call when the write
// succeeded.
func TagBatch(ctx context.Context, b *swarmpb.StoreBatch) (*swarmpb.StoreBatch, func()) {
	r, ok := ctx.Value(requestKey{}).(*request)
	if !ok || b.GetRequestId() != "" {
		return b, func() {}
	}
	r.mu.Lock()
	n := r.ok + 1
	r.mu.Unlock()
	tagged := &swarmpb.StoreBatch{Actions: b.GetActions(), RequestId: fmt.Sprintf("%s/%d", r.id, n)}
	return tagged, func() {
		r.mu.Lock()
		r.ok++
		r.mu.Unlock()
	}
}
