package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/raftswarm/raftswarm/internal/clock"
	"math/big"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Role names put in certificates (as the subject OU) and as DNS SANs.
const (
	ManagerRole = "swarm-manager"
	WorkerRole  = "swarm-worker"
)

// ALPNRaft is the ALPN protocol negotiated for Raft connections; gRPC uses "h2".
// The server multiplexes both on one TLS port and dispatches on it.
const ALPNRaft = "raftswarm-raft"

const (
	rootCommonName = "raftswarm-root-ca"
	rootValidity   = 20 * 365 * 24 * time.Hour
	nodeValidity   = 90 * 24 * time.Hour
	// Certificates are backdated so that a node whose clock is slightly behind
	// the issuing manager's does not reject a freshly issued certificate.
	clockSkew = time.Hour
)

// RootCA is the cluster's certificate authority. KeyPEM is the CA's private
// key; it is nil for a verify-only CA (e.g. on a worker), which can check
// certificates but not issue them.
type RootCA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte

	signer crypto.Signer // nil when verify-only
}

// NewRootCA creates a fresh self-signed root CA.
func NewRootCA() (*RootCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate root CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: rootCommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Node certificates are signed directly by the root; there are no
		// intermediates, so forbid them.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign root CA: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal root CA key: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse root CA: %w", err)
	}
	return &RootCA{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		signer:  key,
	}, nil
}

// ParseRootCA loads a root CA from PEM. keyPEM may be nil, giving a
// verify-only CA on which IssueNodeCert fails.
func ParseRootCA(certPEM, keyPEM []byte) (*RootCA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("root CA: certificate is not a CA certificate")
	}
	// A root must be self-signed; anything else means we were handed the wrong file.
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("root CA: certificate is not self-signed: %w", err)
	}
	r := &RootCA{Cert: cert, CertPEM: bytes.Clone(certPEM)}
	if keyPEM == nil {
		return r, nil
	}
	signer, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("root CA key: %w", err)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, errors.New("root CA: private key does not match the certificate")
	}
	r.KeyPEM = bytes.Clone(keyPEM)
	r.signer = signer
	return r, nil
}

// CanSign reports whether the CA holds its private key.
func (r *RootCA) CanSign() bool { return r.signer != nil }

// Pool returns a cert pool containing only this root.
func (r *RootCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.Cert)
	return p
}

// RoleName maps a NodeRole to the name used in certificates.
func RoleName(role swarmpb.NodeRole) (string, error) {
	switch role {
	case swarmpb.NodeRole_NODE_ROLE_MANAGER:
		return ManagerRole, nil
	case swarmpb.NodeRole_NODE_ROLE_WORKER:
		return WorkerRole, nil
	}
	return "", fmt.Errorf("unknown node role %d", int32(role))
}

// RoleFromName is the inverse of RoleName.
func RoleFromName(name string) (swarmpb.NodeRole, error) {
	switch name {
	case ManagerRole:
		return swarmpb.NodeRole_NODE_ROLE_MANAGER, nil
	case WorkerRole:
		return swarmpb.NodeRole_NODE_ROLE_WORKER, nil
	}
	return 0, fmt.Errorf("unknown role name %q", name)
}

// GenerateKeyAndCSR creates a new ECDSA P-256 node key and a CSR for it. The
// CSR carries no meaningful subject: the CA decides the node's identity.
func GenerateKeyAndCSR() (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "raftswarm-node"},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), nil
}

// IssueNodeCert signs a node certificate for the key in csrPEM. Everything in
// the CSR other than its public key is ignored: the identity (CN=nodeID,
// OU=role, O=clusterID) and SANs are decided here, so a node cannot ask for
// more than it was granted.
func (r *RootCA) IssueNodeCert(csrPEM []byte, nodeID, clusterID string, role swarmpb.NodeRole) ([]byte, error) {
	if r.signer == nil {
		return nil, errors.New("issue node certificate: this root CA has no private key (verify-only)")
	}
	if nodeID == "" || clusterID == "" {
		return nil, errors.New("issue node certificate: node ID and cluster ID must not be empty")
	}
	roleName, err := RoleName(role)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("issue node certificate: CSR is not a PEM \"CERTIFICATE REQUEST\"")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: parse CSR: %w", err)
	}
	// Proof of possession: the requester must hold the private key it wants certified.
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("issue node certificate: CSR signature invalid: %w", err)
	}
	keyUsage, err := keyUsageFor(csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := clock.Now()
	notAfter := now.Add(nodeValidity)
	if notAfter.After(r.Cert.NotAfter) {
		// Never outlive the issuer; such a cert would fail verification anyway.
		notAfter = r.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         nodeID,
			OrganizationalUnit: []string{roleName},
			Organization:       []string{clusterID},
		},
		DNSNames:              []string{roleName, nodeID},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.Cert, csr.PublicKey, r.signer)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// keyUsageFor restricts node keys to types we consider strong enough and
// picks the matching key usage bits.
func keyUsageFor(pub any) (x509.KeyUsage, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return x509.KeyUsageDigitalSignature, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return 0, fmt.Errorf("RSA key too small (%d bits, need >= 2048)", k.N.BitLen())
		}
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, nil
	}
	return 0, fmt.Errorf("unsupported public key type %T", pub)
}

// Identity is who a node certificate says its holder is.
type Identity struct {
	NodeID, ClusterID string
	Role              swarmpb.NodeRole
}

// IdentityFromCert extracts the identity IssueNodeCert encoded in a certificate.
// It does not verify the certificate; callers must only pass verified ones.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, errors.New("no certificate")
	}
	if len(c.Subject.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("certificate %q has no single role (OU=%v)", c.Subject.CommonName, c.Subject.OrganizationalUnit)
	}
	role, err := RoleFromName(c.Subject.OrganizationalUnit[0])
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", c.Subject.CommonName, err)
	}
	if c.Subject.CommonName == "" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] == "" {
		return Identity{}, fmt.Errorf("certificate %q lacks a node ID (CN) or cluster ID (O)", c.Subject.CommonName)
	}
	return Identity{NodeID: c.Subject.CommonName, ClusterID: c.Subject.Organization[0], Role: role}, nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits, +1 so the serial is never zero (RFC 5280 wants positive).
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// parseCertPEM returns the first CERTIFICATE block in data.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM \"CERTIFICATE\" block found")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return c, nil
	}
}

// parseKeyPEM accepts SEC1 ("EC PRIVATE KEY"), PKCS#1 and PKCS#8 keys.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key block found")
	}
	var key any
	var err error
	switch {
	case block.Type == "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case block.Type == "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case strings.HasSuffix(block.Type, "PRIVATE KEY"):
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q, want a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key type %T cannot sign", key)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
