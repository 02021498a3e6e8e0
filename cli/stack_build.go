package cli

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/stack"
)

// buildTimeout bounds one image build.
const buildTimeout = 30 * time.Minute

// imageBuilder builds a stack service's image and returns its ID.
type imageBuilder interface {
	Build(ctx context.Context, b *stack.Build, progress io.Writer) (string, error)
}

// builder returns the builder of this invocation: the Docker Engine of the
// node the command talks to (Local.Info's engine_host), or the test's.
func (a *app) builder() (imageBuilder, error) {
	if a.opts.builder != nil {
		return a.opts.builder, nil
	}
	lc, err := a.local()
	if err != nil {
		return nil, err
	}
	var info *swarmpb.InfoResponse
	if err := a.call(0, func(ctx context.Context) (err error) {
		info, err = lc.Info(ctx, &swarmpb.InfoRequest{})
		return err
	}); err != nil {
		return nil, err
	}
	return &dockerBuilder{host: info.GetEngineHost()}, nil
}

// dockerBuilder builds with a Docker Engine's classic builder from a tar
// of the build context.
type dockerBuilder struct {
	host string // empty: $DOCKER_HOST or the local socket
}

func (b *dockerBuilder) Build(ctx context.Context, spec *stack.Build, progress io.Writer) (string, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if b.host != "" {
		opts = append(opts, client.WithHost(b.host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return "", fmt.Errorf("cannot reach the node's Docker Engine: %v", err)
	}
	defer cli.Close()
	return buildImage(ctx, cli, spec, progress)
}

// engineBuilder is what buildImage needs of a Docker client.
type engineBuilder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

func buildImage(ctx context.Context, cli engineBuilder, spec *stack.Build, progress io.Writer) (string, error) {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(tarContext(spec.Context, pw))
	}()
	defer pr.Close()
	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{spec.Tag},
		Dockerfile:  spec.Dockerfile,
		BuildArgs:   spec.Args,
		Target:      spec.Target,
		Labels:      spec.Labels,
		Remove:      true,
		ForceRemove: true,
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var id string
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("reading the engine's answer: %v", err)
		}
		if m.Error != nil {
			return "", errors.New(oneLine(errors.New(m.Error.Message)))
		}
		if m.Stream != "" && progress != nil {
			for _, l := range strings.Split(strings.TrimRight(m.Stream, "\n"), "\n") {
				fmt.Fprintf(progress, "  %s\n", escapeText(l))
			}
		}
		if m.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
	}
	if id == "" {
		return "", errors.New("the engine did not report the built image's ID")
	}
	return id, nil
}

// tarContext writes dir as a tar stream, paths relative to it.
func tarContext(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("build context %s: %v", dir, err)
	}
	return tw.Close()
}
