package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/mesh"
)

// Values of Config.MeshPath.
const (
	MeshPathAuto      = "auto"
	MeshPathUserspace = "userspace"
)

// ValidMeshPath checks a --mesh-path value.
func ValidMeshPath(p string) error {
	switch p {
	case "", MeshPathAuto, MeshPathUserspace:
		return nil
	}
	return fmt.Errorf("invalid mesh path %q: use %s or %s", p, MeshPathAuto, MeshPathUserspace)
}

// newForwarder makes the node's kernel forwarder; a variable so tests can
// stand in for nftables.
var newForwarder = func(ctx context.Context, nodeID string) (mesh.Forwarder, error) {
	return mesh.NewNFTForwarder(ctx, nodeID)
}

// removeStaleRules removes this node's kernel rules on the userspace path;
// a variable so tests need not touch nftables.
var removeStaleRules = func(ctx context.Context, nodeID string) error {
	ctx, cancel := context.WithTimeout(ctx, publishedTargetsTimeout)
	defer cancel()
	return mesh.RemoveNFTTable(ctx, nodeID)
}

// publishedTargetsTimeout bounds the engine call behind setLocalTargets.
const publishedTargetsTimeout = 5 * time.Second

// leaveNoRules closes m, which removes the kernel rules it applied, and
// when m never got onto the kernel path where it was to be tried, removes
// the rules an earlier run of this node left: a daemon killed, restarted
// and stopped again before its mesh was set up (bench/failover's last
// round: stopped 60 ms after its restart) left its table behind, since
// the setup that removes it was cut short.
func (ta *taskAgent) leaveNoRules(m *mesh.Mesh) {
	path, _ := m.Path() // before Close, which ends the kernel path
	m.Close()
	if ta.meshPath != MeshPathAuto || path == mesh.PathKernel {
		return // userspace by configuration (setupKernelPath removed them), or Close did
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishedTargetsTimeout)
	defer cancel()
	if err := removeStaleRules(ctx, ta.nodeID); err != nil {
		ta.log.Debug("cannot check for stale routing-mesh rules", "err", err)
	}
}

// setupKernelPath puts m on the kernel path when the configuration asks
// for it and this node may, and otherwise records why not (reported in the
// node description).
func (ta *taskAgent) setupKernelPath(ctx context.Context, m *mesh.Mesh) {
	if ta.meshPath != MeshPathAuto {
		// Rules an earlier run on the kernel path left when it died
		// would still catch new connections: remove them. Only for
		// daemons (an explicit setting): the in-process nodes of tests
		// ("") leave the kernel alone.
		if ta.meshPath != MeshPathUserspace {
			m.SetKernelUnavailable(errors.New("kernel forwarding not configured"))
			return
		}
		m.SetKernelUnavailable(errors.New("--mesh-path=userspace"))
		if err := removeStaleRules(ctx, ta.nodeID); err != nil {
			ta.log.Debug("cannot check for stale routing-mesh rules", "err", err)
		}
		return
	}
	f, err := newForwarder(ctx, ta.nodeID)
	if err == nil {
		err = m.UseKernel(f)
	}
	if err != nil {
		m.SetKernelUnavailable(err)
		ta.log.Warn("routing mesh in user space: the kernel cannot forward published ports on this node", "err", err)
		return
	}
	ta.log.Info("routing mesh forwards published TCP ports in the kernel (nftables)")
}

// setLocalTargets tells the mesh where this node's task containers'
// published ports lead, so the kernel path sends clients straight to them
// (and tasks see the clients' addresses). Without the executor's help the
// kernel sends them to the published host ports instead.
func (ta *taskAgent) setLocalTargets(ctx context.Context, m *mesh.Mesh) {
	if ta.meshPath != MeshPathAuto {
		return
	}
	l, ok := ta.exec.(exec.PublishedTargetLister)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, publishedTargetsTimeout)
	defer cancel()
	ts, err := l.PublishedTargets(ctx)
	if err != nil {
		ta.log.Debug("cannot list the containers' published targets; keeping the last", "err", err)
		return
	}
	local := make(map[mesh.LocalKey]netip.AddrPort, len(ts))
	for _, t := range ts {
		local[mesh.LocalKey{TaskID: t.TaskID, HostPort: t.HostPort}] = t.Target
	}
	m.SetLocal(local)
}
