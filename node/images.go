package node

import (
	"context"

	"github.com/raftswarm/raftswarm/agent/exec"
)

// LocalImage implements api.LocalImages for the socket proxy: services
// created or updated through this node are pinned to the image ID its
// engine has for their image, and name this node as where to fetch it.
func (n *Node) LocalImage(ctx context.Context, ref string) (nodeID, imageID string, ok bool) {
	n.mu.Lock()
	ex, member := n.exec, n.member
	n.mu.Unlock()
	r, isResolver := ex.(exec.ImageResolver)
	if member == nil || !isResolver {
		return "", "", false
	}
	id, err := r.LocalImageID(ctx, ref)
	if err != nil {
		n.log.Debug("could not look up the image on this node's engine; the service is not pinned to an image ID", "image", ref, "err", err)
		return "", "", false
	}
	return member.NodeID, id, id != ""
}

// trackExecutor wraps the executor factory so the node knows the engine the
// agent runs (LocalImage).
func (n *Node) trackExecutor(mk func(nodeID string) (exec.Executor, error)) func(nodeID string) (exec.Executor, error) {
	if mk == nil {
		return nil
	}
	return func(nodeID string) (exec.Executor, error) {
		e, err := mk(nodeID)
		if err == nil {
			n.mu.Lock()
			n.exec = e
			n.mu.Unlock()
		}
		return e, err
	}
}
