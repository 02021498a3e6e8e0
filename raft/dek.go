package raft

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The data encryption key (DEK) and its wrapping.
//
// Each manager has its own DEK, generated when its Raft state is created
// and kept in DEKFile inside the Raft folder (mode 0600). While autolock
// is off the file holds the key itself. While it is on, the file holds the
// key sealed under the cluster's key-encrypting key (KEK, the unlock key
// that Cluster.unlock_key replicates): after a restart the manager cannot
// read its own log until an operator gives it the unlock key.

// DEKSize is the length of a data key (AES-256).
const DEKSize = 32

// DEKFile is the data key's file name inside the Raft folder.
const DEKFile = "dek"

// unlockKeyPrefix marks an unlock key, as SwarmKit's SWMKEY-1-.
const unlockKeyPrefix = "SWMKEY-1-"

// ErrBadUnlockKey is returned when an unlock key does not unwrap the data key.
var ErrBadUnlockKey = errors.New("the unlock key does not unlock this manager")

// DataKey is the content of a DEK file.
type DataKey struct {
	Version int `json:"version"`
	// Key is the DEK when it is not wrapped.
	Key []byte `json:"key,omitempty"`
	// Wrapped is nonce || AES-256-GCM(KEK', Key) when autolock is on, where
	// KEK' is derived from the KEK with HKDF-SHA256.
	Wrapped []byte `json:"wrapped,omitempty"`
	// KEKID names the KEK that wrapped the key (a short digest), so that
	// a re-wrap is written only when the KEK changes.
	KEKID string `json:"kek_id,omitempty"`
}

// IsWrapped reports whether the key needs an unlock key to be read.
func (k *DataKey) IsWrapped() bool { return len(k.Wrapped) > 0 }

// NewKey returns a random 32-byte key (a DEK or a KEK).
func NewKey() ([]byte, error) {
	k := make([]byte, DEKSize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// KEKID is a short digest naming a KEK.
func KEKID(kek []byte) string {
	s := sha256.Sum256(append([]byte("raftswarm kek id\x00"), kek...))
	return hex.EncodeToString(s[:8])
}

func wrapAEAD(kek []byte, purpose string) (cipher.AEAD, error) {
	if len(kek) != DEKSize {
		return nil, fmt.Errorf("unlock key must hold %d bytes, got %d", DEKSize, len(kek))
	}
	k, err := hkdf.Key(sha256.New, kek, nil, "raftswarm "+purpose+" wrap v1", DEKSize)
	if err != nil {
		return nil, err
	}
	return newAEAD(k)
}

// SealWithKEK seals data under a key derived from kek for purpose (which
// separates the keys, e.g. "dek" and "node key"): nonce || AES-256-GCM.
func SealWithKEK(kek, data []byte, purpose string) ([]byte, error) {
	a, err := wrapAEAD(kek, purpose)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcmNonce)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, data, []byte("raftswarm-"+purpose)), nil
}

// OpenWithKEK opens what SealWithKEK sealed; a wrong kek gives
// ErrBadUnlockKey.
func OpenWithKEK(kek, sealed []byte, purpose string) ([]byte, error) {
	if len(kek) == 0 {
		return nil, ErrBadUnlockKey
	}
	a, err := wrapAEAD(kek, purpose)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcmNonce+gcmTag {
		return nil, fmt.Errorf("sealed %s is corrupted", purpose)
	}
	out, err := a.Open(nil, sealed[:gcmNonce], sealed[gcmNonce:], []byte("raftswarm-"+purpose))
	if err != nil {
		return nil, ErrBadUnlockKey
	}
	return out, nil
}

// Unwrap returns the DEK, using kek when it is wrapped.
func (k *DataKey) Unwrap(kek []byte) ([]byte, error) {
	if !k.IsWrapped() {
		if len(k.Key) != DEKSize {
			return nil, fmt.Errorf("data key file: key must be %d bytes", DEKSize)
		}
		return k.Key, nil
	}
	return OpenWithKEK(kek, k.Wrapped, "dek")
}

// ReadDEK reads dir's DEK file; it returns an error wrapping
// os.ErrNotExist when there is none.
func ReadDEK(dir string) (*DataKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, DEKFile))
	if err != nil {
		return nil, err
	}
	var k DataKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("data key file %s is corrupted: %w", filepath.Join(dir, DEKFile), err)
	}
	if k.Version != 1 {
		return nil, fmt.Errorf("data key file %s: version %d, this manager understands 1", filepath.Join(dir, DEKFile), k.Version)
	}
	return &k, nil
}

// WriteDEK atomically writes dek to dir's DEK file (0600), wrapped under
// kek when kek is not nil. dir must exist.
func WriteDEK(dir string, dek, kek []byte) error {
	if len(dek) != DEKSize {
		return fmt.Errorf("data key must be %d bytes", DEKSize)
	}
	k := DataKey{Version: 1}
	if kek == nil {
		k.Key = dek
	} else {
		w, err := SealWithKEK(kek, dek, "dek")
		if err != nil {
			return err
		}
		k.Wrapped, k.KEKID = w, KEKID(kek)
	}
	b, err := json.Marshal(&k)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, DEKFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write data key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write data key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write data key: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, DEKFile)); err != nil {
		return fmt.Errorf("write data key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// LoadOrCreateDEK returns dir's DEK, creating dir (0700) and an unwrapped
// key when there is none. It fails with ErrBadUnlockKey when the key is
// wrapped and kek (which may be nil) does not unwrap it.
func LoadOrCreateDEK(dir string, kek []byte) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	k, err := ReadDEK(dir)
	if errors.Is(err, os.ErrNotExist) {
		dek, err := NewKey()
		if err != nil {
			return nil, err
		}
		if err := WriteDEK(dir, dek, nil); err != nil {
			return nil, err
		}
		return dek, nil
	}
	if err != nil {
		return nil, err
	}
	return k.Unwrap(kek)
}

// FormatUnlockKey renders a KEK as the unlock key users keep.
func FormatUnlockKey(kek []byte) string {
	if len(kek) == 0 {
		return ""
	}
	return unlockKeyPrefix + base64.RawStdEncoding.EncodeToString(kek)
}

// ParseUnlockKey reads an unlock key printed by FormatUnlockKey.
func ParseUnlockKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, unlockKeyPrefix) {
		return nil, fmt.Errorf("invalid unlock key: it must start with %s", unlockKeyPrefix)
	}
	k, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(s, unlockKeyPrefix))
	if err != nil || len(k) != DEKSize {
		return nil, errors.New("invalid unlock key: it is not a key printed by 'swarmctl swarm unlock-key'")
	}
	return k, nil
}
