package docker

import (
	"context"
	"fmt"
	"maps"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/mount"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// dockerMounts translates the spec's mounts. A named volume carries its
// driver, options and labels, which the engine uses when it creates the
// volume along with the container (a volume that exists is used as is); a
// tmpfs mount its size.
func dockerMounts(ms []*swarmpb.Mount) []mount.Mount {
	var out []mount.Mount
	for _, m := range ms {
		dm := mount.Mount{
			Type:     mount.TypeBind,
			Source:   m.GetSource(),
			Target:   m.GetTarget(),
			ReadOnly: m.GetReadOnly(),
		}
		switch m.GetType() {
		case swarmpb.Mount_TYPE_VOLUME:
			dm.Type = mount.TypeVolume
			if m.GetVolumeDriver() != "" || len(m.GetVolumeOptions()) > 0 || len(m.GetVolumeLabels()) > 0 || m.GetVolumeNocopy() {
				dm.VolumeOptions = &mount.VolumeOptions{
					NoCopy: m.GetVolumeNocopy(),
					Labels: maps.Clone(m.GetVolumeLabels()),
				}
				if m.GetVolumeDriver() != "" || len(m.GetVolumeOptions()) > 0 {
					dm.VolumeOptions.DriverConfig = &mount.Driver{Name: m.GetVolumeDriver(), Options: maps.Clone(m.GetVolumeOptions())}
				}
			}
		case swarmpb.Mount_TYPE_TMPFS:
			dm.Type = mount.TypeTmpfs
			dm.Source = ""
			if m.GetTmpfsSizeBytes() > 0 {
				dm.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: m.GetTmpfsSizeBytes()}
			}
		}
		out = append(out, dm)
	}
	return out
}

// volumeInUseWait bounds how long RemoveVolumes retries a volume a
// container still uses (a removed stack's containers may still be
// stopping); volumeRetry is the pause between tries. Variables for tests.
var (
	volumeInUseWait = 20 * time.Second
	volumeRetry     = 500 * time.Millisecond
)

// RemoveVolumes implements exec.VolumeRemover: each named volume the engine
// has is removed; one still in use is retried until volumeInUseWait has
// passed, then reported with the engine's error.
func (e *Executor) RemoveVolumes(ctx context.Context, names []string) []exec.VolumeResult {
	out := make([]exec.VolumeResult, 0, len(names))
	deadline := time.Now().Add(volumeInUseWait)
	for _, name := range names {
		r := exec.VolumeResult{Name: name}
		for {
			if _, err := e.engine.VolumeInspect(ctx, name); cerrdefs.IsNotFound(err) {
				break
			} else if err != nil {
				r.Err = fmt.Sprintf("inspect volume %s: %v", name, err)
				break
			}
			err := e.engine.VolumeRemove(ctx, name, false)
			if err == nil {
				r.Removed = true
				break
			}
			if cerrdefs.IsNotFound(err) {
				break // removed meanwhile (another node on this engine)
			}
			if !cerrdefs.IsConflict(err) || time.Now().After(deadline) || !retry.Sleep(ctx, volumeRetry) {
				r.Err = fmt.Sprintf("remove volume %s: %v", name, err)
				break
			}
		}
		out = append(out, r)
	}
	return out
}
