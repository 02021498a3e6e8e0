package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/raftswarm/raftswarm/stack"
)

func TestTarContextHoldsTheTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"Dockerfile": "FROM scratch\n", "sub/app.py": "print(1)\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := tarContext(dir, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	if got["Dockerfile"] != "FROM scratch\n" || got["sub/app.py"] != "print(1)\n" {
		t.Fatalf("tar = %v", got)
	}
	if _, ok := got["sub"]; !ok {
		t.Errorf("directory entry missing: %v", got)
	}
}

// engineAnswer is a fake engine answering a build with a canned stream.
type engineAnswer struct {
	body string
	opts build.ImageBuildOptions
}

func (e *engineAnswer) ImageBuild(_ context.Context, r io.Reader, o build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	e.opts = o
	_, _ = io.Copy(io.Discard, r)
	return build.ImageBuildResponse{Body: io.NopCloser(strings.NewReader(e.body))}, nil
}

func TestBuildImageReadsTheEngineStream(t *testing.T) {
	dir := t.TempDir()
	v := "1"
	spec := &stack.Build{Context: dir, Dockerfile: "Dockerfile.dev", Args: map[string]*string{"V": &v}, Target: "final", Tag: "st_web"}
	e := &engineAnswer{body: `{"stream":"Step 1/1 : FROM scratch\n"}` + "\n" + `{"aux":{"ID":"sha256:abc"}}` + "\n"}
	var out bytes.Buffer
	id, err := buildImage(context.Background(), e, spec, &out)
	if err != nil || id != "sha256:abc" {
		t.Fatalf("id %q, err %v", id, err)
	}
	if e.opts.Dockerfile != "Dockerfile.dev" || e.opts.Target != "final" || *e.opts.BuildArgs["V"] != "1" || e.opts.Tags[0] != "st_web" {
		t.Errorf("options = %+v", e.opts)
	}
	if !strings.Contains(out.String(), "Step 1/1 : FROM scratch") {
		t.Errorf("progress = %q", out.String())
	}
	e = &engineAnswer{body: `{"error":"COPY failed: file not found","errorDetail":{"message":"COPY failed: file not found"}}` + "\n"}
	if _, err := buildImage(context.Background(), e, spec, nil); err == nil || err.Error() != "COPY failed: file not found" {
		t.Errorf("err = %v", err)
	}
}

// A real build on the machine's Docker Engine, FROM scratch (nothing to
// pull); the image is removed afterwards.
func TestDockerBuilderBuildsFromScratch(t *testing.T) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Skipf("no Docker client: %v", err)
	}
	// Closed last, after the image removal below.
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Skipf("no Docker Engine: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nARG WHO\nLABEL who=$WHO\nCOPY hello.txt /hello.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	tag := "raftswarm-h4-test-" + hex.EncodeToString(suffix) + ":latest"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	who := "stack"
	var out bytes.Buffer
	id, err := (&dockerBuilder{}).Build(ctx, &stack.Build{Context: dir, Args: map[string]*string{"WHO": &who}, Tag: tag}, &out)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	ins, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if ins.ID != id {
		t.Errorf("built %s, tag points at %s", id, ins.ID)
	}
	if ins.Config == nil || ins.Config.Labels["who"] != "stack" {
		t.Errorf("build arg not applied: %+v", ins.Config)
	}
}
