package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

var (
	// ErrInvalidToken is wrapped by every ParseJoinToken error.
	ErrInvalidToken = errors.New("invalid join token")
	// ErrDigestMismatch means the root CA a manager presented is not the one
	// the join token pins.
	ErrDigestMismatch = errors.New("root CA digest mismatch")
)

const (
	tokenPrefix  = "SWMTKN"
	tokenVersion = "1"
	digestLen    = 50 // ceil(256 / log2(36)) base36 digits for a SHA-256
	secretLen    = 25 // 25 base36 digits = ~129 bits of entropy
)

// Digest returns the SHA-256 of the certificate's DER, in lowercase base36,
// zero-padded to 50 characters so every digest has the same length.
func Digest(certPEM []byte) (string, error) {
	c, err := parseCertPEM(certPEM)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	sum := sha256.Sum256(c.Raw)
	return padBase36(new(big.Int).SetBytes(sum[:]), digestLen), nil
}

// CheckDigest verifies that certPEM is the root CA pinned by digest (taken from
// a join token). It is what makes fetching the root CA over an unverified
// connection safe.
func CheckDigest(certPEM []byte, digest string) error {
	got, err := Digest(certPEM)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(digest)) != 1 {
		return fmt.Errorf("%w: the manager's root CA does not match the join token (wrong token or wrong cluster)", ErrDigestMismatch)
	}
	return nil
}

// GenerateJoinToken returns a new "SWMTKN-1-<digest>-<secret>" token pinning rootCertPEM.
func GenerateJoinToken(rootCertPEM []byte) (string, error) {
	digest, err := Digest(rootCertPEM)
	if err != nil {
		return "", err
	}
	max := new(big.Int).Exp(big.NewInt(36), big.NewInt(secretLen), nil)
	n, err := rand.Int(rand.Reader, max) // uniform over all 25-digit base36 strings
	if err != nil {
		return "", fmt.Errorf("generate join token secret: %w", err)
	}
	return tokenPrefix + "-" + tokenVersion + "-" + digest + "-" + padBase36(n, secretLen), nil
}

// JoinToken is a parsed join token.
type JoinToken struct {
	Digest, Secret string
}

// ParseJoinToken strictly parses a join token. Errors wrap ErrInvalidToken and
// never echo the secret.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 4 {
		return JoinToken{}, fmt.Errorf("%w: expected %s-%s-<digest>-<secret>", ErrInvalidToken, tokenPrefix, tokenVersion)
	}
	if parts[0] != tokenPrefix {
		return JoinToken{}, fmt.Errorf("%w: expected prefix %q", ErrInvalidToken, tokenPrefix)
	}
	if parts[1] != tokenVersion {
		return JoinToken{}, fmt.Errorf("%w: unsupported version %q (this node understands version %s)", ErrInvalidToken, truncate(parts[1], 8), tokenVersion)
	}
	if err := checkBase36("root CA digest", parts[2], digestLen); err != nil {
		return JoinToken{}, err
	}
	if err := checkBase36("secret", parts[3], secretLen); err != nil {
		return JoinToken{}, err
	}
	return JoinToken{Digest: parts[2], Secret: parts[3]}, nil
}

// TokensEqual compares two tokens in constant time, so a remote caller cannot
// guess a token byte by byte from response timing.
func TokensEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func checkBase36(what, s string, n int) error {
	if len(s) != n {
		return fmt.Errorf("%w: %s must be %d characters, got %d", ErrInvalidToken, what, n, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return fmt.Errorf("%w: %s must contain only 0-9 and a-z", ErrInvalidToken, what)
		}
	}
	return nil
}

func padBase36(n *big.Int, width int) string {
	s := n.Text(36)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
