package raft

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	hraft "github.com/hashicorp/raft"
)

// Encryption at rest. Every log entry's Data and every snapshot are sealed
// with AES-256-GCM under this manager's data encryption key (DEK, dek.go)
// on their way to disk and opened on their way back, by wrapping the
// LogStore and the SnapshotStore that hashicorp/raft is given. Raft itself,
// the FSM and the transport see plaintext: each manager encrypts its own
// disk with its own key, and the wire is protected by mutual TLS.
//
// Sealed records start with a zero byte, which neither a protobuf command
// envelope (field numbers start at 1) nor hashicorp/raft's msgpack-encoded
// configuration entries can start with, so records written before
// encryption existed are recognised and read as they are.

// ErrDecrypt is returned when sealed data does not open under the data
// key: the key is wrong or the data was altered.
var ErrDecrypt = errors.New("raft data does not decrypt with this manager's data key (wrong key or corrupted data)")

// ErrNoDataKey is returned when sealed data is read without a data key.
var ErrNoDataKey = errors.New("raft data is encrypted but no data key was given")

var (
	logMagic  = []byte{0x00, 'r', 's', 'e', 1} // sealed log entry, format 1
	snapMagic = []byte{0x00, 'r', 's', 's', 1} // sealed snapshot, format 1
)

const (
	gcmNonce     = 12
	gcmTag       = 16
	snapPrefix   = 7 // random nonce prefix of a sealed snapshot
	snapHeader   = 5 + snapPrefix
	snapChunk    = 64 << 10
	snapChunkOut = snapChunk + gcmTag
)

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != DEKSize {
		return nil, fmt.Errorf("data key must be %d bytes, got %d", DEKSize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// logAAD binds a sealed entry to its index and type, so that entries
// cannot be swapped on disk without detection.
func logAAD(l *hraft.Log) []byte {
	var ad [9]byte
	binary.BigEndian.PutUint64(ad[:8], l.Index)
	ad[8] = byte(l.Type)
	return ad[:]
}

func hasMagic(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

// encryptedLogs is a hraft.LogStore that seals Log.Data.
type encryptedLogs struct {
	inner hraft.LogStore
	aead  cipher.AEAD // nil: write plaintext, refuse to read sealed entries
}

func (s *encryptedLogs) FirstIndex() (uint64, error) { return s.inner.FirstIndex() }
func (s *encryptedLogs) LastIndex() (uint64, error)  { return s.inner.LastIndex() }
func (s *encryptedLogs) DeleteRange(min, max uint64) error {
	return s.inner.DeleteRange(min, max)
}

// IsMonotonic forwards the inner store's answer (hraft.MonotonicLogStore).
func (s *encryptedLogs) IsMonotonic() bool {
	m, ok := s.inner.(hraft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s *encryptedLogs) GetLog(index uint64, l *hraft.Log) error {
	if err := s.inner.GetLog(index, l); err != nil {
		return err
	}
	if !hasMagic(l.Data, logMagic) {
		return nil // written before encryption at rest
	}
	if s.aead == nil {
		return fmt.Errorf("raft log entry %d: %w", index, ErrNoDataKey)
	}
	body := l.Data[len(logMagic):]
	if len(body) < gcmNonce+gcmTag {
		return fmt.Errorf("raft log entry %d: %w", index, ErrDecrypt)
	}
	plain, err := s.aead.Open(nil, body[:gcmNonce], body[gcmNonce:], logAAD(l))
	if err != nil {
		return fmt.Errorf("raft log entry %d: %w", index, ErrDecrypt)
	}
	l.Data = plain
	return nil
}

// seal returns a copy of l with its Data sealed. The caller's Log is not
// touched: hashicorp/raft's LogCache keeps the same pointers in memory.
func (s *encryptedLogs) seal(l *hraft.Log) (*hraft.Log, error) {
	if s.aead == nil || len(l.Data) == 0 {
		return l, nil
	}
	c := *l
	out := make([]byte, len(logMagic)+gcmNonce, len(logMagic)+gcmNonce+len(l.Data)+gcmTag)
	copy(out, logMagic)
	if _, err := rand.Read(out[len(logMagic):]); err != nil {
		return nil, err
	}
	c.Data = s.aead.Seal(out, out[len(logMagic):], l.Data, logAAD(l))
	return &c, nil
}

func (s *encryptedLogs) StoreLog(l *hraft.Log) error {
	c, err := s.seal(l)
	if err != nil {
		return err
	}
	return s.inner.StoreLog(c)
}

func (s *encryptedLogs) StoreLogs(logs []*hraft.Log) error {
	if s.aead == nil {
		return s.inner.StoreLogs(logs)
	}
	sealed := make([]*hraft.Log, len(logs))
	for i, l := range logs {
		c, err := s.seal(l)
		if err != nil {
			return err
		}
		sealed[i] = c
	}
	return s.inner.StoreLogs(sealed)
}

// encryptedSnapshots is a hraft.SnapshotStore whose snapshots' contents
// are sealed (meta.json, which holds only the Raft configuration, index
// and term, stays readable). Snapshots installed from the leader arrive in
// plaintext over mTLS and go through Create like local ones.
type encryptedSnapshots struct {
	inner hraft.SnapshotStore
	dir   string // the snapshots folder, kept 0700
	aead  cipher.AEAD
}

func (s *encryptedSnapshots) Create(version hraft.SnapshotVersion, index, term uint64,
	configuration hraft.Configuration, configurationIndex uint64, trans hraft.Transport) (hraft.SnapshotSink, error) {
	sink, err := s.inner.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	// FileSnapshotStore makes each snapshot's folder 0755.
	_ = os.Chmod(filepath.Join(s.dir, sink.ID()+".tmp"), 0o700)
	if s.aead == nil {
		return sink, nil
	}
	w := &sealSink{SnapshotSink: sink, aead: s.aead}
	w.prefix = make([]byte, snapPrefix)
	if _, err := rand.Read(w.prefix); err != nil {
		_ = sink.Cancel()
		return nil, err
	}
	if _, err := sink.Write(append(append([]byte{}, snapMagic...), w.prefix...)); err != nil {
		_ = sink.Cancel()
		return nil, err
	}
	return w, nil
}

func (s *encryptedSnapshots) List() ([]*hraft.SnapshotMeta, error) { return s.inner.List() }

func (s *encryptedSnapshots) Open(id string) (*hraft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.inner.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, snapChunkOut)
	head, _ := br.Peek(snapHeader)
	if !hasMagic(head, snapMagic) {
		return meta, snapReadCloser{br, rc}, nil // written before encryption at rest
	}
	if s.aead == nil {
		rc.Close()
		return nil, nil, fmt.Errorf("snapshot %s: %w", id, ErrNoDataKey)
	}
	body := meta.Size - snapHeader
	chunks := (body + snapChunkOut - 1) / snapChunkOut
	if len(head) < snapHeader || body < gcmTag {
		rc.Close()
		return nil, nil, fmt.Errorf("snapshot %s: %w", id, ErrDecrypt)
	}
	m := *meta
	// Raft sends Size bytes to followers and checks the count it restores,
	// so Size must be the plaintext's.
	m.Size = body - chunks*gcmTag
	r := &openReader{br: br, closer: rc, aead: s.aead, prefix: append([]byte{}, head[len(snapMagic):]...)}
	if _, err := br.Discard(snapHeader); err != nil {
		rc.Close()
		return nil, nil, err
	}
	return &m, r, nil
}

type snapReadCloser struct {
	io.Reader
	io.Closer
}

func chunkNonce(prefix []byte, counter uint32, last bool) []byte {
	n := make([]byte, gcmNonce)
	copy(n, prefix)
	binary.BigEndian.PutUint32(n[snapPrefix:], counter)
	if last {
		n[gcmNonce-1] = 1
	}
	return n
}

// sealSink seals a snapshot in 64 KiB chunks (the STREAM construction:
// each chunk's nonce holds its number and whether it is the last, so
// reordering and truncation are detected).
type sealSink struct {
	hraft.SnapshotSink
	aead    cipher.AEAD
	prefix  []byte
	buf     []byte
	counter uint32
	closed  bool
}

func (w *sealSink) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) > snapChunk {
		if err := w.flush(w.buf[:snapChunk], false); err != nil {
			return 0, err
		}
		w.buf = append(w.buf[:0], w.buf[snapChunk:]...)
	}
	return len(p), nil
}

func (w *sealSink) flush(chunk []byte, last bool) error {
	out := w.aead.Seal(nil, chunkNonce(w.prefix, w.counter, last), chunk, nil)
	w.counter++
	_, err := w.SnapshotSink.Write(out)
	return err
}

func (w *sealSink) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.flush(w.buf, true); err != nil {
		_ = w.SnapshotSink.Cancel()
		return err
	}
	w.buf = nil
	return w.SnapshotSink.Close()
}

