package exec

import (
	"context"
	"io"
)

// ImagePeer is another node of the cluster whose engine has an image,
// reachable on its data-path address.
type ImagePeer struct {
	NodeID string
	Addr   string // host:port of its data-path listener
}

// ImageFetcher gets images from other nodes of the cluster. The agent
// implements it over the data plane (netplane.Plane.FetchImage), with the
// sources the leader sends along with the tasks.
type ImageFetcher interface {
	// ImagePeers lists the nodes known to have the image with this ID
	// ("sha256:..."), best first; none when nobody is known to.
	ImagePeers(imageID string) []ImagePeer
	// FetchImage streams the image from peer in 'docker save' format. The
	// stream is a claim: the caller checks that what it loads has the ID
	// it asked for.
	FetchImage(ctx context.Context, peer ImagePeer, imageID string) (io.ReadCloser, error)
}

// ImageFetchUser is implemented by executors that can load images fetched
// from other nodes; the agent hands them its fetcher before running tasks.
type ImageFetchUser interface {
	SetImageFetcher(f ImageFetcher)
}

// ImageResolver is implemented by executors that can tell which image a
// reference names on the node's engine.
type ImageResolver interface {
	// LocalImageID returns the ID ("sha256:...") of the image ref names on
	// this engine, or "" when the engine does not have it.
	LocalImageID(ctx context.Context, ref string) (string, error)
}

// PrepareNoter is implemented by controllers with something to say about
// how Prepare went (for example where the image came from); the worker
// adds it to the task's status message.
type PrepareNoter interface {
	PrepareNote() string
}

// VolumeResult is what removing one named volume did on a node.
type VolumeResult struct {
	Name    string
	Removed bool   // false with no Err: the engine had no such volume
	Err     string // why it could not be removed
}

// VolumeRemover is implemented by executors that can remove named volumes
// (stack rm --volumes). A volume still used by a container is retried for a
// bounded time (the containers of a removed stack may still be stopping).
type VolumeRemover interface {
	RemoveVolumes(ctx context.Context, names []string) []VolumeResult
}
