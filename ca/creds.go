package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/raftswarm/raftswarm/internal/clock"
	"os"
	"path/filepath"
	"sync/atomic"
)

// File names used by Save and LoadCreds.
const (
	RootCertFile = "ca.crt"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// Creds is a node's TLS identity: the cluster root plus the node's own
// certificate and key. The root is fixed for the lifetime of a Creds; the node
// certificate can be replaced live with Update (renewal, promote/demote), and
// TLS configs built from a Creds pick the new certificate up on the next
// handshake. Safe for concurrent use.
type Creds struct {
	root    *x509.Certificate
	rootPEM []byte
	pool    *x509.CertPool // never handed out, so nobody can add roots to it

	node atomic.Pointer[nodeCreds]
}

// nodeCreds is immutable once published, so readers need no lock.
type nodeCreds struct {
	certPEM, keyPEM []byte
	tlsCert         *tls.Certificate
	identity        Identity
}

// NewCreds builds credentials, checking that certPEM chains to rootPEM, that
// keyPEM is the certificate's key and that the certificate carries a node identity.
func NewCreds(rootPEM, certPEM, keyPEM []byte) (*Creds, error) {
	root, err := parseCertPEM(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("root CA: %w", err)
	}
	if !root.IsCA {
		return nil, errors.New("root CA: certificate is not a CA certificate")
	}
	c := &Creds{root: root, rootPEM: bytes.Clone(rootPEM), pool: x509.NewCertPool()}
	c.pool.AddCert(root)
	n, err := c.buildNode(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c.node.Store(n)
	return c, nil
}

func (c *Creds) buildNode(certPEM, keyPEM []byte) (*nodeCreds, error) {
	// X509KeyPair checks that the key matches the certificate.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate/key: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("node certificate: %w", err)
		}
		pair.Leaf = leaf
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime: clock.Now(),
	}); err != nil {
		return nil, fmt.Errorf("node certificate is not valid for this cluster's root CA: %w", err)
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	return &nodeCreds{
		certPEM:  bytes.Clone(certPEM),
		keyPEM:   bytes.Clone(keyPEM),
		tlsCert:  &pair,
		identity: id,
	}, nil
}

// LoadCreds reads dir/ca.crt, dir/node.crt and dir/node.key. If any is
// missing the error wraps fs.ErrNotExist, meaning "this node has not joined yet".
func LoadCreds(dir string) (*Creds, error) {
	var data [3][]byte
	for i, name := range []string{RootCertFile, NodeCertFile, NodeKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load node credentials: %w", err)
		}
		data[i] = b
	}
	c, err := NewCreds(data[0], data[1], data[2])
	if err != nil {
		return nil, fmt.Errorf("load node credentials from %s: %w", dir, err)
	}
	return c, nil
}

// Save writes the credentials to dir. Each file is replaced atomically, so a
// crash never leaves a truncated key or certificate behind.
func (c *Creds) Save(dir string) error {
	n := c.node.Load() // one snapshot so cert and key always match
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save node credentials: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RootCertFile, c.rootPEM, 0o644},
		// Key before certificate: if we crash in between, the old cert no
		// longer matches and LoadCreds fails loudly instead of silently using
		// a stale pair that looks fine.
		{NodeKeyFile, n.keyPEM, 0o600},
		{NodeCertFile, n.certPEM, 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("save node credentials: %w", err)
		}
	}
	// Persist the renames themselves; best effort, some filesystems refuse.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	// Set the mode before writing so the key is never readable by others, even briefly.
	if err = tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Update replaces the node certificate and key (which must chain to the same
// root). New TLS handshakes use them immediately; existing connections keep
// the identity they were established with.
func (c *Creds) Update(certPEM, keyPEM []byte) error {
	n, err := c.buildNode(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("update node credentials: %w", err)
	}
	c.node.Store(n)
	return nil
}

// Identity is the identity in the current node certificate.
func (c *Creds) Identity() Identity { return c.node.Load().identity }

// RootPool returns a pool holding only the cluster root. It is a copy: adding
// to it does not affect the Creds.
func (c *Creds) RootPool() *x509.CertPool { return c.pool.Clone() }

// RootCert returns the parsed cluster root certificate.
func (c *Creds) RootCert() *x509.Certificate { return c.root }

// RootPEM returns the cluster root certificate in PEM.
func (c *Creds) RootPEM() []byte { return bytes.Clone(c.rootPEM) }

// CertPEM returns the current node certificate in PEM.
func (c *Creds) CertPEM() []byte { return bytes.Clone(c.node.Load().certPEM) }

// Leaf returns the current parsed node certificate (e.g. to schedule renewal from NotAfter).
func (c *Creds) Leaf() *x509.Certificate { return c.node.Load().tlsCert.Leaf }

func (c *Creds) currentCert() *tls.Certificate { return c.node.Load().tlsCert }
