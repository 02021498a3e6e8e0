package docker

// Images without a registry. A service created through a node whose engine
// has its image carries the image's ID (ContainerSpec.image_id); a node
// that lacks the image fetches exactly that ID from a node that has it, over
// the nodes' mutual-TLS data path ('docker save' on the serving node, the
// executor's SaveImage), loads it, and checks the loaded image has that ID
// before it tags it with the spec's reference. Only then, or when nobody
// has it, does it pull.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ImageEngine lists the engine calls behind image fetching and volumes; it
// is part of Engine.
type ImageEngine interface {
	ImageLoad(ctx context.Context, input io.Reader, loadOpts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageSave(ctx context.Context, imageIDs []string, saveOpts ...client.ImageSaveOption) (io.ReadCloser, error)
	ImageTag(ctx context.Context, source, target string) error
	ImageRemove(ctx context.Context, imageID string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	VolumeInspect(ctx context.Context, volumeID string) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
}

// Image fetch tuning; variables so tests can shorten them.
var (
	// fetchBase is how long a fetch from one peer may take at least;
	// fetchPerGiB is added for every GiB received, up to fetchMax.
	fetchBase   = 2 * time.Minute
	fetchPerGiB = 2 * time.Minute
	fetchMax    = 30 * time.Minute
	// fetchIdle ends a fetch that received nothing for this long.
	fetchIdle = 30 * time.Second
)

// imageIDRE is the form of an image ID: the digest of its config.
var imageIDRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// imageFetcher holds the fetcher the agent hands the executor, and the
// fetches in flight by image ID.
type imageFetcher struct {
	p atomic.Pointer[exec.ImageFetcher]

	mu       sync.Mutex
	inflight map[string]*fetchCall
}

type fetchCall struct {
	done      chan struct{}
	note      string
	tried     []string
	abandoned bool // the fetching task's context ended first
}

// once runs fetch for image id unless a fetch of it is in flight, whose
// result it then shares. err is only ctx's.
func (f *imageFetcher) once(ctx context.Context, id string, fetch func() (string, []string)) (note string, tried []string, err error) {
	f.mu.Lock()
	for {
		c, ok := f.inflight[id]
		if !ok {
			break
		}
		f.mu.Unlock()
		if fetchWaitHook != nil {
			fetchWaitHook()
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
		if !c.abandoned {
			return c.note, c.tried, nil
		}
		f.mu.Lock() // its task went away mid-fetch: fetch again
	}
	if f.inflight == nil {
		f.inflight = make(map[string]*fetchCall)
	}
	c := &fetchCall{done: make(chan struct{})}
	f.inflight[id] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.inflight, id)
		f.mu.Unlock()
		close(c.done)
	}()
	c.note, c.tried = fetch()
	if c.note == "" && ctx.Err() != nil {
		c.abandoned = true
		return "", nil, ctx.Err()
	}
	return c.note, c.tried, nil
}

// fetchWaitHook, when set (tests), is called when a fetch waits for one in
// flight.
var fetchWaitHook func()

func (f *imageFetcher) get() exec.ImageFetcher {
	if p := f.p.Load(); p != nil {
		return *p
	}
	return nil
}

// SetImageFetcher implements exec.ImageFetchUser: controllers made from
// then on fetch missing images from other nodes through f.
func (e *Executor) SetImageFetcher(f exec.ImageFetcher) {
	if f == nil {
		e.fetcher.p.Store(nil)
		return
	}
	e.fetcher.p.Store(&f)
}

// LocalImageID implements exec.ImageResolver: the ID of the image ref
// names on this engine, "" when it has none.
func (e *Executor) LocalImageID(ctx context.Context, ref string) (string, error) {
	ins, err := e.engine.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return ins.ID, nil
}

// SaveImage implements netplane.ImageSource: the 'docker save' stream of
// the image with exactly this ID (never a name or a prefix, so a peer can
// only ask for images it was told about by ID).
func (e *Executor) SaveImage(ctx context.Context, imageID string) (io.ReadCloser, error) {
	if !imageIDRE.MatchString(imageID) {
		return nil, fmt.Errorf("image ID %q is not of the form sha256:<64 hex digits>", imageID)
	}
	ins, err := e.engine.ImageInspect(ctx, imageID)
	if cerrdefs.IsNotFound(err) {
		return nil, fmt.Errorf("this node has no image %s", imageID)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", imageID, err)
	}
	if ins.ID != imageID {
		return nil, fmt.Errorf("this node has no image %s", imageID)
	}
	rc, err := e.engine.ImageSave(ctx, []string{imageID})
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", imageID, err)
	}
	return rc, nil
}

