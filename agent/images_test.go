package agent

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestImagePeersBoundedAndValidated(t *testing.T) {
	id := "sha256:" + strings.Repeat("e", 64)
	p := newImagePeers(nil)
	var nodes []*swarmpb.NodeDataAddr
	for i := 0; i < 8; i++ {
		nodes = append(nodes, &swarmpb.NodeDataAddr{NodeId: string(rune('a' + i)), Addr: "10.0.0.1:4790"})
	}
	nodes = append([]*swarmpb.NodeDataAddr{{NodeId: "", Addr: "x"}, {NodeId: "noaddr"}}, nodes...)
	p.record([]*swarmpb.ImageSources{{ImageId: id, Nodes: nodes}, {ImageId: "nginx:latest", Nodes: nodes}})
	got := p.ImagePeers(id)
	if len(got) != maxImagePeers || got[0].NodeID != "a" {
		t.Errorf("peers %v: want the first %d complete entries", got, maxImagePeers)
	}
	if len(p.ImagePeers("nginx:latest")) != 0 {
		t.Error("sources recorded for something that is not an image ID")
	}
	for i := 0; i < maxImageEntries+10; i++ {
		p.record([]*swarmpb.ImageSources{{ImageId: "sha256:" + strings.Repeat("0", 56) + strings.Repeat("f", 8-len(itoa(i))) + itoa(i), Nodes: nodes[2:3]}})
	}
	if len(p.byID) > maxImageEntries {
		t.Errorf("%d images remembered, bound %d", len(p.byID), maxImageEntries)
	}

	if _, err := p.FetchImage(context.Background(), exec.ImagePeer{NodeID: "a"}, id); err == nil || !strings.Contains(err.Error(), "data path") {
		t.Errorf("fetch without a data path: %v", err)
	}
	var asked string
	p.setTransport(func(_ context.Context, nodeID, addr, imageID string) (io.ReadCloser, error) {
		asked = nodeID + "@" + addr + " " + imageID
		return io.NopCloser(strings.NewReader("")), nil
	})
	rc, err := p.FetchImage(context.Background(), got[0], id)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if asked != "a@10.0.0.1:4790 "+id {
		t.Errorf("asked %q", asked)
	}
}

func itoa(i int) string {
	const digits = "0123456789abcdef"
	if i == 0 {
		return "0"
	}
	var s string
	for ; i > 0; i /= 16 {
		s = string(digits[i%16]) + s
	}
	return s
}
