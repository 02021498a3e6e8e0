package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

const atRestMarker = "rsw-at-rest-marker-7f3a"

func permOf(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// raftFiles returns raft.db and every file of every snapshot under dir.
func raftFiles(t *testing.T, raftDir string) (files []string, snapshots int) {
	t.Helper()
	files = append(files, filepath.Join(raftDir, "raft.db"))
	err := filepath.WalkDir(filepath.Join(raftDir, "snapshots"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
			snapshots++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, snapshots
}

// After init and a service with a recognisable label, neither raft.db nor
// any snapshot holds the root CA key or the label; the state folders are
// 0700 (also those an older version left 0755) and the data key 0600.
func TestStateAtRestIsEncrypted(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m := c.Get("m1")
	spec := svcSpec("web", 0)
	spec.Labels = map[string]string{"marker": atRestMarker}
	if _, err := m.Control().CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var caKey []byte
	m.Node.Manager().Store().View(func(tx state.ReadTx) { caKey = tx.Cluster().GetRootCa().GetKeyPem() })
	if len(caKey) == 0 {
		t.Fatal("no root CA key in the store")
	}
	if err := m.Node.Manager().Raft().Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// More entries after the snapshot, so the log holds some too.
	if err := recSetLabel(ctx, m.Control(), "m1", "after-snapshot", atRestMarker); err != nil {
		t.Fatal(err)
	}
	m.Stop()

	raftDir := filepath.Join(m.Dir, "raft")
	files, snaps := raftFiles(t, raftDir)
	if snaps == 0 {
		t.Fatal("no snapshot was written")
	}
	// A line from the middle of the PEM body, in case the PEM is stored
	// in pieces.
	keyLine := strings.Split(string(caKey), "\n")[2]
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range map[string][]byte{"root CA key": caKey, "root CA key line": []byte(keyLine), "service label": []byte(atRestMarker)} {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds the %s in plaintext", f, what)
			}
		}
	}
	for p, want := range map[string]fs.FileMode{
		m.Dir: 0o700, raftDir: 0o700, filepath.Join(raftDir, "snapshots"): 0o700,
		filepath.Join(raftDir, raft.DEKFile): 0o600,
	} {
		if got := permOf(t, p); got != want {
			t.Errorf("%s has mode %o, want %o", p, got, want)
		}
	}

	// Folders an older version made 0755 are tightened at start, and the
	// state reads back.
	for _, d := range []string{m.Dir, raftDir, filepath.Join(raftDir, "snapshots")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m.Start(t)
	for _, d := range []string{m.Dir, raftDir, filepath.Join(raftDir, "snapshots")} {
		if got := permOf(t, d); got != 0o700 {
			t.Errorf("%s has mode %o after restart, want 700", d, got)
		}
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		resp, err := m.Control().GetService(ctx, &swarmpb.GetServiceRequest{Service: "web"})
		if err != nil {
			return err
		}
		if v := resp.GetService().GetSpec().GetLabels()["marker"]; v != atRestMarker {
			return fmt.Errorf("label after restart: %q", v)
		}
		return nil
	})
}

const sealedKeyPEM = "-----BEGIN RAFTSWARM SEALED PRIVATE KEY-----"

// keySealed reports whether the member's TLS key file is sealed; a
// plaintext one must be an ordinary PEM private key.
func keySealed(t *testing.T, m *testcluster.Member) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.Dir, "certs", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(b, []byte(sealedKeyPEM)) {
		return true
	}
	if !bytes.Contains(b, []byte("PRIVATE KEY-----")) {
		t.Fatalf("%s: node.key is neither sealed nor a PEM key", m.Name)
	}
	return false
}

// dekWrappedBy waits until the member's data key file and TLS key are
// wrapped under key (or both in the clear when key is "").
func dekWrappedBy(t *testing.T, m *testcluster.Member, key string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() error {
		if sealed := keySealed(t, m); sealed != (key != "") {
			return fmt.Errorf("%s: node.key sealed=%v", m.Name, sealed)
		}
		k, err := raft.ReadDEK(filepath.Join(m.Dir, "raft"))
		if err != nil {
			return err
		}
		if key == "" {
			if k.IsWrapped() {
				return fmt.Errorf("%s: data key still wrapped", m.Name)
			}
			return nil
		}
		kek, err := raft.ParseUnlockKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if !k.IsWrapped() || k.KEKID != raft.KEKID(kek) {
			return fmt.Errorf("%s: data key not wrapped under the current unlock key", m.Name)
		}
		return nil
	})
}

