package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Encryption at rest and autolock, on the node's side.
//
// A manager's Raft log and snapshots are sealed under its data key (DEK,
// STATE_DIR/raft/dek). While the cluster's autolock setting is on, every
// manager keeps that file wrapped under the cluster's key-encrypting key
// (KEK, Cluster.unlock_key, the unlock key users keep), re-wrapping it
// whenever the KEK changes and unwrapping it when autolock is turned off:
// keySync watches the replicated Cluster object for that. A manager that
// restarts with a wrapped DEK is locked: it serves only its local socket
// (Info says "locked", Control calls fail with errLocked) until Unlock
// gets the KEK. Workers hold no Raft state and are never locked.
//
// The node's TLS key (certs/node.key) is sealed under the KEK too
// (keyfile.go).

var errLocked = status.Error(codes.FailedPrecondition, "this manager is locked: run 'swarmctl swarm unlock' with the unlock key")

// errNeedsUnlock is dataKey's error when the DEK is wrapped under a KEK
// this process does not know.
var errNeedsUnlock = errors.New("the data key is locked")

// dataKey returns the DEK of this node's Raft folder, creating one when
// there is none (a new manager, or a state dir from before encryption at
// rest). A wrapped key is unwrapped with the last KEK this process knew.
func (n *Node) dataKey() ([]byte, error) {
	n.mu.Lock()
	kek := n.kek
	n.mu.Unlock()
	dek, err := raft.LoadOrCreateDEK(n.raftDir(), kek)
	if errors.Is(err, raft.ErrBadUnlockKey) {
		return nil, errNeedsUnlock
	}
	if err != nil {
		return nil, fmt.Errorf("load data key: %w", err)
	}
	return dek, nil
}

// Locked reports whether the node waits for 'swarmctl swarm unlock'.
func (n *Node) Locked() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.locked
}

// Unlock unwraps the data key of a locked manager with the unlock key and
// starts the manager and the agent.
func (n *Node) Unlock(ctx context.Context, key string) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	locked, m := n.locked, n.member
	n.mu.Unlock()
	if !locked {
		return status.Error(codes.FailedPrecondition, "this node is not locked")
	}
	kek, err := raft.ParseUnlockKey(key)
	if err != nil {
		return invalid(err)
	}
	// Check the key against every sealed file before starting anything.
	wrongKey := status.Error(codes.InvalidArgument, "invalid unlock key: it does not unlock this manager (if the key was rotated while this manager was down, use the key in force before the rotation)")
	if k, err := raft.ReadDEK(n.raftDir()); err == nil && k.IsWrapped() {
		if _, err := k.Unwrap(kek); err != nil {
			return wrongKey
		}
	}
	if _, sealed, _, err := readNodeKey(n.keyPath()); err == nil && sealed != nil {
		if _, err := raft.OpenWithKEK(kek, sealed, "node key"); err != nil {
			return wrongKey
		}
	}
	n.mu.Lock()
	n.kek = kek
	n.mu.Unlock()
	// Still locked for the socket's callers until everything runs.
	if err := n.resumeUnlocked(ctx, m); err != nil {
		n.stopAgent()
		n.stopManager()
		n.mu.Lock()
		pool := n.pool
		n.creds, n.pool = nil, nil
		n.mu.Unlock()
		if pool != nil {
			pool.Close()
		}
		return err
	}
	n.mu.Lock()
	n.locked = false
	n.mu.Unlock()
	n.log.Info("manager unlocked", "node", m.NodeID)
	return nil
}

// isLocked reports whether a node with membership m must wait for the
// unlock key: its data key is wrapped (a manager), or its TLS key is
// sealed (a manager, or a node that crashed while being demoted).
func (n *Node) isLocked(m *Membership) (bool, error) {
	if nodeKeySealed(n.keyPath()) {
		return true, nil
	}
	if !m.manager() {
		return false, nil
	}
	_, err := n.dataKey()
	if errors.Is(err, errNeedsUnlock) {
		return true, nil
	}
	return false, err
}

