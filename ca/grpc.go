package ca

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

var (
	// ErrNoCertificate: the gRPC peer did not present a verified client certificate.
	ErrNoCertificate = errors.New("no client certificate")
	// ErrPermissionDenied: the peer's certificate has the wrong role for the call.
	ErrPermissionDenied = errors.New("permission denied")
)

// authError wraps the sentinels above with a specific message, and carries a
// gRPC code so a handler can return it as is and the client sees
// Unauthenticated/PermissionDenied rather than Unknown.
type authError struct {
	kind error
	code codes.Code
	msg  string
}

func (e *authError) Error() string              { return e.msg }
func (e *authError) Unwrap() error              { return e.kind }
func (e *authError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// PeerIdentity returns the identity of the gRPC caller, taken from its
// verified client certificate.
func PeerIdentity(ctx context.Context) (Identity, error) {
	noCert := func(why string) error {
		return &authError{ErrNoCertificate, codes.Unauthenticated,
			ErrNoCertificate.Error() + ": this call needs a node certificate; " + why}
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, noCert("the connection carries no TLS information")
	}
	var state tls.ConnectionState
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		state = ai.State
	case *credentials.TLSInfo:
		state = ai.State
	default:
		return Identity{}, noCert("the connection is not TLS")
	}
	// VerifiedChains is only set when the certificate verified against the
	// root; PeerCertificates alone proves nothing.
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return Identity{}, noCert("the caller presented none")
	}
	id, err := IdentityFromCert(state.VerifiedChains[0][0])
	if err != nil {
		return Identity{}, &authError{ErrPermissionDenied, codes.PermissionDenied,
			ErrPermissionDenied.Error() + ": " + err.Error()}
	}
	return id, nil
}

// RequireRole returns the caller's identity if its role is one of roles (any
// role if none are given).
func RequireRole(ctx context.Context, roles ...swarmpb.NodeRole) (Identity, error) {
	id, err := PeerIdentity(ctx)
	if err != nil {
		return Identity{}, err
	}
	if len(roles) == 0 {
		return id, nil
	}
	names := make([]string, 0, len(roles))
	for _, r := range roles {
		if r == id.Role {
			return id, nil
		}
		names = append(names, shortRole(r))
	}
	return Identity{}, &authError{ErrPermissionDenied, codes.PermissionDenied, fmt.Sprintf(
		"%s: this call needs a %s certificate; the caller presented a %s certificate",
		ErrPermissionDenied, strings.Join(names, " or "), shortRole(id.Role))}
}

func shortRole(r swarmpb.NodeRole) string {
	switch r {
	case swarmpb.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	case swarmpb.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	}
	return fmt.Sprintf("role-%d", int32(r))
}

// AlreadyTLS returns gRPC server credentials for a listener that has already
// terminated TLS (it needs the negotiated ALPN to route gRPC vs Raft before
// gRPC sees the connection). It performs no handshake of its own and reports
// the existing TLS state so PeerIdentity works.
func AlreadyTLS() credentials.TransportCredentials { return alreadyTLS{} }

type alreadyTLS struct{}

type connStater interface {
	ConnectionState() tls.ConnectionState
}

func (alreadyTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cs, ok := conn.(connStater)
	if !ok {
		return nil, nil, fmt.Errorf("ca.AlreadyTLS: connection %T is not TLS", conn)
	}
	// A *tls.Conn handed over before its handshake (e.g. straight from
	// tls.NewListener) is finished here; gRPC has set a deadline on the conn.
	if tc, ok := conn.(*tls.Conn); ok && !tc.ConnectionState().HandshakeComplete {
		if err := tc.Handshake(); err != nil {
			return nil, nil, fmt.Errorf("ca.AlreadyTLS: TLS handshake: %w", err)
		}
	}
	state := cs.ConnectionState()
	if !state.HandshakeComplete {
		return nil, nil, fmt.Errorf("ca.AlreadyTLS: TLS handshake of %T not complete", conn)
	}
	if state.NegotiatedProtocol != "" && state.NegotiatedProtocol != "h2" {
		return nil, nil, fmt.Errorf("ca.AlreadyTLS: connection negotiated ALPN %q, not h2", state.NegotiatedProtocol)
	}
	return conn, credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (alreadyTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("ca.AlreadyTLS: server-side credentials cannot be used to dial")
}

func (alreadyTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (a alreadyTLS) Clone() credentials.TransportCredentials { return a }

func (alreadyTLS) OverrideServerName(string) error { return nil }
