package raft

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	hraft "github.com/hashicorp/raft"
)

// Start-up checks of the state on disk. A damaged raft.db or newest
// snapshot must stop the manager with an error that names the file and
// says how to recover, never let it start on less state than it had:
// bbolt faults (SIGBUS) on a truncated file, and hashicorp/raft falls back
// to an older snapshot without a word, which loses state once the log
// entries after that snapshot have been compacted away.

// ErrCorrupt is wrapped by CorruptError.
var ErrCorrupt = errors.New("raft state is corrupt")

// CorruptError names a damaged Raft file and how to recover from it.
type CorruptError struct {
	What string // "raft log" or "raft snapshot"
	Path string
	Err  error // what was found
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s %s is corrupt (%v); this manager will not start on it: restore its state dir from a backup; "+
		"or, while the other managers keep quorum, demote and remove this node on one of them, delete this state dir and join the machine again; "+
		"or, if a majority is lost, run 'swarmctl init --force-new-cluster' on a manager with good data",
		e.What, e.Path, e.Err)
}

func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// bbolt's meta page layout (go.etcd.io/bbolt page.go and db.go), in the
// byte order of the machine that wrote it; raftswarm runs on
// little-endian machines (amd64, arm64).
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaSize   = 64 // magic .. checksum
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

func readBoltMeta(page []byte) (boltMeta, bool) {
	if len(page) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := page[boltPageHeader : boltPageHeader+boltMetaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkBoltFile catches the damage that bbolt does not report but faults
// on: an empty or truncated raft.db. A missing file is fine (a new node);
// garbage is left to bbolt, which reports it ("invalid database").
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return &CorruptError{What: "raft log", Path: path, Err: errors.New("the file is empty")}
	}
	page := make([]byte, boltPageHeader+boltMetaSize)
	var best boltMeta
	var found bool
	if n, _ := f.ReadAt(page, 0); n == len(page) {
		best, found = readBoltMeta(page)
	}
	if found {
		if n, _ := f.ReadAt(page, int64(best.pageSize)); n == len(page) {
			if m, ok := readBoltMeta(page); ok && m.txid > best.txid {
				best = m
			}
		}
	}
	if !found {
		return nil
	}
	if want := int64(best.pgid) * int64(best.pageSize); fi.Size() < want {
		return &CorruptError{What: "raft log", Path: path,
			Err: fmt.Errorf("truncated: %d bytes, its header says at least %d", fi.Size(), want)}
	}
	return nil
}

// checkNewestSnapshot reads the newest snapshot through the store that
// raft will restore it from: a plaintext snapshot's CRC is checked by
// hashicorp/raft's Open, a sealed one's chunks by openReader. This reads
// the snapshot once more at start-up, the price of refusing damage rather
// than falling back silently.
func checkNewestSnapshot(snaps hraft.SnapshotStore, dir string) error {
	list, err := snaps.List()
	if err != nil {
		return err
	}
	if err := checkSnapshotMetas(dir, list); err != nil {
		return err
	}
	if len(list) == 0 {
		return nil
	}
	id := list[0].ID
	path := filepath.Join(dir, id, "state.bin")
	meta, rc, err := snaps.Open(id)
	if errors.Is(err, ErrNoDataKey) {
		return err
	}
	if err != nil {
		return &CorruptError{What: "raft snapshot", Path: path, Err: err}
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err == nil && n != meta.Size {
		err = fmt.Errorf("read %d bytes, its meta.json says %d", n, meta.Size)
	}
	if err != nil {
		return &CorruptError{What: "raft snapshot", Path: path, Err: err}
	}
	return nil
}

// checkLog runs checkKey on the log, reporting as a CorruptError what
// bbolt finds damaged or panics on while reading it (a damaged page makes
// bbolt index out of range). A sealed entry that does not open stays
// ErrDecrypt: it may as well be the wrong key.
func checkLog(logs hraft.LogStore, path string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{What: "raft log", Path: path, Err: fmt.Errorf("%v", p)}
		}
	}()
	err = checkKey(logs)
	if err != nil && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrNoDataKey) {
		return &CorruptError{What: "raft log", Path: path, Err: err}
	}
	return err
}

// checkSnapshotMetas catches a finished snapshot whose meta.json does not
// read: hashicorp/raft's List skips such a snapshot with a warning and
// Raft restores the next older one, which loses state once the log
// entries after it have been compacted away. A damaged snapshot older
// than the newest good one loses nothing and is let be. list is what
// List returned (the readable snapshots).
func checkSnapshotMetas(dir string, list []*hraft.SnapshotMeta) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read snapshot dir: %w", err)
	}
	var newest *hraft.SnapshotMeta
	if len(list) > 0 {
		newest = list[0]
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), snapTmpSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name(), "meta.json")
		b, err := os.ReadFile(path)
		if err == nil {
			var m hraft.SnapshotMeta
			if err = json.Unmarshal(b, &m); err == nil && m.ID != e.Name() {
				err = fmt.Errorf("it names snapshot %q, not %q", m.ID, e.Name())
			}
		}
		if err == nil {
			continue
		}
		term, index, ok := snapshotNameOrder(e.Name())
		if ok && newest != nil && (term < newest.Term || term == newest.Term && index < newest.Index) {
			continue
		}
		return &CorruptError{What: "raft snapshot", Path: path, Err: err}
	}
	return nil
}

// snapshotNameOrder reads the term and index from a snapshot folder's
// name (hashicorp/raft's snapshotName: term-index-milliseconds).
func snapshotNameOrder(name string) (term, index uint64, ok bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 {
		return 0, 0, false
	}
	term, err1 := strconv.ParseUint(parts[0], 10, 64)
	index, err2 := strconv.ParseUint(parts[1], 10, 64)
	return term, index, err1 == nil && err2 == nil
}

// snapTmpSuffix marks a snapshot being written (hashicorp/raft's
// tmpSuffix); it is renamed away only once the snapshot is complete.
const snapTmpSuffix = ".tmp"

// removePartialSnapshots deletes the snapshot folders a crash left
// half-written. Raft never reads them (it restores the newest complete
// snapshot and replays the log after it, which is only compacted once a
// snapshot is complete), nor removes them: each would hold up to a whole
// snapshot's worth of disk for good.
func removePartialSnapshots(dir string, logger *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read snapshot dir: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), snapTmpSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("remove the partial snapshot %s left by a crash: %w", path, err)
		}
		if logger != nil {
			logger.Warn("removed a partial snapshot left by a crash; the state comes from the last complete snapshot and the log", "path", path)
		}
	}
	return nil
}
