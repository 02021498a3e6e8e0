package node

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/raft"
)

// The node's TLS key under autolock. A manager's certificate is enough to
// call the cluster's manager API (GetUnlockKey included) and to rejoin
// Raft, so a copy of a locked manager's disk must not hold its key in the
// clear: while autolock is on, certs/node.key is sealed under the KEK like
// the data key, as SwarmKit does, and opened by 'swarm unlock'.

const sealedKeyType = "RAFTSWARM SEALED PRIVATE KEY"

func (n *Node) keyPath() string { return filepath.Join(n.certDir(), ca.NodeKeyFile) }

// readNodeKey returns node.key's PEM, and for a sealed one the sealed
// bytes and the ID of the KEK that sealed them.
func readNodeKey(path string) (plainPEM, sealed []byte, kekID string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, "", err
	}
	blk, _ := pem.Decode(b)
	if blk != nil && blk.Type == sealedKeyType {
		return nil, blk.Bytes, blk.Headers["Kek-Id"], nil
	}
	return b, nil, "", nil
}

// nodeKeySealed reports whether node.key is sealed (false when absent).
func nodeKeySealed(path string) bool {
	_, sealed, _, err := readNodeKey(path)
	return err == nil && sealed != nil
}

// sealNodeKey rewrites node.key sealed under kek, or in the clear when
// kek is nil; oldKEK opens a key sealed under another KEK.
func sealNodeKey(path string, kek, oldKEK []byte) error {
	plain, sealed, id, err := readNodeKey(path)
	if err != nil {
		return err
	}
	if sealed != nil {
		if kek != nil && id == raft.KEKID(kek) {
			return nil
		}
		if plain, err = raft.OpenWithKEK(oldKEK, sealed, "node key"); err != nil {
			return fmt.Errorf("open the sealed node key: %w", err)
		}
	} else if kek == nil {
		return nil
	}
	out := plain
	if kek != nil {
		s, err := raft.SealWithKEK(kek, plain, "node key")
		if err != nil {
			return err
		}
		out = pem.EncodeToMemory(&pem.Block{Type: sealedKeyType, Headers: map[string]string{"Kek-Id": raft.KEKID(kek)}, Bytes: s})
	}
	return writeKeyFileAtomic(path, out, 0o600)
}

// loadCreds reads the node's credentials, opening a sealed key with kek.
func (n *Node) loadCreds(kek []byte) (*ca.Creds, error) {
	_, sealed, _, err := readNodeKey(n.keyPath())
	if err != nil || sealed == nil {
		return ca.LoadCreds(n.certDir())
	}
	keyPEM, err := raft.OpenWithKEK(kek, sealed, "node key")
	if err != nil {
		return nil, err
	}
	var files [2][]byte
	for i, name := range []string{ca.RootCertFile, ca.NodeCertFile} {
		if files[i], err = os.ReadFile(filepath.Join(n.certDir(), name)); err != nil {
			return nil, fmt.Errorf("load node credentials: %w", err)
		}
	}
	return ca.NewCreds(files[0], files[1], keyPEM)
}

func writeKeyFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