// prepareImage makes the task's image available and returns what to create
// the container from: the spec's reference, or the image ID when the
// reference names another image here. A spec without an image ID behaves as
// before: the local image, else a pull.
func (c *controller) prepareImage(ctx context.Context, spec *swarmpb.ContainerSpec) (string, error) {
	ref, id := spec.GetImage(), spec.GetImageId()
	if id == "" || !imageIDRE.MatchString(id) {
		return ref, c.ensureImage(ctx, ref)
	}
	ins, err := c.e.engine.ImageInspect(ctx, ref)
	switch {
	case err == nil && ins.ID == id:
		return ref, nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	refHere := err == nil // but naming another image (rebuilt or retagged here)
	if have, err := c.e.engine.ImageInspect(ctx, id); err == nil && have.ID == id {
		return c.useID(ctx, ref, id, refHere), nil
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", id, err)
	}
	var tried []string
	if f := c.e.fetcher.get(); f != nil {
		// One fetch per image at a time on this engine: the node's other
		// tasks of the service wait for it rather than fetch it again.
		note, errs, err := c.e.fetcher.once(ctx, id, func() (string, []string) { return c.fetchAny(ctx, f, id) })
		if err != nil {
			return "", err
		}
		if note != "" {
			c.setNote(note)
			return c.useID(ctx, ref, id, refHere), nil
		}
		tried = errs
	}
	if err := c.ensureImage(ctx, ref); err != nil {
		if len(tried) > 0 {
			return "", fmt.Errorf("%w (fetching image %s from other nodes failed: %s)", err, id, strings.Join(tried, "; "))
		}
		return "", err
	}
	if len(tried) > 0 {
		c.setNote("image pulled: fetching it from other nodes failed")
	}
	return ref, nil
}

// fetchAny tries the peers in order until one delivers image id. It returns
// a note saying where the image came from, or what each peer answered.
func (c *controller) fetchAny(ctx context.Context, f exec.ImageFetcher, id string) (note string, tried []string) {
	for _, peer := range f.ImagePeers(id) {
		if peer.NodeID == c.e.nodeID {
			continue
		}
		start := time.Now()
		n, err := c.fetchFrom(ctx, f, peer, id)
		if err == nil {
			return fmt.Sprintf("image fetched from node %s (%s in %s)", shortID(peer.NodeID), humanBytes(n), time.Since(start).Round(100*time.Millisecond)), nil
		}
		if ctx.Err() != nil {
			return "", tried
		}
		tried = append(tried, fmt.Sprintf("node %s: %v", shortID(peer.NodeID), err))
	}
	return "", tried
}

// useID tags image id with ref unless ref names another image here, and
// returns what to create the container from.
func (c *controller) useID(ctx context.Context, ref, id string, refHere bool) string {
	if refHere {
		return id
	}
	if err := c.e.engine.ImageTag(ctx, id, ref); err != nil {
		return id // it runs all the same; only 'docker ps' shows the ID
	}
	return ref
}

func (c *controller) setNote(s string) {
	c.mu.Lock()
	c.note = s
	c.mu.Unlock()
}

// PrepareNote implements exec.PrepareNoter: where the image came from, when
// it came from another node.
func (c *controller) PrepareNote() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.note
}