type openReader struct {
	br      *bufio.Reader
	closer  io.Closer
	aead    cipher.AEAD
	prefix  []byte
	counter uint32
	plain   []byte
	cbuf    []byte
	done    bool
}

func (r *openReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

func (r *openReader) next() error {
	if r.cbuf == nil {
		r.cbuf = make([]byte, snapChunkOut)
	}
	n, err := io.ReadFull(r.br, r.cbuf)
	last := false
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		last = true
	case err != nil:
		return err
	default:
		_, perr := r.br.Peek(1)
		last = perr == io.EOF
	}
	if n < gcmTag {
		return fmt.Errorf("snapshot is truncated: %w", ErrDecrypt)
	}
	plain, oerr := r.aead.Open(r.cbuf[:0:0], chunkNonce(r.prefix, r.counter, last), r.cbuf[:n], nil)
	if oerr != nil {
		return fmt.Errorf("snapshot chunk %d: %w", r.counter, ErrDecrypt)
	}
	r.counter++
	r.plain, r.done = plain, last
	return nil
}

func (r *openReader) Close() error { return r.closer.Close() }

// checkKey reads the last log entries that hold data, so that a wrong or
// missing data key fails Open with a clear error rather than deep inside
// raft's start-up.
func checkKey(logs hraft.LogStore) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return err
	}
	last, err := logs.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	for i := last; i >= first && i > 0 && last-i < 64; i-- {
		var l hraft.Log
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, hraft.ErrLogNotFound) {
				continue
			}
			return err
		}
		if len(l.Data) > 0 {
			return nil
		}
	}
	return nil
}
