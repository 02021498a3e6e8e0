package raft

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

const encMarker = "rsw-plaintext-marker"

func openNodeKey(t *testing.T, dir string, dek []byte, st *state.Store) (*Node, error) {
	t.Helper()
	hasState, err := HasState(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{
		NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
		Store: st, Timings: FastTimings(), NoSync: true, DEK: dek,
	})
	if err != nil {
		layer.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if !hasState {
		if err := n.BootstrapSelf(); err != nil {
			t.Fatal(err)
		}
	}
	waitLeader(t, n, 10*time.Second)
	return n, nil
}

func markedNode(i int) *swarmpb.Node {
	n := nodeObj(i)
	n.Description.Hostname = encMarker + "-" + n.Id
	return n
}

// writeMarked writes count nodes starting at from, forces a snapshot after
// the first half, and shuts the node down.
func writeMarked(t *testing.T, n *Node, from, count int) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	for i := from; i < from+count; i++ {
		if _, err := n.Apply(ctx, createBatch(markedNode(i))); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if i == from+count/2 {
			if err := n.Snapshot(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// plaintextFiles lists the files under dir holding the encMarker.
func plaintextFiles(t *testing.T, dir string) (found []string, snapFiles int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(p, string(filepath.Separator)+"snapshots"+string(filepath.Separator)) {
			snapFiles++
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(encMarker)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, snapFiles
}

func encPerm(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestEncryptionAtRestLogAndSnapshots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	dek, _ := NewKey()
	n, err := openNodeKey(t, dir, dek, state.New())
	if err != nil {
		t.Fatal(err)
	}
	writeMarked(t, n, 0, 40)

	found, snaps := plaintextFiles(t, dir)
	if snaps == 0 {
		t.Fatal("no snapshot file was written")
	}
	if len(found) > 0 {
		t.Fatalf("plaintext found on disk in %v", found)
	}
	for _, p := range []string{dir, filepath.Join(dir, "snapshots")} {
		if m := encPerm(t, p); m != 0o700 {
			t.Errorf("%s has mode %o, want 700", p, m)
		}
	}

	// The same key reads it all back, from the snapshot and the log.
	st := state.New()
	n, err = openNodeKey(t, dir, dek, st)
	if err != nil {
		t.Fatal(err)
	}
	if got := countNodes(st); got != 40 {
		t.Fatalf("restored %d nodes, want 40", got)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Another key does not.
	other, _ := NewKey()
	if _, err := openNodeKey(t, dir, other, state.New()); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open with the wrong key: %v, want ErrDecrypt", err)
	}
	if _, err := openNodeKey(t, dir, nil, state.New()); !errors.Is(err, ErrNoDataKey) {
		t.Fatalf("open without a key: %v, want ErrNoDataKey", err)
	}
}

// A Raft folder written before encryption at rest (plaintext entries and
// snapshot, a 0755 snapshots folder) still loads, and what is written
// from then on is sealed.
func TestPlaintextStateStillLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	n, err := openNodeKey(t, dir, nil, state.New())
	if err != nil {
		t.Fatal(err)
	}
	writeMarked(t, n, 0, 20)
	if found, _ := plaintextFiles(t, dir); len(found) == 0 {
		t.Fatal("the old-format state holds no plaintext: the test proves nothing")
	}
	if err := os.Chmod(filepath.Join(dir, "snapshots"), 0o755); err != nil {
		t.Fatal(err)
	}

	dek, _ := NewKey()
	st := state.New()
	n, err = openNodeKey(t, dir, dek, st)
	if err != nil {
		t.Fatal(err)
	}
	if got := countNodes(st); got != 20 {
		t.Fatalf("loaded %d nodes from the plaintext state, want 20", got)
	}
	if m := encPerm(t, filepath.Join(dir, "snapshots")); m != 0o700 {
		t.Errorf("snapshots folder has mode %o after start, want 700", m)
	}
	writeMarked(t, n, 20, 20)

	st = state.New()
	if _, err := openNodeKey(t, dir, dek, st); err != nil {
		t.Fatal(err)
	}
	if got := countNodes(st); got != 40 {
		t.Fatalf("loaded %d nodes, want 40", got)
	}
}

// Sealed snapshots round-trip at chunk boundaries, report their plaintext
// size (what raft sends to followers), and detect truncation.
func TestSealedSnapshotStream(t *testing.T) {
	dir := t.TempDir()
	fss, err := hraft.NewFileSnapshotStoreWithLogger(dir, 10, hclogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	dek, _ := NewKey()
	aead, _ := newAEAD(dek)
	s := &encryptedSnapshots{inner: fss, dir: filepath.Join(dir, "snapshots"), aead: aead}
	_, trans := hraft.NewInmemTransport("a")
	for i, size := range []int{0, 1, snapChunk - 1, snapChunk, snapChunk + 1, 3*snapChunk + 17} {
		want := make([]byte, size)
		rand.Read(want)
		sink, err := s.Create(hraft.SnapshotVersionMax, uint64(i+1), 1, hraft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes, as io.Copy from a network stream gives.
		for off := 0; off < size; off += 1000 {
			if _, err := sink.Write(want[off:min(off+1000, size)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		meta, rc, err := s.Open(sink.ID())
		if err != nil {
			t.Fatalf("size %d: open: %v", size, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("size %d: read %d bytes, err %v", size, len(got), err)
		}
		if meta.Size != int64(size) {
			t.Fatalf("size %d: meta.Size %d", size, meta.Size)
		}

		// Cut the last chunk off: the reader must notice.
		if size > snapChunk {
			p := filepath.Join(dir, "snapshots", sink.ID(), "state.bin")
			b, _ := os.ReadFile(p)
			short := b[:snapHeader+snapChunkOut]
			r := &openReader{br: encBufReader(short[snapHeader:]), closer: io.NopCloser(nil), aead: aead, prefix: short[5:snapHeader]}
			if _, err := io.ReadAll(r); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("size %d: truncated snapshot read: %v, want ErrDecrypt", size, err)
			}
		}
	}
}

func TestDataKeyWrapping(t *testing.T) {
	dir := t.TempDir()
	dek, _ := LoadOrCreateDEK(dir, nil)
	if m := encPerm(t, filepath.Join(dir, DEKFile)); m != 0o600 {
		t.Fatalf("dek mode %o, want 600", m)
	}
	kek, _ := NewKey()
	if err := WriteDEK(dir, dek, kek); err != nil {
		t.Fatal(err)
	}
	if m := encPerm(t, filepath.Join(dir, DEKFile)); m != 0o600 {
		t.Fatalf("wrapped dek mode %o, want 600", m)
	}
	b, _ := os.ReadFile(filepath.Join(dir, DEKFile))
	if bytes.Contains(b, dek) {
		t.Fatal("wrapped file holds the key")
	}
	if _, err := LoadOrCreateDEK(dir, nil); !errors.Is(err, ErrBadUnlockKey) {
		t.Fatalf("no key: %v", err)
	}
	other, _ := NewKey()
	if _, err := LoadOrCreateDEK(dir, other); !errors.Is(err, ErrBadUnlockKey) {
		t.Fatalf("wrong key: %v", err)
	}
	key := FormatUnlockKey(kek)
	if !strings.HasPrefix(key, "SWMKEY-1-") {
		t.Fatalf("unlock key %q", key)
	}
	parsed, err := ParseUnlockKey(" " + key + "\n")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrCreateDEK(dir, parsed)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap: %v", err)
	}
	for _, bad := range []string{"", "SWMKEY-1-", "SWMKEY-1-abc", "SWMTKN-1-" + key[9:]} {
		if _, err := ParseUnlockKey(bad); err == nil {
			t.Errorf("ParseUnlockKey(%q) accepted", bad)
		}
	}
}

func encBufReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
