package agent

import (
	"context"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

// Volume removal (stack rm --volumes): the leader pushes a request down the
// session; the agent removes what its engine has and answers with
// Dispatcher.ReportVolumeRemoval.
const (
	volumeRemoveTimeout = 25 * time.Second // the leader waits 30 s
	volumeReportTimeout = 5 * time.Second
	maxVolumeNames      = 1000
)

// removeVolumes handles one request in the background; addr is the leader
// whose session carried it.
func (ta *taskAgent) removeVolumes(ctx context.Context, addr string, req *swarmpb.VolumeRemovalRequest) {
	names := req.GetNames()
	if len(names) > maxVolumeNames {
		names = names[:maxVolumeNames]
	}
	go func() {
		var results []*swarmpb.VolumeRemoval
		if vr, ok := ta.exec.(exec.VolumeRemover); ok {
			rctx, cancel := context.WithTimeout(ctx, volumeRemoveTimeout)
			for _, r := range vr.RemoveVolumes(rctx, names) {
				results = append(results, &swarmpb.VolumeRemoval{Name: r.Name, Removed: r.Removed, Error: spec.ClipText(r.Err, spec.MaxTaskMessageLen)})
			}
			cancel()
		} else {
			for _, n := range names {
				results = append(results, &swarmpb.VolumeRemoval{Name: n, Error: "this node's container engine cannot remove volumes"})
			}
		}
		conn, err := ta.leader.conn(addr)
		if err != nil {
			ta.log.Warn("cannot report volume removal", "manager", addr, "err", err)
			return
		}
		rctx, cancel := context.WithTimeout(ctx, volumeReportTimeout)
		defer cancel()
		if _, err := swarmpb.NewDispatcherClient(conn).ReportVolumeRemoval(rctx,
			&swarmpb.ReportVolumeRemovalRequest{Id: req.GetId(), Results: results}); err != nil {
			ta.log.Warn("reporting volume removal failed", "manager", addr, "err", err)
		}
	}()
}
