package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// callTimeouts bounds each kind of Engine API call. A hung engine call
// (seen once as a task stuck in PREPARING for 90 s while the others ran)
// then returns an error naming the call, which the worker reports as the
// task's Err (Prepare: REJECTED; Start: FAILED) instead of waiting forever.
type callTimeouts struct {
	inspect time.Duration // ContainerInspect, ImageInspect, NetworkInspect, Info, ServerVersion
	list    time.Duration // ContainerList, NetworkList
	create  time.Duration // ContainerCreate, ContainerStart, ContainerRemove, Network{Create,Remove,Connect}
	// stop is added to the container's stop grace period, which the
	// engine waits out before it answers.
	stop time.Duration
}

var defaultTimeouts = callTimeouts{
	inspect: 15 * time.Second,
	list:    30 * time.Second,
	create:  60 * time.Second,
	stop:    30 * time.Second,
}

// deadlineEngine gives every engine call its own deadline. Calls that
// stream for as long as the work lasts are left alone: ContainerWait (a
// task's whole run), ContainerLogs (follows) and ImagePull (large images
// take minutes; its progress stream ends with the engine's error).
type deadlineEngine struct {
	Engine
	t callTimeouts
}

// ErrEngineTimeout is wrapped by errors from engine calls that did not
// answer within their deadline.
var ErrEngineTimeout = errors.New("docker engine call timed out")

func withDeadline[T any](ctx context.Context, call string, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := f(cctx)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		// Our deadline, not the caller's cancellation.
		err = fmt.Errorf("%w: %s got no answer within %s (is dockerd hung? see `docker info`): %v", ErrEngineTimeout, call, d, err)
	}
	return v, err
}

func withDeadlineErr(ctx context.Context, call string, d time.Duration, f func(context.Context) error) error {
	_, err := withDeadline(ctx, call, d, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func (e deadlineEngine) ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error) {
	return withDeadline(ctx, "ContainerCreate", e.t.create, func(ctx context.Context) (container.CreateResponse, error) {
		return e.Engine.ContainerCreate(ctx, config, hostConfig, networkingConfig, platform, containerName)
	})
}

func (e deadlineEngine) ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error {
	return withDeadlineErr(ctx, "ContainerStart", e.t.create, func(ctx context.Context) error {
		return e.Engine.ContainerStart(ctx, containerID, options)
	})
}

func (e deadlineEngine) ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error {
	d := e.t.stop
	if options.Timeout != nil && *options.Timeout > 0 {
		d += time.Duration(*options.Timeout) * time.Second
	}
	return withDeadlineErr(ctx, "ContainerStop", d, func(ctx context.Context) error {
		return e.Engine.ContainerStop(ctx, containerID, options)
	})
}

func (e deadlineEngine) ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error {
	return withDeadlineErr(ctx, "ContainerRemove", e.t.create, func(ctx context.Context) error {
		return e.Engine.ContainerRemove(ctx, containerID, options)
	})
}

func (e deadlineEngine) ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error) {
	return withDeadline(ctx, "ContainerList", e.t.list, func(ctx context.Context) ([]container.Summary, error) {
		return e.Engine.ContainerList(ctx, options)
	})
}

func (e deadlineEngine) ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error) {
	return withDeadline(ctx, "ContainerInspect", e.t.inspect, func(ctx context.Context) (container.InspectResponse, error) {
		return e.Engine.ContainerInspect(ctx, containerID)
	})
}

func (e deadlineEngine) ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	return withDeadline(ctx, "ImageInspect", e.t.inspect, func(ctx context.Context) (image.InspectResponse, error) {
		return e.Engine.ImageInspect(ctx, imageID, opts...)
	})
}

func (e deadlineEngine) Info(ctx context.Context) (system.Info, error) {
	return withDeadline(ctx, "Info", e.t.inspect, e.Engine.Info)
}

func (e deadlineEngine) ServerVersion(ctx context.Context) (types.Version, error) {
	return withDeadline(ctx, "ServerVersion", e.t.inspect, e.Engine.ServerVersion)
}

func (e deadlineEngine) NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error) {
	return withDeadline(ctx, "NetworkCreate", e.t.create, func(ctx context.Context) (network.CreateResponse, error) {
		return e.Engine.NetworkCreate(ctx, name, options)
	})
}

func (e deadlineEngine) NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error) {
	return withDeadline(ctx, "NetworkInspect", e.t.inspect, func(ctx context.Context) (network.Inspect, error) {
		return e.Engine.NetworkInspect(ctx, networkID, options)
	})
}

func (e deadlineEngine) NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error) {
	return withDeadline(ctx, "NetworkList", e.t.list, func(ctx context.Context) ([]network.Summary, error) {
		return e.Engine.NetworkList(ctx, options)
	})
}

func (e deadlineEngine) NetworkRemove(ctx context.Context, networkID string) error {
	return withDeadlineErr(ctx, "NetworkRemove", e.t.create, func(ctx context.Context) error {
		return e.Engine.NetworkRemove(ctx, networkID)
	})
}

func (e deadlineEngine) NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error {
	return withDeadlineErr(ctx, "NetworkConnect", e.t.create, func(ctx context.Context) error {
		return e.Engine.NetworkConnect(ctx, networkID, containerID, config)
	})
}

// Streaming calls, passed through on purpose (see deadlineEngine).
func (e deadlineEngine) ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	return e.Engine.ContainerWait(ctx, containerID, condition)
}

func (e deadlineEngine) ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error) {
	return e.Engine.ContainerLogs(ctx, containerID, options)
}

func (e deadlineEngine) ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error) {
	return e.Engine.ImagePull(ctx, ref, options)
}
