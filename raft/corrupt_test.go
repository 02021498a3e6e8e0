package raft

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftswarm/raftswarm/state"
)

// TestCorruptStateRefusesToStart damages raft.db or the newest snapshot
// of a stopped node and checks that Open fails with a CorruptError naming
// the file and the way out, instead of faulting in bbolt or starting on
// an older snapshot.
func TestCorruptStateRefusesToStart(t *testing.T) {
	db := func(dir string) string { return filepath.Join(dir, "raft.db") }
	truncate := func(t *testing.T, path string, frac int64) {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, fi.Size()*frac/100); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		sealed bool
		damage func(t *testing.T, dir string) string // returns the damaged file
	}{
		{"raft.db garbage", false, func(t *testing.T, dir string) string {
			if err := os.WriteFile(db(dir), []byte(strings.Repeat("garbage ", 2048)), 0o600); err != nil {
				t.Fatal(err)
			}
			return db(dir)
		}},
		{"raft.db truncated", false, func(t *testing.T, dir string) string { truncate(t, db(dir), 50); return db(dir) }},
		{"raft.db page damaged", false, func(t *testing.T, dir string) string {
			// In the middle of the file: a page the start-up read of the
			// last entries goes through, where bbolt panics.
			b, err := os.ReadFile(db(dir))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 64; i++ {
				b[len(b)/2+i] ^= 0x5a
			}
			if err := os.WriteFile(db(dir), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return db(dir)
		}},
		{"raft.db emptied", false, func(t *testing.T, dir string) string { truncate(t, db(dir), 0); return db(dir) }},
		{"snapshot flipped", false, func(t *testing.T, dir string) string { p := newestState(t, dir); flip(t, p); return p }},
		{"snapshot truncated", false, func(t *testing.T, dir string) string { p := newestState(t, dir); truncate(t, p, 50); return p }},
		{"snapshot meta.json damaged", false, func(t *testing.T, dir string) string {
			p := filepath.Join(filepath.Dir(newestState(t, dir)), "meta.json")
			if err := os.WriteFile(p, []byte(`{"Version":1,"ID":`), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"snapshot meta.json emptied", true, func(t *testing.T, dir string) string {
			p := filepath.Join(filepath.Dir(newestState(t, dir)), "meta.json")
			truncate(t, p, 0)
			return p
		}},
		{"sealed snapshot flipped", true, func(t *testing.T, dir string) string { p := newestState(t, dir); flip(t, p); return p }},
		{"sealed snapshot truncated", true, func(t *testing.T, dir string) string { p := newestState(t, dir); truncate(t, p, 50); return p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var dek []byte
			if tc.sealed {
				dek = make([]byte, DEKSize)
				dek[0] = 7
			}
			makeState(t, dir, dek)
			path := tc.damage(t, dir)
			layer := listen(t, "127.0.0.1:0")
			n, err := Open(Config{NodeID: "n1", Addr: layer.Addr().String(), Dir: dir, Stream: layer,
				Store: state.New(), Timings: FastTimings(), NoSync: true, DEK: dek})
			if err == nil {
				_ = n.Shutdown()
				t.Fatal("opened damaged state")
			}
			layer.Close()
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want a CorruptError", err)
			}
			if ce.Path != path || !strings.Contains(err.Error(), path) {
				t.Fatalf("error names %q, want %q: %v", ce.Path, path, err)
			}
			if !strings.Contains(err.Error(), "--force-new-cluster") || !strings.Contains(err.Error(), "backup") {
				t.Fatalf("error does not say how to recover: %v", err)
			}
		})
	}
}