func infoState(t *testing.T, ctx context.Context, m *testcluster.Member) string {
	t.Helper()
	info, err := m.Local().Info(ctx, &swarmpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

func unlockNode(ctx context.Context, m *testcluster.Member, key string) error {
	_, err := m.Local().Unlock(ctx, &swarmpb.UnlockRequest{UnlockKey: key})
	return err
}

// init --autolock; a restarted manager is locked, refuses Control and
// wrong keys, and unlocks with the right one with its state intact; after
// a rotation only the new key unlocks; with autolock off it restarts
// unlocked.
func TestAutolockInitRestartUnlockRotate(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 120*time.Second)
	a := c.Add("a1")
	resp, err := a.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: a.Addr, Autolock: true})
	if err != nil {
		t.Fatal(err)
	}
	key := resp.GetUnlockKey()
	if !strings.HasPrefix(key, "SWMKEY-1-") {
		t.Fatalf("init --autolock returned unlock key %q", key)
	}
	dekWrappedBy(t, a, key)
	got, err := a.Control().GetUnlockKey(ctx, &swarmpb.GetUnlockKeyRequest{})
	if err != nil || got.GetUnlockKey() != key {
		t.Fatalf("unlock-key: %q, %v", got.GetUnlockKey(), err)
	}
	cl, err := a.Control().GetCluster(ctx, &swarmpb.GetClusterRequest{})
	if err != nil || !cl.GetCluster().GetSettings().GetAutolock() {
		t.Fatalf("swarm inspect: %v, %v", cl, err)
	}
	if err := recSetLabel(ctx, a.Control(), "a1", "kept", "yes"); err != nil {
		t.Fatal(err)
	}
	zero, fifty := uint64(0), uint64(50)
	_, err = a.Control().UpdateCluster(ctx, &swarmpb.UpdateClusterRequest{MaxReplicas: &zero})
	wantStatus(t, "max replicas 0", err, codes.InvalidArgument, "max replicas must be between 1 and")
	up, err := a.Control().UpdateCluster(ctx, &swarmpb.UpdateClusterRequest{MaxReplicas: &fifty})
	if err != nil || up.GetCluster().GetSettings().GetMaxReplicas() != 50 || up.GetUnlockKey() != "" {
		t.Fatalf("max replicas 50: %v, %v", up, err)
	}

	a.Stop()
	a.Start(t)
	if s := infoState(t, ctx, a); s != "locked" {
		t.Fatalf("restarted manager is %q, want locked", s)
	}
	_, err = a.Control().ListNodes(ctx, &swarmpb.ListNodesRequest{})
	wantStatus(t, "node ls while locked", err, codes.FailedPrecondition, "this manager is locked", "swarmctl swarm unlock")
	_, err = a.Control().GetCluster(ctx, &swarmpb.GetClusterRequest{})
	wantStatus(t, "swarm inspect while locked", err, codes.FailedPrecondition, "this manager is locked")
	_, err = a.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: a.Addr})
	wantStatus(t, "init while locked", err, codes.FailedPrecondition, "this manager is locked")
	_, err = a.Local().Leave(ctx, &swarmpb.LeaveRequest{})
	wantStatus(t, "leave while locked", err, codes.FailedPrecondition, "this manager is locked")
	other, _ := raft.NewKey()
	wantStatus(t, "unlock with another key", unlockNode(ctx, a, raft.FormatUnlockKey(other)), codes.InvalidArgument, "invalid unlock key")
	wantStatus(t, "unlock with garbage", unlockNode(ctx, a, "not-a-key"), codes.InvalidArgument, "invalid unlock key")
	if s := infoState(t, ctx, a); s != "locked" {
		t.Fatalf("after wrong keys the manager is %q, want locked", s)
	}
	if err := unlockNode(ctx, a, key); err != nil {
		t.Fatalf("unlock with the right key: %v", err)
	}
	if s := infoState(t, ctx, a); s != "active" {
		t.Fatalf("unlocked manager is %q", s)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		v, err := recLabel(ctx, a.Control(), "a1", "kept")
		if err != nil || v != "yes" {
			return fmt.Errorf("label after unlock: %q, %v", v, err)
		}
		return nil
	})
	wantStatus(t, "unlock when not locked", unlockNode(ctx, a, key), codes.FailedPrecondition, "not locked")

	// Rotation: the manager re-wraps its data key under the new key.
	rot, err := a.Control().GetUnlockKey(ctx, &swarmpb.GetUnlockKeyRequest{Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	key2 := rot.GetUnlockKey()
	if key2 == key || !strings.HasPrefix(key2, "SWMKEY-1-") {
		t.Fatalf("rotated key %q (old %q)", key2, key)
	}
	dekWrappedBy(t, a, key2)
	a.Stop()
	a.Start(t)
	wantStatus(t, "unlock with the key before rotation", unlockNode(ctx, a, key), codes.InvalidArgument, "invalid unlock key")
	if err := unlockNode(ctx, a, key2); err != nil {
		t.Fatalf("unlock with the rotated key: %v", err)
	}

	// Autolock off: the data key is unwrapped and a restart is unlocked.
	off := false
	if _, err := a.Control().UpdateCluster(ctx, &swarmpb.UpdateClusterRequest{Autolock: &off}); err != nil {
		t.Fatal(err)
	}
	dekWrappedBy(t, a, "")
	if k, err := a.Control().GetUnlockKey(ctx, &swarmpb.GetUnlockKeyRequest{}); err != nil || k.GetUnlockKey() != "" {
		t.Fatalf("unlock-key with autolock off: %q, %v", k.GetUnlockKey(), err)
	}
	_, err = a.Control().GetUnlockKey(ctx, &swarmpb.GetUnlockKeyRequest{Rotate: true})
	wantStatus(t, "rotate with autolock off", err, codes.FailedPrecondition, "autolock is off")
	a.Stop()
	a.Start(t)
	if s := infoState(t, ctx, a); s != "active" {
		t.Fatalf("with autolock off a restarted manager is %q", s)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		v, err := recLabel(ctx, a.Control(), "a1", "kept")
		if err != nil || v != "yes" {
			return fmt.Errorf("label after restart: %q, %v", v, err)
		}
		return nil
	})
}

