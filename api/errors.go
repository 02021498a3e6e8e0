package api

import (
	"context"
	"errors"
	"strings"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotManager is returned by control calls on a node that is not a manager.
var ErrNotManager = errors.New("this node is not a swarm manager: run this command on a manager node (worker nodes cannot view or change cluster state)")

// ErrNotInCluster is returned by control calls before init or join.
var ErrNotInCluster = errors.New("this node is not part of a swarm: run 'swarmctl init' or 'swarmctl join' first")

// Status converts an error into a gRPC status error with a code matching
// its cause. Errors that already are statuses pass through.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var qe *raft.QuorumError
	code := codes.Unknown
	switch {
	case errors.Is(err, raft.ErrDiskFull):
		code = codes.ResourceExhausted
	case errors.As(err, &qe), errors.Is(err, raft.ErrQuorumLost):
		code = codes.Unavailable
	case errors.Is(err, raft.ErrNotLeader):
		code = codes.FailedPrecondition
	case errors.Is(err, state.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, state.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, state.ErrExists), errors.Is(err, state.ErrNameConflict):
		code = codes.AlreadyExists
	case errors.Is(err, state.ErrInvalid), errors.Is(err, ca.ErrInvalidToken), errors.Is(err, errInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, ca.ErrPermissionDenied), errors.Is(err, errPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ca.ErrNoCertificate):
		code = codes.Unauthenticated
	case errors.Is(err, ErrNotManager), errors.Is(err, ErrNotInCluster), errors.Is(err, errRefused),
		errors.Is(err, raft.ErrUnresponsive):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// FromStatus turns a status received from another manager back into an
// error that errors.Is recognises, keeping the remote message.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), raft.ErrNotLeader.Error()) {
			sentinel = raft.ErrNotLeader
		}
	case codes.Aborted:
		sentinel = state.ErrConflict
	case codes.NotFound:
		sentinel = state.ErrNotFound
	case codes.AlreadyExists:
		sentinel = state.ErrExists
	case codes.Unavailable:
		if strings.Contains(st.Message(), raft.ErrQuorumLost.Error()) {
			sentinel = raft.ErrQuorumLost
		}
	}
	if sentinel == nil {
		return err
	}
	return &remoteError{msg: st.Message(), sentinel: sentinel, st: st}
}

type remoteError struct {
	msg      string
	sentinel error
	st       *status.Status
}

func (e *remoteError) Error() string              { return e.msg }
func (e *remoteError) Unwrap() error              { return e.sentinel }
func (e *remoteError) GRPCStatus() *status.Status { return e.st }

var (
	errInvalidArgument = errors.New("invalid argument")
	errPermission      = errors.New("permission denied")
	errRefused         = errors.New("refused")
)

// userError is a one-line message for the user, classified by kind for
// the status code but printed without the kind's prefix.
type userError struct {
	kind error
	msg  string
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &userError{kind: errInvalidArgument, msg: sprintf(format, args...)}
}
func refusedf(format string, args ...any) error {
	return &userError{kind: errRefused, msg: sprintf(format, args...)}
}
func notFoundf(format string, args ...any) error {
	return &userError{kind: state.ErrNotFound, msg: sprintf(format, args...)}
}
func deniedf(format string, args ...any) error {
	return &userError{kind: errPermission, msg: sprintf(format, args...)}
}