// fetchFrom loads image id from peer and checks that the engine loaded
// exactly that image; anything else it loaded is deleted again. It returns
// the bytes received.
func (c *controller) fetchFrom(ctx context.Context, f exec.ImageFetcher, peer exec.ImagePeer, id string) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, err := f.FetchImage(ctx, peer, id)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	wd := newWatchdog(rc, cancel)
	defer wd.stop()

	// The stream is a claim: it is rewritten on its way to the engine so
	// that it cannot tag (or retag) anything, and must describe image id.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sanitizeImageTar(wd, pw, id)) }()
	resp, err := c.e.engine.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return wd.n.Load(), fetchErr(ctx, fmt.Errorf("load image: %w", err))
	}
	loaded, lerr := readLoad(resp.Body)
	resp.Body.Close()
	pr.CloseWithError(errors.New("load ended")) // unblock the rewriter
	var bad []string
	for _, l := range loaded {
		if l != id {
			bad = append(bad, l)
		}
	}
	// Not what was asked for: delete what came. A load of an image that
	// was here already changes nothing, and such an image must stay: one
	// with tags was here before (what we load is never tagged), and one a
	// container uses cannot be removed without force, which is not used.
	for _, b := range bad {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if ins, err := c.e.engine.ImageInspect(rctx, b); err == nil && len(ins.RepoTags) == 0 {
			_, _ = c.e.engine.ImageRemove(rctx, b, image.RemoveOptions{PruneChildren: true})
		}
		rcancel()
	}
	if lerr != nil {
		return wd.n.Load(), fetchErr(ctx, lerr)
	}
	if len(bad) > 0 {
		return wd.n.Load(), fmt.Errorf("the image received is %s, not %s: rejected", bad[0], id)
	}
	ins, err := c.e.engine.ImageInspect(ctx, id)
	if err != nil || ins.ID != id {
		return wd.n.Load(), fmt.Errorf("image %s missing after loading what the node sent", id)
	}
	return wd.n.Load(), nil
}

// fetchErr names the watchdog's reason when it ended the fetch.
func fetchErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// readLoad reads the engine's load progress and returns the image IDs it
// loaded ("Loaded image ID: ..."), or the engine's error.
func readLoad(r io.Reader) ([]string, error) {
	dec := json.NewDecoder(r)
	var ids []string
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return ids, nil
		} else if err != nil {
			return ids, fmt.Errorf("reading load progress: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return ids, fmt.Errorf("load image: %s", msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return ids, fmt.Errorf("load image: %s", msg.Error)
		}
		for _, line := range strings.Split(msg.Stream, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image ID: "); ok {
				ids = append(ids, strings.TrimSpace(v))
			}
		}
	}
}

// maxManifestSize bounds the JSON files of an image archive that are read
// into memory.
const maxManifestSize = 1 << 20

// sanitizeImageTar copies a 'docker save' archive from r to w, rewritten so
// that loading it tags nothing: manifest.json loses its RepoTags (and must
// describe exactly one image, whose config is id), the legacy
// "repositories" file is dropped, and index.json loses its name
// annotations.
func sanitizeImageTar(r io.Reader, w io.Writer, id string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	hex := strings.TrimPrefix(id, "sha256:")
	sawManifest := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the image archive: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch name {
		case "repositories":
			continue
		case "manifest.json", "index.json":
			if hdr.Size > maxManifestSize {
				return fmt.Errorf("image archive: %s of %d bytes", name, hdr.Size)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("reading the image archive: %w", err)
			}
			if name == "manifest.json" {
				sawManifest = true
				data, err = cleanManifest(data, hex)
			} else {
				data, err = cleanIndex(data)
			}
			if err != nil {
				return err
			}
			h := *hdr
			h.Size = int64(len(data))
			if err := tw.WriteHeader(&h); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("reading the image archive: %w", err)
		}
	}
	if !sawManifest {
		return errors.New("image archive has no manifest.json")
	}
	return tw.Close()
}

