package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// imageStub is an engine with images and volumes in memory. ImageLoad
// behaves like Docker's: it reads the archive's manifest.json and reports
// the ID computed from the config blob's content, whatever the file names
// claim.
type imageStub struct {
	Engine // nil: calls not overridden panic

	mu      sync.Mutex
	images  map[string]string   // reference or ID -> image ID
	tags    map[string][]string // image ID -> tags
	loaded  [][]byte            // archives the engine received
	removed []string
	pulls   int
	volumes map[string]int // volume -> conflicts left before removal works
}

func newImageStub() *imageStub {
	return &imageStub{images: map[string]string{}, tags: map[string][]string{}, volumes: map[string]int{}}
}

func (s *imageStub) ImageInspect(ctx context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.images[ref]
	if !ok {
		return image.InspectResponse{}, cerrdefs.ErrNotFound.WithMessage("no such image: " + ref)
	}
	return image.InspectResponse{ID: id, RepoTags: s.tags[id]}, nil
}

func (s *imageStub) ImagePull(ctx context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	s.mu.Lock()
	s.pulls++
	s.mu.Unlock()
	return nil, errors.New("no registry here")
}

func (s *imageStub) ImageTag(ctx context.Context, source, target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.images[source]
	if !ok {
		return cerrdefs.ErrNotFound
	}
	s.images[target] = id
	s.tags[id] = append(s.tags[id], target)
	return nil
}

func (s *imageStub) ImageRemove(ctx context.Context, id string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.images, id)
	s.removed = append(s.removed, id)
	return nil, nil
}

func (s *imageStub) ImageSave(ctx context.Context, ids []string, _ ...client.ImageSaveOption) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("archive of " + strings.Join(ids, ","))), nil
}

func (s *imageStub) ImageLoad(ctx context.Context, r io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return image.LoadResponse{}, err
	}
	s.mu.Lock()
	s.loaded = append(s.loaded, data)
	s.mu.Unlock()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return image.LoadResponse{}, err
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var m []struct {
		Config   string
		RepoTags []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) == 0 {
		return image.LoadResponse{}, fmt.Errorf("bad manifest: %v", err)
	}
	sum := sha256.Sum256(files[m[0].Config])
	id := "sha256:" + hex.EncodeToString(sum[:])
	s.mu.Lock()
	s.images[id] = id
	for _, t := range m[0].RepoTags {
		s.images[t] = id
		s.tags[id] = append(s.tags[id], t)
	}
	s.mu.Unlock()
	body := fmt.Sprintf(`{"stream":"Loaded image ID: %s\n"}`, id)
	return image.LoadResponse{Body: io.NopCloser(strings.NewReader(body)), JSON: true}, nil
}

func (s *imageStub) VolumeInspect(ctx context.Context, name string) (volume.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.volumes[name]; !ok {
		return volume.Volume{}, cerrdefs.ErrNotFound
	}
	return volume.Volume{Name: name}, nil
}

func (s *imageStub) VolumeRemove(ctx context.Context, name string, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.volumes[name]
	switch {
	case !ok:
		return cerrdefs.ErrNotFound
	case n < 0:
		return errors.New("driver failure")
	case n > 0:
		s.volumes[name] = n - 1
		return cerrdefs.ErrConflict.WithMessage("volume is in use")
	}
	delete(s.volumes, name)
	return nil
}