// startKeySync keeps the DEK file wrapped as the cluster's autolock
// setting and unlock key say, for as long as mgr runs.
func (n *Node) startKeySync(store *state.Store, dek []byte) {
	stop, done := make(chan struct{}), make(chan struct{})
	n.mu.Lock()
	n.curDEK, n.dekStop, n.dekDone = dek, stop, done
	n.mu.Unlock()
	go func() {
		defer close(done)
		for {
			var c *swarmpb.Cluster
			events, cancel := store.ViewAndWatch(func(tx state.ReadTx) { c = tx.Cluster() })
			n.syncKeys(c)
		loop:
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						break loop // the store was restored from a snapshot: read it again
					}
					if c := ev.Cluster(); c != nil && ev.Kind != state.EventDelete {
						n.syncKeys(c)
					}
				case <-stop:
					cancel()
					return
				}
			}
			cancel()
		}
	}()
}

func (n *Node) stopKeySync() {
	n.mu.Lock()
	stop, done := n.dekStop, n.dekDone
	n.dekStop, n.dekDone, n.curDEK = nil, nil, nil
	n.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// syncKeys makes the DEK file and the TLS key follow c: wrapped under
// c's unlock key while autolock is on, in the clear otherwise. It writes
// only what changes. A file written in the clear is sealed before the
// other is opened, so that a crash in between leaves the node locked
// (and unlockable with the key in force before), never half-protected
// without saying so.
func (n *Node) syncKeys(c *swarmpb.Cluster) {
	if c == nil {
		return
	}
	var want []byte
	if c.GetSettings().GetAutolock() && len(c.GetUnlockKey()) > 0 {
		want = c.GetUnlockKey()
	}
	n.dekMu.Lock()
	defer n.dekMu.Unlock()
	n.mu.Lock()
	dek, old := n.curDEK, n.kek
	n.mu.Unlock()
	if dek == nil {
		return
	}
	dir := n.raftDir()
	cur, err := raft.ReadDEK(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			n.log.Error("cannot read the data key file; autolock changes are not applied to it", "err", err)
		}
		return
	}
	sealKey := func() bool {
		if err := sealNodeKey(n.keyPath(), want, old); err != nil {
			n.log.Error("cannot rewrite the node's TLS key for the autolock setting", "err", err)
			return false
		}
		return true
	}
	if want == nil && !sealKey() {
		return
	}
	if !(want == nil && !cur.IsWrapped()) && !(want != nil && cur.IsWrapped() && cur.KEKID == raft.KEKID(want)) {
		if err := raft.WriteDEK(dir, dek, want); err != nil {
			n.log.Error("cannot rewrite the data key file for the autolock setting", "err", err, "file", filepath.Join(dir, raft.DEKFile))
			return
		}
		n.log.Info("data key file rewritten", "wrapped", want != nil)
	}
	if want != nil {
		if !sealKey() {
			return
		}
		n.setKEK(want)
	}
}

// saveCreds saves renewed credentials, sealing the new TLS key at once
// when this manager's keys are wrapped.
func (n *Node) saveCreds(creds *ca.Creds) error {
	n.dekMu.Lock()
	defer n.dekMu.Unlock()
	if err := creds.Save(n.certDir()); err != nil {
		return err
	}
	n.mu.Lock()
	kek, mgr := n.kek, n.mgr
	n.mu.Unlock()
	if kek == nil || mgr == nil {
		return nil
	}
	if k, err := raft.ReadDEK(n.raftDir()); err != nil || !k.IsWrapped() || k.KEKID != raft.KEKID(kek) {
		return nil
	}
	return sealNodeKey(n.keyPath(), kek, kek)
}

// unsealNodeKey writes the TLS key in the clear again: a demoted manager
// is a worker, and workers are never locked.
func (n *Node) unsealNodeKey() {
	n.dekMu.Lock()
	defer n.dekMu.Unlock()
	n.mu.Lock()
	kek := n.kek
	n.kek = nil
	n.mu.Unlock()
	if err := sealNodeKey(n.keyPath(), nil, kek); err != nil {
		n.log.Warn("cannot write the node's TLS key in the clear after demotion", "err", err)
	}
}

func (n *Node) setKEK(kek []byte) {
	n.mu.Lock()
	n.kek = kek
	n.mu.Unlock()
}

// fixModes makes the state dir and the folders in it 0700, those created
// by earlier versions included.
func fixModes(stateDir string) error {
	for _, d := range []string{stateDir, filepath.Join(stateDir, "certs"), filepath.Join(stateDir, "raft"), filepath.Join(stateDir, "raft", "snapshots")} {
		if err := os.Chmod(d, 0o700); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restrict %s to its owner: %w", d, err)
		}
	}
	return nil
}