// cleanManifest checks that a 'docker save' manifest describes one image
// whose config is the blob with digest hex, and drops its tags.
func cleanManifest(data []byte, hex string) ([]byte, error) {
	var m []map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("image archive: manifest.json: %w", err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("image archive: manifest.json lists %d images, not 1", len(m))
	}
	var cfg string
	if err := json.Unmarshal(m[0]["Config"], &cfg); err != nil {
		return nil, fmt.Errorf("image archive: manifest.json has no config: %w", err)
	}
	if cfg != hex+".json" && cfg != "blobs/sha256/"+hex {
		return nil, fmt.Errorf("image archive describes config %s, not sha256:%s", cfg, hex)
	}
	delete(m[0], "RepoTags")
	return json.Marshal(m)
}

// cleanIndex drops the annotations of an OCI index that name images.
func cleanIndex(data []byte) ([]byte, error) {
	var idx map[string]any
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("image archive: index.json: %w", err)
	}
	if ms, ok := idx["manifests"].([]any); ok {
		for _, m := range ms {
			if mm, ok := m.(map[string]any); ok {
				if ann, ok := mm["annotations"].(map[string]any); ok {
					delete(ann, "io.containerd.image.name")
					delete(ann, "org.opencontainers.image.ref.name")
				}
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(idx); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// watchdog counts the bytes of a fetch and ends it (cancel) when nothing
// arrives for fetchIdle, or when it runs past its deadline: fetchBase plus
// fetchPerGiB per GiB received, at most fetchMax.
type watchdog struct {
	r      io.Reader
	n      atomic.Int64
	last   atomic.Int64 // unix nanoseconds of the last read that got bytes
	done   chan struct{}
	cancel context.CancelCauseFunc
}

func newWatchdog(r io.Reader, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{r: r, done: make(chan struct{}), cancel: cancel}
	start := time.Now()
	w.last.Store(start.UnixNano())
	idle, base, perGiB, max := fetchIdle, fetchBase, fetchPerGiB, fetchMax
	go func() {
		tick := time.NewTicker(min(idle/4, time.Second))
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case now := <-tick.C:
				n := w.n.Load()
				limit := min(base+time.Duration(float64(perGiB)*float64(n)/(1<<30)), max)
				switch {
				case now.Sub(start) > limit:
					cancel(fmt.Errorf("image fetch took longer than %s (%s received)", limit.Round(time.Second), humanBytes(n)))
					return
				case now.Sub(time.Unix(0, w.last.Load())) > idle:
					cancel(fmt.Errorf("image fetch stalled: nothing received for %s (%s received)", idle, humanBytes(n)))
					return
				}
			}
		}
	}()
	return w
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.n.Add(int64(n))
		w.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (w *watchdog) stop() { close(w.done) }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Deadlines for the image and volume calls; the streaming ones (save,
// load) are bounded by the fetch's watchdog and the caller's context.
func (e deadlineEngine) ImageTag(ctx context.Context, source, target string) error {
	return withDeadlineErr(ctx, "ImageTag", e.t.inspect, func(ctx context.Context) error {
		return e.Engine.ImageTag(ctx, source, target)
	})
}

func (e deadlineEngine) ImageRemove(ctx context.Context, imageID string, options image.RemoveOptions) ([]image.DeleteResponse, error) {
	return withDeadline(ctx, "ImageRemove", e.t.create, func(ctx context.Context) ([]image.DeleteResponse, error) {
		return e.Engine.ImageRemove(ctx, imageID, options)
	})
}

func (e deadlineEngine) VolumeInspect(ctx context.Context, volumeID string) (volume.Volume, error) {
	return withDeadline(ctx, "VolumeInspect", e.t.inspect, func(ctx context.Context) (volume.Volume, error) {
		return e.Engine.VolumeInspect(ctx, volumeID)
	})
}

func (e deadlineEngine) VolumeRemove(ctx context.Context, volumeID string, force bool) error {
	return withDeadlineErr(ctx, "VolumeRemove", e.t.create, func(ctx context.Context) error {
		return e.Engine.VolumeRemove(ctx, volumeID, force)
	})
}