// saveArchive is a 'docker save' archive of an image whose config is cfg,
// tagged evil:latest (a loader must not let it tag anything).
func saveArchive(t *testing.T, cfg []byte, claimed string) []byte {
	t.Helper()
	if claimed == "" {
		sum := sha256.Sum256(cfg)
		claimed = hex.EncodeToString(sum[:])
	}
	manifest, _ := json.Marshal([]map[string]any{{"Config": claimed + ".json", "RepoTags": []string{"evil:latest"}, "Layers": []string{"l1/layer.tar"}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"l1/layer.tar", []byte("layer bytes")},
		{claimed + ".json", cfg},
		{"manifest.json", manifest},
		{"repositories", []byte(`{"evil":{"latest":"` + claimed + `"}}`)},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func idOf(cfg []byte) string {
	sum := sha256.Sum256(cfg)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// peerFetcher serves archives by peer node ID; a peer without one fails.
type peerFetcher struct {
	peers    []exec.ImagePeer
	archives map[string][]byte
	mu       sync.Mutex
	asked    []string
}

func (f *peerFetcher) ImagePeers(string) []exec.ImagePeer { return f.peers }

func (f *peerFetcher) FetchImage(ctx context.Context, p exec.ImagePeer, id string) (io.ReadCloser, error) {
	f.mu.Lock()
	f.asked = append(f.asked, p.NodeID)
	f.mu.Unlock()
	a, ok := f.archives[p.NodeID]
	if !ok {
		return nil, errors.New("connection refused")
	}
	return io.NopCloser(bytes.NewReader(a)), nil
}

func fetchTask(ref, id string) *swarmpb.Task {
	return &swarmpb.Task{Id: "t1", ServiceName: "web", Slot: 1, Spec: &swarmpb.ServiceSpec{
		Container: &swarmpb.ContainerSpec{Image: ref, ImageId: id}}}
}

func stubController(t *testing.T, stub *imageStub, f exec.ImageFetcher, task *swarmpb.Task) *controller {
	t.Helper()
	e := NewWithEngine(stub, "node-b")
	if f != nil {
		e.SetImageFetcher(f)
	}
	ctl, err := e.Controller(task)
	if err != nil {
		t.Fatal(err)
	}
	return ctl.(*controller)
}

func TestPrepareImageFetchesFromPeer(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","rootfs":{"diff_ids":["sha256:aa"]}}`)
	id := idOf(cfg)
	stub := newImageStub()
	f := &peerFetcher{
		peers:    []exec.ImagePeer{{NodeID: "node-down", Addr: "127.0.0.9:4790"}, {NodeID: "node-b", Addr: "self"}, {NodeID: "node-a", Addr: "127.0.0.2:4790"}},
		archives: map[string][]byte{"node-a": saveArchive(t, cfg, "")},
	}
	c := stubController(t, stub, f, fetchTask("app:local", id))
	img, err := c.prepareImage(context.Background(), c.task.Spec.Container)
	if err != nil {
		t.Fatalf("prepareImage: %v", err)
	}
	if img != "app:local" {
		t.Errorf("container image = %q, want the spec's reference", img)
	}
	if got := stub.images["app:local"]; got != id {
		t.Errorf("app:local -> %q, want %s", got, id)
	}
	if _, ok := stub.images["evil:latest"]; ok {
		t.Error("the fetched archive tagged evil:latest: tags must be stripped")
	}
	if strings.Join(f.asked, ",") != "node-down,node-a" {
		t.Errorf("peers asked: %v (itself must be skipped, the failing one tried first)", f.asked)
	}
	if !strings.Contains(c.PrepareNote(), "fetched from node node-a") {
		t.Errorf("note = %q", c.PrepareNote())
	}
	if stub.pulls != 0 {
		t.Errorf("pulled %d times after a successful fetch", stub.pulls)
	}
	// What reached the engine: no repositories file, no RepoTags.
	tr := tar.NewReader(bytes.NewReader(stub.loaded[0]))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "repositories" {
			t.Error("repositories file reached the engine")
		}
		if h.Name == "manifest.json" {
			b, _ := io.ReadAll(tr)
			if strings.Contains(string(b), "RepoTags") {
				t.Errorf("manifest reached the engine with tags: %s", b)
			}
		}
	}
}

func TestPrepareImageRejectsTamperedStream(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","rootfs":{"diff_ids":["sha256:aa"]}}`)
	id := idOf(cfg)
	tampered := []byte(`{"architecture":"amd64","rootfs":{"diff_ids":["sha256:bb"]}}`)
	other := []byte(`{"other":true}`)
	stub := newImageStub()
	f := &peerFetcher{
		peers: []exec.ImagePeer{{NodeID: "liar"}, {NodeID: "wrong"}},
		archives: map[string][]byte{
			// Claims the right config file name; its content hashes to another ID.
			"liar": saveArchive(t, tampered, strings.TrimPrefix(id, "sha256:")),
			// Honestly another image.
			"wrong": saveArchive(t, other, ""),
		},
	}
	c := stubController(t, stub, f, fetchTask("app:local", id))
	_, err := c.prepareImage(context.Background(), c.task.Spec.Container)
	if err == nil {
		t.Fatal("prepareImage accepted a tampered image")
	}
	for _, want := range []string{"not " + id + ": rejected", "describes config", "pull failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	bad := idOf(tampered)
	if _, ok := stub.images[bad]; ok {
		t.Errorf("the tampered image %s was left on the engine", bad)
	}
	if len(stub.removed) != 1 || stub.removed[0] != bad {
		t.Errorf("removed %v, want [%s]", stub.removed, bad)
	}
	if len(stub.loaded) != 1 {
		t.Errorf("%d loads completed; the second archive must fail before the engine has all of it", len(stub.loaded))
	}
	if _, ok := stub.images["app:local"]; ok {
		t.Error("app:local was tagged after a rejected fetch")
	}
	if stub.pulls != 1 {
		t.Errorf("pulls = %d, want the fallback pull", stub.pulls)
	}
}

func TestPrepareImageLocal(t *testing.T) {
	id := idOf([]byte("a"))
	other := idOf([]byte("b"))
	t.Run("reference is the image", func(t *testing.T) {
		stub := newImageStub()
		stub.images["app:1"], stub.images[id] = id, id
		c := stubController(t, stub, &peerFetcher{peers: []exec.ImagePeer{{NodeID: "x"}}}, fetchTask("app:1", id))
		img, err := c.prepareImage(context.Background(), c.task.Spec.Container)
		if err != nil || img != "app:1" || c.PrepareNote() != "" {
			t.Fatalf("img %q note %q err %v", img, c.PrepareNote(), err)
		}
	})
	t.Run("reference rebuilt here", func(t *testing.T) {
		stub := newImageStub()
		stub.images["app:1"], stub.images[other], stub.images[id] = other, other, id
		c := stubController(t, stub, nil, fetchTask("app:1", id))
		img, err := c.prepareImage(context.Background(), c.task.Spec.Container)
		if err != nil || img != id {
			t.Fatalf("img %q err %v: want the pinned ID", img, err)
		}
		if stub.images["app:1"] != other {
			t.Error("the local tag was moved")
		}
	})
	t.Run("untagged image here", func(t *testing.T) {
		stub := newImageStub()
		stub.images[id] = id
		c := stubController(t, stub, nil, fetchTask("app:1", id))
		img, err := c.prepareImage(context.Background(), c.task.Spec.Container)
		if err != nil || img != "app:1" || stub.images["app:1"] != id {
			t.Fatalf("img %q err %v tag %q", img, err, stub.images["app:1"])
		}
	})
	t.Run("no image ID: pull as before", func(t *testing.T) {
		stub := newImageStub()
		c := stubController(t, stub, &peerFetcher{peers: []exec.ImagePeer{{NodeID: "x"}}}, fetchTask("app:1", ""))
		_, err := c.prepareImage(context.Background(), c.task.Spec.Container)
		if err == nil || stub.pulls != 1 {
			t.Fatalf("err %v pulls %d", err, stub.pulls)
		}
	})
}

func TestFetchStallEndsFetch(t *testing.T) {
	old := fetchIdle
	fetchIdle = 200 * time.Millisecond
	t.Cleanup(func() { fetchIdle = old })
	stub := newImageStub()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	f := &stallFetcher{r: pr}
	c := stubController(t, stub, f, fetchTask("app:1", idOf([]byte("x"))))
	done := make(chan error, 1)
	go func() { _, err := c.prepareImage(context.Background(), c.task.Spec.Container); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "stalled") {
			t.Fatalf("err = %v, want a stalled fetch", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled fetch was not ended")
	}
}

type stallFetcher struct{ r io.ReadCloser }

func (f *stallFetcher) ImagePeers(string) []exec.ImagePeer { return []exec.ImagePeer{{NodeID: "slow"}} }
func (f *stallFetcher) FetchImage(ctx context.Context, _ exec.ImagePeer, _ string) (io.ReadCloser, error) {
	go func() { <-ctx.Done(); f.r.Close() }()
	return f.r, nil
}

func TestSaveImageOnlyByExactID(t *testing.T) {
	id := idOf([]byte("a"))
	stub := newImageStub()
	stub.images["app:1"], stub.images[id] = id, id
	e := NewWithEngine(stub, "n")
	for _, bad := range []string{"app:1", id[:19], "sha256:" + strings.Repeat("0", 64)} {
		if _, err := e.SaveImage(context.Background(), bad); err == nil {
			t.Errorf("SaveImage(%q) served an image", bad)
		}
	}
	rc, err := e.SaveImage(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}

func TestDockerMounts(t *testing.T) {
	got := dockerMounts([]*swarmpb.Mount{
		{Type: swarmpb.Mount_TYPE_VOLUME, Source: "st_db", Target: "/var/lib/mysql", VolumeDriver: "local",
			VolumeOptions: map[string]string{"type": "tmpfs", "device": "tmpfs"}, VolumeLabels: map[string]string{"com.docker.stack.namespace": "st"}, VolumeNocopy: true},
		{Type: swarmpb.Mount_TYPE_VOLUME, Source: "plain", Target: "/data"},
		{Type: swarmpb.Mount_TYPE_TMPFS, Target: "/tmp", TmpfsSizeBytes: 1 << 20},
		{Type: swarmpb.Mount_TYPE_BIND, Source: "/etc", Target: "/host-etc", ReadOnly: true},
	})
	if len(got) != 4 {
		t.Fatalf("%d mounts", len(got))
	}
	v := got[0]
	if v.Type != mount.TypeVolume || v.VolumeOptions == nil || !v.VolumeOptions.NoCopy ||
		v.VolumeOptions.DriverConfig.Name != "local" || v.VolumeOptions.DriverConfig.Options["type"] != "tmpfs" ||
		v.VolumeOptions.Labels["com.docker.stack.namespace"] != "st" {
		t.Errorf("volume mount = %+v", v)
	}
	if got[1].VolumeOptions != nil {
		t.Errorf("plain volume got options %+v", got[1].VolumeOptions)
	}
	if got[2].Type != mount.TypeTmpfs || got[2].TmpfsOptions.SizeBytes != 1<<20 {
		t.Errorf("tmpfs mount = %+v", got[2])
	}
	if got[3].Type != mount.TypeBind || !got[3].ReadOnly {
		t.Errorf("bind mount = %+v", got[3])
	}
}

func TestRemoveVolumesRetriesInUse(t *testing.T) {
	oldWait, oldRetry := volumeInUseWait, volumeRetry
	volumeInUseWait, volumeRetry = 2*time.Second, 10*time.Millisecond
	t.Cleanup(func() { volumeInUseWait, volumeRetry = oldWait, oldRetry })
	stub := newImageStub()
	stub.volumes["busy"] = 3    // in use for 3 tries
	stub.volumes["free"] = 0    // removable
	stub.volumes["stuck"] = 1e6 // never freed
	stub.volumes["broken"] = -1 // fails otherwise
	e := NewWithEngine(stub, "n")
	res := e.RemoveVolumes(context.Background(), []string{"busy", "free", "absent", "broken", "stuck"})
	want := map[string]string{"busy": "removed", "free": "removed", "absent": "absent", "broken": "driver failure", "stuck": "in use"}
	for _, r := range res {
		got := "absent"
		switch {
		case r.Err != "":
			got = r.Err
		case r.Removed:
			got = "removed"
		}
		if !strings.Contains(got, want[r.Name]) {
			t.Errorf("%s: %q, want %q", r.Name, got, want[r.Name])
		}
	}
	if len(res) != 5 {
		t.Errorf("%d results", len(res))
	}
}

// gateFetcher serves one archive, holding every fetch until released.
type gateFetcher struct {
	archive []byte
	calls   chan struct{}
	release chan struct{}
}

func (f *gateFetcher) ImagePeers(string) []exec.ImagePeer {
	return []exec.ImagePeer{{NodeID: "node-a"}}
}
func (f *gateFetcher) FetchImage(ctx context.Context, _ exec.ImagePeer, _ string) (io.ReadCloser, error) {
	f.calls <- struct{}{}
	<-f.release
	return io.NopCloser(bytes.NewReader(f.archive)), nil
}

// Two tasks of a node needing the same missing image fetch it once.
func TestConcurrentPreparesFetchOnce(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","rootfs":{"diff_ids":["sha256:cc"]}}`)
	id := idOf(cfg)
	waiting := make(chan struct{}, 1)
	fetchWaitHook = func() { waiting <- struct{}{} }
	t.Cleanup(func() { fetchWaitHook = nil })
	stub := newImageStub()
	f := &gateFetcher{archive: saveArchive(t, cfg, ""), calls: make(chan struct{}, 2), release: make(chan struct{})}
	e := NewWithEngine(stub, "node-b")
	e.SetImageFetcher(f)
	errs := make(chan error, 2)
	prep := func(taskID string) {
		task := fetchTask("app:local", id)
		task.Id = taskID
		ctl, _ := e.Controller(task)
		c := ctl.(*controller)
		_, err := c.prepareImage(context.Background(), task.Spec.Container)
		if err == nil && !strings.Contains(c.PrepareNote(), "fetched from node node-a") {
			err = fmt.Errorf("task %s: note %q", taskID, c.PrepareNote())
		}
		errs <- err
	}
	go prep("t1")
	<-f.calls // t1 is fetching
	go prep("t2")
	select {
	case <-waiting: // t2 waits for t1's fetch
	case <-f.calls:
		t.Fatal("a second fetch of the same image started")
	case <-time.After(10 * time.Second):
		t.Fatal("the second task neither waited nor fetched")
	}
	close(f.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(stub.loaded) != 1 {
		t.Errorf("%d loads, want 1", len(stub.loaded))
	}
}