// In a 3-manager cluster with autolock turned on live, a manager that
// restarts is locked, and once unlocked it catches up and is a reachable
// manager again; a worker that restarts is never locked.
func TestAutolockManagerRejoins(t *testing.T) {
	c := testcluster.New(t, 3, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 120*time.Second)
	on := true
	// Through a follower's socket: the proxy relays it to the leader.
	resp, err := recFollower(t, c).Control().UpdateCluster(ctx, &swarmpb.UpdateClusterRequest{Autolock: &on})
	if err != nil {
		t.Fatal(err)
	}
	key := resp.GetUnlockKey()
	if key == "" {
		t.Fatal("turning autolock on returned no key")
	}
	for _, n := range []string{"m1", "m2", "m3"} {
		dekWrappedBy(t, c.Get(n), key)
	}
	// Turning it on again is a no-op that does not change the key.
	again, err := c.Control().UpdateCluster(ctx, &swarmpb.UpdateClusterRequest{Autolock: &on})
	if err != nil || again.GetUnlockKey() != "" {
		t.Fatalf("autolock on twice: key %q, %v", again.GetUnlockKey(), err)
	}

	down := recFollower(t, c)
	down.Stop()
	var live *testcluster.Member
	for _, n := range []string{"m1", "m2", "m3"} {
		if m := c.Get(n); m.Running() {
			live = m
		}
	}
	if err := recSetLabel(ctx, live.Control(), "m1", "while-down", "1"); err != nil {
		t.Fatal(err)
	}
	down.Start(t)
	if s := infoState(t, ctx, down); s != "locked" {
		t.Fatalf("restarted %s is %q, want locked", down.Name, s)
	}
	if err := unlockNode(ctx, down, key); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if v, err := recLabel(ctx, down.Control(), "m1", "while-down"); err != nil || v != "1" {
			return fmt.Errorf("label via %s: %q, %v", down.Name, v, err)
		}
		info, err := recInfo(ctx, live.Control())
		if err != nil {
			return err
		}
		if s := info[down.Name].ManagerStatus; s != "Reachable" && s != "Leader" {
			return fmt.Errorf("%s manager status %q after unlock", down.Name, s)
		}
		return nil
	})

	w := c.Get("w1")
	if keySealed(t, w) {
		t.Fatal("a worker's TLS key is sealed")
	}
	w.Stop()
	w.Start(t)
	if s := infoState(t, ctx, w); s != "active" {
		t.Fatalf("restarted worker is %q", s)
	}

	// A demoted manager is a worker: its key is in the clear again and it
	// restarts unlocked.
	role := swarmpb.NodeRole_NODE_ROLE_WORKER
	if _, err := live.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: down.Name, DesiredRole: &role}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if down.Node.Manager() != nil {
			return fmt.Errorf("%s still runs a manager", down.Name)
		}
		if keySealed(t, down) {
			return fmt.Errorf("%s: node.key still sealed after demotion", down.Name)
		}
		return nil
	})
	down.Stop()
	down.Start(t)
	if s := infoState(t, ctx, down); s != "active" {
		t.Fatalf("restarted demoted manager is %q", s)
	}
}

