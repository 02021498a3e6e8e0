package identity

import (
	"crypto/rand"
	"math/big"
)

// NewID returns a random 25-character base36 ID (128 bits of entropy),
// the shape Docker users know from swarm mode.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	s := new(big.Int).SetBytes(b[:]).Text(36)
	for len(s) < 25 {
		s = "0" + s
	}
	return s
}
