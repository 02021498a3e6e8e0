package agent

import (
	"context"
	"errors"
	"io"
	"regexp"
	"sync"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Bounds on what the leader's image sources may make the agent keep.
const (
	maxImagePeers   = 5    // per image
	maxImageEntries = 1024 // images remembered
)

var imageIDRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// FetchImageFunc asks the node nodeID, at its data-path address addr, for
// the image imageID in 'docker save' format (netplane.Plane.FetchImage).
type FetchImageFunc func(ctx context.Context, nodeID, addr, imageID string) (io.ReadCloser, error)

// explicitDataPort is the data port a node reports when it was given its
// own image transport (Config.FetchImage: tests, benchmarks), which serves
// images without the data plane's listener; otherwise the data plane
// reports the port it listens on, and this is 0.
func explicitDataPort(cfg Config) uint32 {
	if cfg.FetchImage == nil || cfg.DataPort <= 0 || cfg.DataPort > 65535 {
		return 0
	}
	return uint32(cfg.DataPort)
}

// imagePeers is the agent's exec.ImageFetcher: it remembers which nodes
// have which images, as the leader says with the tasks it sends, and
// fetches over the data path.
type imagePeers struct {
	mu    sync.Mutex
	byID  map[string][]exec.ImagePeer
	fetch FetchImageFunc
}

func newImagePeers(fetch FetchImageFunc) *imagePeers {
	return &imagePeers{byID: make(map[string][]exec.ImagePeer), fetch: fetch}
}

// setTransport sets how images are fetched, when the data plane starts
// after the agent was made.
func (p *imagePeers) setTransport(fetch FetchImageFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetch = fetch
}

// record takes in the image sources of a session message; the latest list
// for an image replaces the one before.
func (p *imagePeers) record(srcs []*swarmpb.ImageSources) {
	if len(srcs) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range srcs {
		id := s.GetImageId()
		if !imageIDRE.MatchString(id) {
			continue
		}
		var peers []exec.ImagePeer
		for _, n := range s.GetNodes() {
			if len(peers) == maxImagePeers {
				break
			}
			if n.GetNodeId() != "" && n.GetAddr() != "" {
				peers = append(peers, exec.ImagePeer{NodeID: n.GetNodeId(), Addr: n.GetAddr()})
			}
		}
		if _, ok := p.byID[id]; !ok && len(p.byID) >= maxImageEntries {
			for k := range p.byID { // forget any one: the leader sends them again with the next task
				delete(p.byID, k)
				break
			}
		}
		p.byID[id] = peers
	}
}

// ImagePeers implements exec.ImageFetcher.
func (p *imagePeers) ImagePeers(imageID string) []exec.ImagePeer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]exec.ImagePeer(nil), p.byID[imageID]...)
}

// FetchImage implements exec.ImageFetcher.
func (p *imagePeers) FetchImage(ctx context.Context, peer exec.ImagePeer, imageID string) (io.ReadCloser, error) {
	p.mu.Lock()
	fetch := p.fetch
	p.mu.Unlock()
	if fetch == nil {
		return nil, errors.New("this node has no data path to fetch images over (is --data-port 0?)")
	}
	return fetch(ctx, peer.NodeID, peer.Addr, imageID)
}
