package api

// Images without a registry, the managers' side. A service created or
// updated through a node whose engine has its image is pinned to the
// image's ID (ContainerSpec.image_id) and remembers that node as the
// image's origin (Service.image_origins). The dispatcher tells each node,
// with the tasks it sends, which nodes have each task's image: the origin
// and nodes running tasks of the service with that image, at their
// data-path addresses. A node lacking the image fetches it from them.

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// maxImageSources bounds the nodes named for one image.
const maxImageSources = 5

// localImageTimeout bounds the proxy's look at its engine.
const localImageTimeout = 5 * time.Second

// LocalImages is the node's container engine as the socket proxy needs it.
type LocalImages interface {
	// LocalImage returns this node's ID and the ID of the image ref names
	// on its engine; ok is false when the engine lacks it or cannot say.
	LocalImage(ctx context.Context, ref string) (nodeID, imageID string, ok bool)
}

// localImage pins spec's image to the ID this node's engine has for it,
// returning the spec to send (a copy) and this node's ID; the spec itself
// and "" when the engine does not have the image.
func (p *ControlProxy) localImage(ctx context.Context, spec *swarmpb.ServiceSpec) (*swarmpb.ServiceSpec, string) {
	ref := spec.GetContainer().GetImage()
	if p.Images == nil || ref == "" {
		return spec, ""
	}
	ictx, cancel := context.WithTimeout(ctx, localImageTimeout)
	defer cancel()
	nodeID, id, ok := p.Images.LocalImage(ictx, ref)
	if !ok || id == "" || nodeID == "" {
		return spec, ""
	}
	c := proto.Clone(spec).(*swarmpb.ServiceSpec)
	c.Container.ImageId = id
	return c, nodeID
}

func (p *ControlProxy) createWithLocalImage(ctx context.Context, r *swarmpb.CreateServiceRequest) *swarmpb.CreateServiceRequest {
	spec, node := p.localImage(ctx, r.GetSpec())
	if node == "" {
		return r
	}
	c := proto.Clone(r).(*swarmpb.CreateServiceRequest)
	c.Spec, c.ImageNodeId = spec, node
	return c
}

func (p *ControlProxy) updateWithLocalImage(ctx context.Context, r *swarmpb.UpdateServiceRequest) *swarmpb.UpdateServiceRequest {
	if r.GetRollback() || r.GetSpec() == nil {
		return r
	}
	spec, node := p.localImage(ctx, r.GetSpec())
	if node == "" {
		return r
	}
	c := proto.Clone(r).(*swarmpb.UpdateServiceRequest)
	c.Spec, c.ImageNodeId = spec, node
	return c
}

// clearStaleImageID drops an image ID next carried over from cur although
// its image reference changed: the ID belonged to the old reference (a
// client sends back the spec it read). The reference is then resolved as
// before, locally or by a pull.
func clearStaleImageID(cur, next *swarmpb.ServiceSpec) {
	nc, cc := next.GetContainer(), cur.GetContainer()
	if nc != nil && nc.ImageId != "" && nc.Image != cc.GetImage() && nc.ImageId == cc.GetImageId() {
		nc.ImageId = ""
	}
}

// settleImagePin decides the image ID of an update the socket proxy pinned
// (nodeID: the proxy's node, whose engine has next's image as
// next.ImageId). An update that leaves the image reference as it was keeps
// the ID the service runs, unless forced: scaling a service through a node
// whose tag names another build must not roll it to that build. It returns
// the node to record as the image's origin ("" for none).
func settleImagePin(cur, next *swarmpb.ServiceSpec, force bool, nodeID string) string {
	nc, cc := next.GetContainer(), cur.GetContainer()
	if nodeID == "" || nc == nil || force || nc.Image != cc.GetImage() || cc.GetImageId() == "" || nc.ImageId == cc.GetImageId() {
		return nodeID
	}
	nc.ImageId = cc.GetImageId()
	return ""
}

// imageOrigins is the origins a service keeps: those of its spec's and
// previous spec's image IDs, with nodeID (when the request names an
// existing node) as the origin of the spec's.
func imageOrigins(tx state.ReadTx, old []*swarmpb.ImageOrigin, spec, prev *swarmpb.ServiceSpec, nodeID string) []*swarmpb.ImageOrigin {
	cur, before := spec.GetContainer().GetImageId(), prev.GetContainer().GetImageId()
	var out []*swarmpb.ImageOrigin
	if cur != "" && nodeID != "" && tx.GetNode(nodeID) != nil {
		out = append(out, &swarmpb.ImageOrigin{ImageId: cur, NodeId: nodeID})
	}
	for _, o := range old {
		id := o.GetImageId()
		if (id != cur && id != before) || id == "" || slices.ContainsFunc(out, func(x *swarmpb.ImageOrigin) bool { return x.ImageId == id }) {
			continue
		}
		out = append(out, proto.Clone(o).(*swarmpb.ImageOrigin))
	}
	return out
}

// imageSourceAddr is where a node serves images: the IP the managers
// observed it at and the data port it reports; "" when it serves none or
// is not ready.
func imageSourceAddr(n *swarmpb.Node) string {
	port := n.GetDescription().GetDataPort()
	if n == nil || port == 0 || port > 65535 || n.GetStatus() != swarmpb.NodeStatus_NODE_STATUS_READY {
		return ""
	}
	ip := hostIP(n.GetAddr())
	if ip == nil {
		return ""
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(uint64(port), 10))
}

// imageSources names, for each image of tasks that are yet to run on
// nodeID, the nodes that have it: the service's origin for that image,
// then nodes running tasks of the service with it; nodeID itself, nodes
// not ready and nodes without a data port left out; at most
// maxImageSources each.
func imageSources(tx state.ReadTx, nodeID string, tasks []*swarmpb.Task) []*swarmpb.ImageSources {
	var out []*swarmpb.ImageSources
	seen := map[string]bool{}
	for _, t := range tasks {
		id := t.GetSpec().GetContainer().GetImageId()
		if id == "" || seen[id] || t.GetDesiredState() > swarmpb.TaskState_TASK_STATE_RUNNING ||
			t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		seen[id] = true
		src := &swarmpb.ImageSources{ImageId: id}
		named := map[string]bool{nodeID: true}
		add := func(nid string) {
			if named[nid] || len(src.Nodes) >= maxImageSources {
				return
			}
			named[nid] = true
			if addr := imageSourceAddr(tx.GetNode(nid)); addr != "" {
				src.Nodes = append(src.Nodes, &swarmpb.NodeDataAddr{NodeId: nid, Addr: addr})
			}
		}
		for _, o := range tx.GetService(t.GetServiceId()).GetImageOrigins() {
			if o.GetImageId() == id {
				add(o.GetNodeId())
			}
		}
		for _, o := range tx.TasksByServiceUnordered(t.GetServiceId()) {
			if len(src.Nodes) >= maxImageSources {
				break
			}
			if o.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING && o.GetSpec().GetContainer().GetImageId() == id {
				add(o.GetNodeId())
			}
		}
		if len(src.Nodes) > 0 {
			out = append(out, src)
		}
	}
	return out
}

// imageSources is imageSources on the dispatcher's store.
func (d *Dispatcher) imageSources(nodeID string, tasks []*swarmpb.Task) []*swarmpb.ImageSources {
	var out []*swarmpb.ImageSources
	d.Store.View(func(tx state.ReadTx) { out = imageSources(tx, nodeID, tasks) })
	return out
}
