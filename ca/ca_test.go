package ca

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const (
	mgr    = swarmpb.NodeRole_NODE_ROLE_MANAGER
	worker = swarmpb.NodeRole_NODE_ROLE_WORKER
)

func newRoot(t *testing.T) *RootCA {
	t.Helper()
	r, err := NewRootCA()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// issue returns key and cert PEM for a new node.
func issue(t *testing.T, r *RootCA, nodeID string, role swarmpb.NodeRole) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csrPEM, err := GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = r.IssueNodeCert(csrPEM, nodeID, "cluster-1", role)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func newCreds(t *testing.T, r *RootCA, nodeID string, role swarmpb.NodeRole) *Creds {
	t.Helper()
	certPEM, keyPEM := issue(t, r, nodeID, role)
	c, err := NewCreds(r.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRootCA(t *testing.T) {
	r := newRoot(t)
	if !r.Cert.IsCA || r.Cert.Subject.CommonName != "raftswarm-root-ca" {
		t.Fatalf("bad root: IsCA=%v CN=%q", r.Cert.IsCA, r.Cert.Subject.CommonName)
	}
	if years := r.Cert.NotAfter.Sub(r.Cert.NotBefore).Hours() / 24 / 365; years < 19.9 {
		t.Fatalf("root validity %.1f years", years)
	}
	// Round trip with key: can sign.
	r2, err := ParseRootCA(r.CertPEM, r.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	issue(t, r2, "n1", worker)
	// Verify-only: cannot sign.
	r3, err := ParseRootCA(r.CertPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, csr, _ := GenerateKeyAndCSR()
	if _, err := r3.IssueNodeCert(csr, "n1", "c", worker); err == nil {
		t.Fatal("verify-only CA issued a certificate")
	}
	// Key from another CA is rejected.
	other := newRoot(t)
	if _, err := ParseRootCA(r.CertPEM, other.KeyPEM); err == nil {
		t.Fatal("mismatched root key accepted")
	}
}

func TestDigest(t *testing.T) {
	r := newRoot(t)
	d, err := Digest(r.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 50 || strings.Trim(d, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
		t.Fatalf("bad digest %q", d)
	}
	if err := CheckDigest(r.CertPEM, d); err != nil {
		t.Fatalf("matching digest rejected: %v", err)
	}
	other := newRoot(t)
	err = CheckDigest(other.CertPEM, d)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "does not match the join token") {
		t.Fatalf("mismatch: got %v", err)
	}
}

func TestJoinToken(t *testing.T) {
	r := newRoot(t)
	tok, err := GenerateJoinToken(r.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	jt, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatalf("parse %q: %v", tok, err)
	}
	if err := CheckDigest(r.CertPEM, jt.Digest); err != nil {
		t.Fatal(err)
	}
	if len(jt.Secret) != 25 {
		t.Fatalf("secret %q", jt.Secret)
	}
	tok2, _ := GenerateJoinToken(r.CertPEM)
	if tok == tok2 {
		t.Fatal("two tokens are equal")
	}
	if !TokensEqual(tok, tok) || TokensEqual(tok, tok2) || TokensEqual(tok, tok[:len(tok)-1]) {
		t.Fatal("TokensEqual wrong")
	}

	digest, secret := jt.Digest, jt.Secret
	bad := map[string]string{
		"empty":          "",
		"garbage":        "hello",
		"too few parts":  "SWMTKN-1-" + digest,
		"too many parts": "SWMTKN-1-" + digest + "-" + secret + "-x",
		"prefix":         "SWMTKX-1-" + digest + "-" + secret,
		"version":        "SWMTKN-2-" + digest + "-" + secret,
		"short digest":   "SWMTKN-1-" + digest[1:] + "-" + secret,
		"long digest":    "SWMTKN-1-0" + digest + "-" + secret,
		"upper digest":   "SWMTKN-1-" + strings.ToUpper(digest) + "-" + secret,
		"digest symbol":  "SWMTKN-1-" + digest[:49] + "_-" + secret,
		"short secret":   "SWMTKN-1-" + digest + "-" + secret[1:],
		"long secret":    "SWMTKN-1-" + digest + "-" + secret + "a",
		"secret symbol":  "SWMTKN-1-" + digest + "-" + secret[:24] + "!",
		"whitespace":     " SWMTKN-1-" + digest + "-" + secret,
		"newline":        "SWMTKN-1-" + digest + "-" + secret + "\n",
	}
	for name, s := range bad {
		_, err := ParseJoinToken(s)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "invalid join token: ") || strings.Contains(msg, "\n") || strings.Contains(msg, secret) {
			t.Errorf("%s: bad message %q", name, msg)
		}
	}
	if _, err := ParseJoinToken("a"); err.Error() != "invalid join token: expected SWMTKN-1-<digest>-<secret>" {
		t.Errorf("message: %q", err)
	}
}

func TestIssueAndIdentity(t *testing.T) {
	r := newRoot(t)
	for _, role := range []swarmpb.NodeRole{mgr, worker} {
		certPEM, _ := issue(t, r, "node-a", role)
		c, err := parseCertPEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: r.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: r.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatal(err)
		}
		id, err := IdentityFromCert(c)
		if err != nil {
			t.Fatal(err)
		}
		if id != (Identity{NodeID: "node-a", ClusterID: "cluster-1", Role: role}) {
			t.Fatalf("identity %+v", id)
		}
		name, _ := RoleName(role)
		if err := c.VerifyHostname(name); err != nil {
			t.Fatalf("SAN %s: %v", name, err)
		}
		if err := c.VerifyHostname("node-a"); err != nil {
			t.Fatal(err)
		}
		if d := c.NotAfter.Sub(c.NotBefore).Hours() / 24; d < 90 || d > 91 {
			t.Fatalf("validity %.2f days", d)
		}
	}
	// A worker certificate must not carry the manager SAN.
	wPEM, _ := issue(t, r, "node-w", worker)
	w, _ := parseCertPEM(wPEM)
	if w.VerifyHostname(ManagerRole) == nil {
		t.Fatal("worker cert valid for ManagerRole")
	}
	// A CSR with a tampered signature is refused.
	_, csrPEM, _ := GenerateKeyAndCSR()
	blockStart := strings.Index(string(csrPEM), "\n") + 1
	tampered := []byte(string(csrPEM[:blockStart+40]) + flip(csrPEM[blockStart+40]) + string(csrPEM[blockStart+41:]))
	if _, err := r.IssueNodeCert(tampered, "n", "c", worker); err == nil {
		t.Fatal("tampered CSR accepted")
	}
	if _, err := r.IssueNodeCert(csrPEM, "n", "c", swarmpb.NodeRole(7)); err == nil {
		t.Fatal("unknown role accepted")
	}
	// A certificate with an unknown OU yields no identity.
	bogus := *w
	bogus.Subject.OrganizationalUnit = []string{"swarm-admin"}
	if _, err := IdentityFromCert(&bogus); err == nil {
		t.Fatal("unknown OU accepted")
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestCredsRejectsForeignCert(t *testing.T) {
	r, other := newRoot(t), newRoot(t)
	certPEM, keyPEM := issue(t, other, "n1", mgr)
	if _, err := NewCreds(r.CertPEM, certPEM, keyPEM); err == nil {
		t.Fatal("certificate from another CA accepted")
	}
	// Key that does not match the certificate.
	certPEM, _ = issue(t, r, "n1", mgr)
	_, otherKey := issue(t, r, "n2", mgr)
	if _, err := NewCreds(r.CertPEM, certPEM, otherKey); err == nil {
		t.Fatal("mismatched key accepted")
	}
	c := newCreds(t, r, "n1", worker)
	foreignCert, foreignKey := issue(t, other, "n1", mgr)
	if err := c.Update(foreignCert, foreignKey); err == nil {
		t.Fatal("Update accepted a foreign certificate")
	}
	if c.Identity().Role != worker {
		t.Fatal("failed Update changed the identity")
	}
}

func TestSaveLoad(t *testing.T) {
	r := newRoot(t)
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := LoadCreds(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadCreds on empty dir: %v", err)
	}
	c := newCreds(t, r, "n1", worker)
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"ca.crt": 0o644, "node.crt": 0o644, "node.key": 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode().Perm())
	}
	loaded, err := LoadCreds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Identity() != c.Identity() || string(loaded.CertPEM()) != string(c.CertPEM()) || string(loaded.RootPEM()) != string(r.CertPEM) {
		t.Fatal("round trip mismatch")
	}
	// Promote, save again over the old files, reload.
	mc, mk := issue(t, r, "n1", mgr)
	if err := c.Update(mc, mk); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err = LoadCreds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Identity().Role != mgr {
		t.Fatal("reloaded role not manager")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("leftover files: %v", entries)
	}
	// Missing key only.
	os.Remove(filepath.Join(dir, "node.key"))
	if _, err := LoadCreds(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key: %v", err)
	}
}