// A state dir written before encryption at rest (plaintext log and
// snapshot, no data key file, a 0755 snapshots folder) still loads, and
// what is written from then on is sealed.
func TestPlaintextStateDirStillLoads(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{Configure: func(_ string, cfg *node.Config) { cfg.PlaintextRaft = true }})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m := c.Get("m1")
	if err := recSetLabel(ctx, m.Control(), "m1", "old", atRestMarker); err != nil {
		t.Fatal(err)
	}
	if err := m.Node.Manager().Raft().Snapshot(); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	raftDir := filepath.Join(m.Dir, "raft")
	if err := os.Remove(filepath.Join(raftDir, raft.DEKFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(raftDir, "snapshots"), 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(raftDir, "raft.db"))
	if err != nil || !bytes.Contains(db, []byte(atRestMarker)) {
		t.Fatalf("the old-format log holds no plaintext (%v): the test proves nothing", err)
	}

	// The same dir under today's defaults.
	n, err := node.New(node.Config{
		StateDir: m.Dir, SocketPath: filepath.Join(t.TempDir(), "new.sock"), Hostname: "m1",
		Timings: raft.FastTimings(), HeartbeatPeriod: 100 * time.Millisecond, NoSync: true,
		Executor: func(id string) (exec.Executor, error) { return fake.New(id), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if got := permOf(t, filepath.Join(raftDir, "snapshots")); got != 0o700 {
		t.Errorf("snapshots folder has mode %o after start, want 700", got)
	}
	if k, err := raft.ReadDEK(raftDir); err != nil || k.IsWrapped() {
		t.Fatalf("no fresh data key: %v", err)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		mgr := n.Manager()
		if mgr == nil {
			return fmt.Errorf("no manager")
		}
		var v string
		mgr.Store().View(func(tx state.ReadTx) { v = tx.GetNode(n.NodeID()).GetSpec().GetLabels()["old"] })
		if v != atRestMarker {
			return fmt.Errorf("label from the plaintext state: %q", v)
		}
		return nil
	})
	// New writes are sealed: the new label is nowhere on disk in the clear.
	newLabel := atRestMarker + "-new"
	mgr := n.Manager()
	testutil.Eventually(t, 15*time.Second, func() error {
		var nd *swarmpb.Node
		mgr.Store().View(func(tx state.ReadTx) { nd = tx.GetNode(n.NodeID()) })
		nd = proto.Clone(nd).(*swarmpb.Node)
		nd.Spec.Labels["new"] = newLabel
		_, err := mgr.Raft().Apply(ctx, &swarmpb.StoreBatch{Actions: []*swarmpb.StoreAction{{
			Kind: swarmpb.StoreAction_KIND_UPDATE, Target: &swarmpb.StoreAction_Node{Node: nd}}}})
		return err
	})
	if err := mgr.Raft().Snapshot(); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	files, _ := raftFiles(t, raftDir)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(newLabel)) {
			t.Errorf("%s holds a label written after the upgrade in plaintext", f)
		}
	}
}

// A snapshot the leader sends to a new manager (InstallSnapshot) arrives in
// plaintext over mTLS and is sealed by the receiver under its own key.
func TestInstalledSnapshotIsSealed(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{Configure: func(_ string, cfg *node.Config) { cfg.Timings.TrailingLogs = 1 }})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1 := c.Get("m1")
	if err := recSetLabel(ctx, m1.Control(), "m1", "sent", atRestMarker); err != nil {
		t.Fatal(err)
	}
	if err := m1.Node.Manager().Raft().Snapshot(); err != nil {
		t.Fatal(err)
	}
	m2 := c.Join("m2", swarmpb.NodeRole_NODE_ROLE_MANAGER)
	testutil.Eventually(t, 15*time.Second, func() error {
		v, err := recLabel(ctx, m2.Control(), "m1", "sent")
		if err != nil || v != atRestMarker {
			return fmt.Errorf("label via m2: %q, %v", v, err)
		}
		return nil
	})
	m2.Stop()
	files, snaps := raftFiles(t, filepath.Join(m2.Dir, "raft"))
	if snaps == 0 {
		t.Fatal("m2 received no snapshot: the test proves nothing")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(atRestMarker)) {
			t.Errorf("%s holds the label in plaintext", f)
		}
	}
	// And it reads back from its own disk.
	m2.Start(t)
	testutil.Eventually(t, 15*time.Second, func() error {
		mgr := m2.Node.Manager()
		if mgr == nil {
			return fmt.Errorf("no manager")
		}
		var v string
		mgr.Store().View(func(tx state.ReadTx) {
			for _, nd := range tx.ListNodes() {
				if nd.GetDescription().GetHostname() == "m1" {
					v = nd.GetSpec().GetLabels()["sent"]
				}
			}
		})
		if v != atRestMarker {
			return fmt.Errorf("m2's replica after restart: %q", v)
		}
		return nil
	})
}
