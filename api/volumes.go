package api

// Volume removal (stack rm --volumes). Named volumes live on the nodes'
// engines, not in the store: Control.RemoveVolumes asks every node with an
// open session, through that session, to remove the volumes it has, waits
// for their answers (Dispatcher.ReportVolumeRemoval) up to
// VolumeAnswerTimeout, and reports each node's result; nodes without a
// session, or that did not answer in time, are reported as not reached.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// VolumeAnswerTimeout is how long RemoveVolumes waits for the nodes. A
// variable so tests can shorten it.
var VolumeAnswerTimeout = 30 * time.Second

// VolumeBroker is what RemoveVolumes needs from the leader's dispatcher:
// it asks every node with an open session to remove the named volumes and
// returns the answers by node, and the nodes it asked.
type VolumeBroker interface {
	RemoveVolumesOnNodes(ctx context.Context, names []string) (answers map[string][]*swarmpb.VolumeRemoval, asked map[string]bool, err error)
}

// RemoveVolumes removes named volumes on every node: one result per node
// and name, in node and name order. A node that has no such volume reports
// it not removed, without an error; a node not reached has the reason as
// the error of each name.
func (s *ControlServer) RemoveVolumes(ctx context.Context, req *swarmpb.RemoveVolumesRequest) (*swarmpb.RemoveVolumesResponse, error) {
	names := slices.Clone(req.GetNames())
	slices.Sort(names)
	names = slices.Compact(names)
	if err := spec.ValidateVolumeNames(names); err != nil {
		return nil, Status(invalidf("%v", err))
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	if s.Volumes == nil {
		return nil, Status(refusedf("this manager cannot reach the nodes to remove volumes"))
	}
	answers, asked, err := s.Volumes.RemoveVolumesOnNodes(ctx, names)
	if err != nil {
		return nil, Status(err)
	}
	var nodes []*swarmpb.Node
	s.Store.View(func(tx state.ReadTx) { nodes = tx.ListNodes() })
	resp := &swarmpb.RemoveVolumesResponse{}
	for _, n := range nodes {
		got := map[string]*swarmpb.VolumeRemoval{}
		for _, r := range answers[n.Id] {
			got[r.Name] = r
		}
		for _, name := range names {
			r := &swarmpb.VolumeRemoval{NodeId: n.Id, Hostname: hostname(n), Name: name}
			a, answered := answers[n.Id]
			switch {
			case got[name] != nil:
				r.Removed, r.Error = got[name].Removed, got[name].Error
			case answered && a != nil:
				r.Error = "the node did not report this volume"
			case asked[n.Id]:
				r.Error = fmt.Sprintf("node not reached: it did not answer within %s", VolumeAnswerTimeout)
			default:
				r.Error = "node not reached: it has no open session with the leader (down or disconnected); remove the volume there with 'docker volume rm' once it is back"
			}
			resp.Results = append(resp.Results, r)
		}
	}
	return resp, nil
}

// volumeRequests holds the removal requests waiting for the nodes' answers.
type volumeRequests struct {
	mu   sync.Mutex
	reqs map[string]*volumeRequest
}

type volumeRequest struct {
	names   map[string]bool
	asked   map[string]bool
	answers map[string][]*swarmpb.VolumeRemoval
	done    chan struct{} // closed when every node asked has answered
}

// openNodes lists the nodes with an open session this term.
func (s *sessions) openNodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.byNode))
	for id, set := range s.byNode {
		if len(set) > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// RemoveVolumesOnNodes implements VolumeBroker.
func (d *Dispatcher) RemoveVolumesOnNodes(ctx context.Context, names []string) (map[string][]*swarmpb.VolumeRemoval, map[string]bool, error) {
	s, _ := d.term()
	if s == nil {
		return nil, nil, raft.ErrNotLeader
	}
	id := identity.NewID()
	req := &volumeRequest{names: map[string]bool{}, asked: map[string]bool{}, answers: map[string][]*swarmpb.VolumeRemoval{}, done: make(chan struct{})}
	for _, n := range names {
		req.names[n] = true
	}
	d.volumes.mu.Lock()
	if d.volumes.reqs == nil {
		d.volumes.reqs = make(map[string]*volumeRequest)
	}
	d.volumes.reqs[id] = req
	d.volumes.mu.Unlock()
	defer func() {
		d.volumes.mu.Lock()
		delete(d.volumes.reqs, id)
		d.volumes.mu.Unlock()
	}()

	msg := &swarmpb.SessionMessage{
		Kind:           swarmpb.SessionMessage_KIND_UPDATE,
		VolumeRemovals: []*swarmpb.VolumeRemovalRequest{{Id: id, Names: names}},
	}
	for _, n := range s.openNodes() {
		d.volumes.mu.Lock()
		req.asked[n] = true
		d.volumes.mu.Unlock()
		if !s.sendToNode(n, msg) {
			d.volumes.mu.Lock()
			delete(req.asked, n) // its session closed meanwhile
			d.volumes.mu.Unlock()
		}
	}
	d.volumes.mu.Lock()
	// Every node may have answered while the requests went out.
	req.closeIfComplete()
	d.volumes.mu.Unlock()

	timer := time.NewTimer(VolumeAnswerTimeout)
	defer timer.Stop()
	select {
	case <-req.done:
	case <-timer.C:
	case <-ctx.Done():
		return nil, nil, status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return nil, nil, raft.ErrNotLeader
	}
	d.volumes.mu.Lock()
	defer d.volumes.mu.Unlock()
	answers := make(map[string][]*swarmpb.VolumeRemoval, len(req.answers))
	for k, v := range req.answers {
		answers[k] = v
	}
	asked := make(map[string]bool, len(req.asked))
	for k := range req.asked {
		asked[k] = true
	}
	return answers, asked, nil
}

// closeIfComplete closes done once every node asked has answered; the
// caller holds d.volumes.mu.
func (req *volumeRequest) closeIfComplete() {
	if len(req.answers) < len(req.asked) {
		return
	}
	select {
	case <-req.done:
	default:
		close(req.done)
	}
}

// ReportVolumeRemoval takes a node's answer to a removal request. The
// answer is a claim: only the node asked may answer, once, about the names
// it was asked for; messages are clipped.
func (d *Dispatcher) ReportVolumeRemoval(ctx context.Context, r *swarmpb.ReportVolumeRemovalRequest) (*swarmpb.ReportVolumeRemovalResponse, error) {
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if s, _ := d.term(); s == nil {
		return nil, d.notLeader(ctx)
	}
	d.volumes.mu.Lock()
	defer d.volumes.mu.Unlock()
	req := d.volumes.reqs[r.GetId()]
	if req == nil {
		return nil, status.Error(codes.FailedPrecondition, "no volume removal request with this ID is waiting (it timed out or the leader changed)")
	}
	if !req.asked[id.NodeID] {
		return nil, Status(deniedf("node %s was not asked to remove volumes", id.NodeID))
	}
	if _, dup := req.answers[id.NodeID]; dup {
		return nil, Status(invalidf("node %s already answered", id.NodeID))
	}
	if len(r.GetResults()) > len(req.names) {
		return nil, Status(invalidf("%d results for %d volumes", len(r.GetResults()), len(req.names)))
	}
	res := make([]*swarmpb.VolumeRemoval, 0, len(r.GetResults()))
	seen := map[string]bool{}
	for _, v := range r.GetResults() {
		if !req.names[v.GetName()] || seen[v.GetName()] {
			return nil, Status(invalidf("result for volume %q, which was not asked for or is repeated", clip(v.GetName())))
		}
		seen[v.GetName()] = true
		res = append(res, &swarmpb.VolumeRemoval{NodeId: id.NodeID, Name: v.GetName(), Removed: v.GetRemoved() && v.GetError() == "",
			Error: spec.ClipText(v.GetError(), spec.MaxTaskMessageLen)})
	}
	req.answers[id.NodeID] = res
	req.closeIfComplete()
	return &swarmpb.ReportVolumeRemovalResponse{}, nil
}
