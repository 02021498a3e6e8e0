package ca

import (
	"crypto/tls"
	"crypto/x509"
	"github.com/raftswarm/raftswarm/internal/clock"
)

// ServerTLSConfig serves the node's current certificate. Client certificates
// are verified against the root when presented but not required, because a
// joining node must reach the CA service before it has one; handlers decide
// with PeerIdentity/RequireRole. Both gRPC ("h2") and Raft (ALPNRaft) are
// offered so one listener can carry both.
func (c *Creds) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// GetCertificate instead of Certificates so Update applies to new
		// connections without rebuilding listeners.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.currentCert(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  c.pool,
		Time:       clock.Now, // certificate validity is a wall-clock check
		NextProtos: []string{"h2", ALPNRaft},
	}
}

// ClientTLSConfig presents the node's current certificate and only accepts
// servers holding a manager certificate from this cluster: ServerName is
// ManagerRole, a SAN only manager certificates carry, whatever address is dialed.
func (c *Creds) ClientTLSConfig(alpn string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.pool,
		ServerName: ManagerRole,
		Time:       clock.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.currentCert(), nil
		},
		NextProtos: []string{alpn},
	}
}

// BootstrapTLSConfig is for a node without a certificate (joining). With
// root == nil the server is not verified at all: that is only acceptable for
// fetching the root CA, which the caller must then check against the join
// token with CheckDigest before trusting anything else. With root != nil the
// server must present a manager certificate from that root.
func BootstrapTLSConfig(root *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		Time:       clock.Now,
	}
	if root == nil {
		cfg.InsecureSkipVerify = true
	} else {
		cfg.RootCAs = root
		cfg.ServerName = ManagerRole
	}
	return cfg
}
