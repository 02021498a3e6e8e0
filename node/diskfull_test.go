package node_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestManagerDiskFull runs a one-manager cluster on a 48 MiB tmpfs, fills
// it, and checks through the control API that a write fails with
// ResourceExhausted and a message naming the full disk, that reads keep
// working, and that writes resume, with nothing lost, once the filler is
// deleted. Root only (it mounts the tmpfs).
func TestManagerDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt, err := os.MkdirTemp("", "rel-disk-node-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "rel-disk-tmpfs", mnt).CombinedOutput(); err != nil {
		_ = os.Remove(mnt)
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { // after the cluster's own cleanup stopped the members
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			return
		}
		_ = os.Remove(mnt)
	})
	c := testcluster.New(t, 1, 0, testcluster.Options{BaseDir: mnt})
	ctl := c.Control()
	ctx := ctxT(t, 2*time.Minute)
	if _, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m1", LabelAdd: map[string]string{"before": "1"}}); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	_, err = ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m1", LabelAdd: map[string]string{"full": "1"}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("write on a full disk: got %v, want ResourceExhausted naming the full state dir", err)
	}
	t.Logf("write on a full disk: %v", err)
	got, err := ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "m1"})
	if err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	if got.Node.Node.Spec.Labels["before"] != "1" {
		t.Fatalf("acknowledged label lost: %v", got.Node.Node.Spec.Labels)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m1", LabelAdd: map[string]string{"after": "1"}})
		return err
	})
	got, err = ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if l := got.Node.Node.Spec.Labels; l["before"] != "1" || l["after"] != "1" {
		t.Fatalf("labels after space returned: %v", l)
	}
}
