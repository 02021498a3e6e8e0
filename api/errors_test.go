package api

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusFromStatusRoundTrip(t *testing.T) {
	qe := &raft.QuorumError{Reachable: 1, Total: 3}
	cases := []struct {
		name     string
		err      error
		code     codes.Code
		sentinel error
	}{
		{"conflict", state.ErrConflict, codes.Aborted, state.ErrConflict},
		{"wrapped conflict", fmt.Errorf("update node n1: %w", state.ErrConflict), codes.Aborted, state.ErrConflict},
		{"not found", state.ErrNotFound, codes.NotFound, state.ErrNotFound},
		{"user not found", notFoundf("node %s not found", "nope"), codes.NotFound, state.ErrNotFound},
		{"not leader", raft.ErrNotLeader, codes.FailedPrecondition, raft.ErrNotLeader},
		{"wrapped not leader", fmt.Errorf("%w: leadership lost", raft.ErrNotLeader), codes.FailedPrecondition, raft.ErrNotLeader},
		{"quorum", qe, codes.Unavailable, raft.ErrQuorumLost},
		{"wrapped quorum", fmt.Errorf("write: %w", qe), codes.Unavailable, raft.ErrQuorumLost},
		{"disk full", &raft.DiskFullError{Dir: "/var/lib/raftswarm/raft", Need: 4 << 20}, codes.ResourceExhausted, raft.ErrDiskFull},
		{"wrapped disk full", fmt.Errorf("update node n1: %w", &raft.DiskFullError{Dir: "/d"}), codes.ResourceExhausted, raft.ErrDiskFull},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := Status(tc.err)
			s, ok := status.FromError(st)
			if !ok {
				t.Fatalf("Status(%v) is not a status: %T", tc.err, st)
			}
			if s.Code() != tc.code {
				t.Fatalf("code %v, want %v", s.Code(), tc.code)
			}
			if s.Message() != tc.err.Error() {
				t.Fatalf("message %q, want %q", s.Message(), tc.err.Error())
			}
			// Status is idempotent: a status passes through unchanged.
			if again := Status(st); again != st {
				t.Fatalf("Status(status) changed it: %v", again)
			}
			back := FromStatus(st)
			if !errors.Is(back, tc.sentinel) {
				t.Fatalf("errors.Is(FromStatus(%v), %v) = false", st, tc.sentinel)
			}
			if back.Error() != tc.err.Error() {
				t.Fatalf("message after round trip %q, want %q", back.Error(), tc.err.Error())
			}
			// The result still carries the status, so relaying it again keeps the code.
			if s2, ok := status.FromError(back); !ok || s2.Code() != tc.code || s2.Message() != tc.err.Error() {
				t.Fatalf("FromStatus result lost its status: %v", s2)
			}
			if s3, _ := status.FromError(Status(back)); s3.Code() != tc.code {
				t.Fatalf("Status(FromStatus(x)) code %v, want %v", s3.Code(), tc.code)
			}
		})
	}
}

func TestFromStatusLeavesOthersAlone(t *testing.T) {
	if FromStatus(nil) != nil {
		t.Fatal("FromStatus(nil) != nil")
	}
	if Status(nil) != nil {
		t.Fatal("Status(nil) != nil")
	}
	plain := errors.New("plain")
	if FromStatus(plain) != plain {
		t.Fatal("FromStatus changed a non-status error")
	}
	// A FailedPrecondition that is not about leadership is not ErrNotLeader.
	other := status.Error(codes.FailedPrecondition, "this node is not part of a swarm")
	if errors.Is(FromStatus(other), raft.ErrNotLeader) {
		t.Fatal("an unrelated FailedPrecondition became ErrNotLeader")
	}
	// An Unavailable transport error is not quorum loss.
	conn := status.Error(codes.Unavailable, "connection refused")
	if errors.Is(FromStatus(conn), raft.ErrQuorumLost) {
		t.Fatal("a transport error became ErrQuorumLost")
	}
	// Nothing maps a status to ErrConflict except Aborted.
	if errors.Is(FromStatus(status.Error(codes.Unknown, state.ErrConflict.Error())), state.ErrConflict) {
		t.Fatal("an Unknown status became ErrConflict")
	}
}
