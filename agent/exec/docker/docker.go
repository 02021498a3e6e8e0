package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Engine lists exactly the Docker Engine calls the executor makes, so a stub
// can replace *client.Client in tests.
type Engine interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	Info(ctx context.Context) (system.Info, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	// Bridge networks for cluster networks (networks.go).
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkRemove(ctx context.Context, networkID string) error
	NetworkConnect(ctx context.Context, networkID, containerID string, config *network.EndpointSettings) error
	ImageEngine // imagefetch.go
}

var _ Engine = (*client.Client)(nil)

// Executor runs tasks as Docker containers for one node.
type Executor struct {
	engine  Engine
	nodeID  string
	opts    Options
	closer  io.Closer    // the client New created; nil when given an Engine
	data    dataMounts   // secrets and configs (secrets.go)
	nets    netState     // how task containers join cluster networks (networks.go)
	fetcher imageFetcher // gets missing images from other nodes (imagefetch.go)
}

var _ exec.Executor = (*Executor)(nil)

// New connects to the engine at dockerHost ("" = DOCKER_HOST and friends,
// else the platform default) on behalf of nodeID. The API version is
// negotiated, so older engines (API 1.41) work. No call is made yet: an
// unreachable engine shows up in Describe.
// minAPIVersion is the Engine API version raftswarm needs (Docker 20.10).
const minAPIVersion = "1.41"

func New(dockerHost string, nodeID string) (*Executor, error) {
	return NewWithOptions(dockerHost, nodeID, Options{})
}

// Options tune an executor.
type Options struct {
	// IngressIP is the node address task ports are published on, for the
	// routing mesh (ingress mode) and host-mode ports alike. "" publishes
	// on all addresses.
	IngressIP string
	// DataDir is where the node keeps its tasks' secrets (on a tmpfs the
	// executor mounts at DataDir/secrets) and configs (DataDir/configs),
	// under the node's state dir. "": tasks using them are rejected.
	DataDir string
	// PullStallTimeout fails an image pull that makes no progress for
	// this long (DefaultPullStallTimeout when 0). A pull that keeps making
	// progress runs as long as it needs.
	PullStallTimeout time.Duration
}

// DefaultPullStallTimeout is how long an image pull may go without
// progress before its task fails.
const DefaultPullStallTimeout = 60 * time.Second

// ErrPullStalled is wrapped by the error of a pull that made no progress
// for Options.PullStallTimeout.
var ErrPullStalled = errors.New("image pull stalled")

func (o Options) pullStall() time.Duration {
	if o.PullStallTimeout > 0 {
		return o.PullStallTimeout
	}
	return DefaultPullStallTimeout
}

// NewWithOptions is New with options.
func NewWithOptions(dockerHost string, nodeID string, o Options) (*Executor, error) {
	if o.PullStallTimeout < 0 {
		return nil, fmt.Errorf("docker executor: negative image pull stall timeout %s", o.PullStallTimeout)
	}
	if o.IngressIP != "" && net.ParseIP(o.IngressIP) == nil {
		return nil, fmt.Errorf("docker executor: ingress IP %q is not an IP address", o.IngressIP)
	}
	if nodeID == "" {
		return nil, errors.New("docker executor: empty node ID")
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if dockerHost != "" {
		opts = append(opts, client.WithHost(dockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker executor: %w", err)
	}
	// The client negotiates its API version lazily on the first call, and
	// that is not safe when the first calls run concurrently (the agent
	// makes several at once). Negotiate now; if the engine does not answer,
	// pin the oldest version we support so later calls never negotiate.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, perr := cli.Ping(ctx); perr != nil {
		cli.Close()
		opts = append(opts[:0], client.FromEnv, client.WithVersion(minAPIVersion))
		if dockerHost != "" {
			opts = append(opts, client.WithHost(dockerHost))
		}
		if cli, err = client.NewClientWithOpts(opts...); err != nil {
			return nil, fmt.Errorf("docker executor: %w", err)
		}
	} else {
		cli.NegotiateAPIVersion(ctx)
	}
	e := NewWithEngine(cli, nodeID)
	e.closer = cli
	e.opts = o
	return e, nil
}

// NewWithEngine builds an executor on an existing engine client or stub.
// Every call but the streaming ones gets its own deadline (deadlineEngine).
func NewWithEngine(engine Engine, nodeID string) *Executor {
	return newWithEngine(engine, nodeID, defaultTimeouts)
}

func newWithEngine(engine Engine, nodeID string, t callTimeouts) *Executor {
	return &Executor{engine: deadlineEngine{Engine: engine, t: t}, nodeID: nodeID}
}

// NodeID returns the node this executor acts for.
func (e *Executor) NodeID() string { return e.nodeID }

// Close releases the client created by New. Containers are left alone.
func (e *Executor) Close() error {
	derr := e.closeData() // secrets.go
	if e.closer != nil {
		return errors.Join(e.closer.Close(), derr)
	}
	return derr
}

// Describe reports the engine's platform (Go-style os/arch, as used by
// placement constraints), version and resources.
func (e *Executor) Describe(ctx context.Context) (*swarmpb.NodeDescription, error) {
	v, err := e.engine.ServerVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker engine unreachable: %w", err)
	}
	info, err := e.engine.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker engine info: %w", err)
	}
	host, herr := os.Hostname()
	if herr != nil || host == "" {
		host = info.Name
	}
	return &swarmpb.NodeDescription{
		Hostname:      host,
		Os:            v.Os,
		Arch:          v.Arch,
		EngineVersion: v.Version,
		Resources: &swarmpb.Resources{
			NanoCpus:    int64(info.NCPU) * 1e9,
			MemoryBytes: info.MemTotal,
		},
	}, nil
}

// Controller returns the controller of the task's container.
func (e *Executor) Controller(t *swarmpb.Task) (exec.Controller, error) {
	if t == nil || t.GetId() == "" {
		return nil, errors.New("docker executor: task without ID")
	}
	return &controller{e: e, task: t, name: exec.ContainerName(t, e.nodeID)}, nil
}

// Containers lists this node's containers, running or not.
func (e *Executor) Containers(ctx context.Context) ([]exec.ContainerInfo, error) {
	return e.list(ctx, "", nil)
}

// maxTaskLookups is how many tasks TaskContainers looks up one by one (one
// filtered list each); for more, one list of the node's containers is
// cheaper.
const maxTaskLookups = 4

var _ exec.TaskContainerLister = (*Executor)(nil)

// TaskContainers lists the containers of the given tasks. A session
// message usually brings one new task: listing just its container spares
// the engine listing, and inspecting every exited one of, the node's
// hundreds of containers for it.
func (e *Executor) TaskContainers(ctx context.Context, taskIDs []string) ([]exec.ContainerInfo, error) {
	if len(taskIDs) > maxTaskLookups {
		want := make(map[string]bool, len(taskIDs))
		for _, id := range taskIDs {
			want[id] = true
		}
		return e.list(ctx, "", want)
	}
	var out []exec.ContainerInfo
	for _, id := range taskIDs {
		list, err := e.list(ctx, id, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return out, nil
}

// list lists this node's containers, running or not: those of task taskID
// (unless ""), of the tasks in want (unless nil; the others are not
// inspected either).
func (e *Executor) list(ctx context.Context, taskID string, want map[string]bool) ([]exec.ContainerInfo, error) {
	// Label filters must all match (the engine ANDs them).
	args := filters.NewArgs(filters.Arg("label", exec.LabelNodeID+"="+e.nodeID))
	if taskID != "" {
		args.Add("label", exec.LabelTaskID+"="+taskID)
	}
	list, err := e.engine.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		if taskID != "" {
			return nil, fmt.Errorf("list containers of task %s: %w", taskID, err)
		}
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]exec.ContainerInfo, 0, len(list))
	for _, c := range list {
		// The filter is server-side; check again so a stub or an engine
		// ignoring filters can never make us touch a foreign container
		// (or, looking up a task, another task's).
		if c.Labels[exec.LabelNodeID] != e.nodeID || (taskID != "" && c.Labels[exec.LabelTaskID] != taskID) {
			continue
		}
		if want != nil && !want[c.Labels[exec.LabelTaskID]] {
			continue
		}
		info := exec.ContainerInfo{ID: c.ID, State: string(c.State), Running: c.State == container.StateRunning}
		if len(c.Names) > 0 {
			info.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		exec.InfoFromLabels(&info, c.Labels)
		if !info.Running {
			// The list only carries a human status string; the exit code
			// needs an inspect.
			ins, err := e.engine.ContainerInspect(ctx, c.ID)
			if cerrdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("inspect container %s: %w", c.ID, err)
			}
			if ins.State != nil {
				info.ExitCode = ins.State.ExitCode
				info.State = ins.State.Status
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// controller drives one task's container.
type controller struct {
	e    *Executor
	task *swarmpb.Task
	name string

	mu   sync.Mutex
	id   string // container ID once known
	note string // where the image came from (PrepareNote)
}

var (
	_ exec.Controller     = (*controller)(nil)
	_ exec.PortReporter   = (*controller)(nil)
	_ exec.HealthReporter = (*controller)(nil)
)

// errForeign is returned when a container with our name exists but belongs
// to another node or task: we must not touch it.
type errForeign struct{ name, why string }

func (e errForeign) Error() string {
	return fmt.Sprintf("container name %q is taken by a container of %s", e.name, e.why)
}

// lookup finds the task's container by name and checks it is ours. It
// returns ("", nil) when there is none.
func (c *controller) lookup(ctx context.Context) (string, error) {
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id != "" {
		return id, nil
	}
	ins, err := c.e.engine.ContainerInspect(ctx, c.name)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", c.name, err)
	}
	var labels map[string]string
	if ins.Config != nil {
		labels = ins.Config.Labels
	}
	if n := labels[exec.LabelNodeID]; n != c.e.nodeID {
		return "", errForeign{c.name, fmt.Sprintf("node %q", n)}
	}
	if t := labels[exec.LabelTaskID]; t != c.task.GetId() {
		return "", errForeign{c.name, fmt.Sprintf("task %q", t)}
	}
	c.mu.Lock()
	c.id = ins.ID
	c.mu.Unlock()
	return ins.ID, nil
}

// mustLookup is lookup for steps that need the container to exist.
func (c *controller) mustLookup(ctx context.Context) (string, error) {
	id, err := c.lookup(ctx)
	if err == nil && id == "" {
		err = fmt.Errorf("container %s not found", c.name)
	}
	return id, err
}

func (c *controller) forget() {
	c.mu.Lock()
	c.id = ""
	c.mu.Unlock()
}

func (c *controller) Prepare(ctx context.Context) error {
	spec := c.task.GetSpec().GetContainer()
	if spec == nil || spec.GetImage() == "" {
		return exec.ErrNoContainerSpec
	}
	// Adoption: an existing container of this task is reused as is.
	if id, err := c.lookup(ctx); err != nil || id != "" {
		return err
	}
	img, err := c.prepareImage(ctx, spec) // imagefetch.go
	if err != nil {
		return err
	}
	cfg, hostCfg := c.configs()
	netCfg, moreNets, err := c.attachNetworks(ctx, hostCfg)
	if err != nil {
		return err
	}
	if err := c.mountData(hostCfg); err != nil { // secrets.go
		_ = c.removeData()
		return err
	}
	cfg.Image = img
	resp, err := c.e.engine.ContainerCreate(ctx, cfg, hostCfg, netCfg, nil, c.name)
	if cerrdefs.IsConflict(err) {
		// Someone (a previous attempt whose response we lost) created it
		// meanwhile; reuse it if it is ours.
		c.forget()
		id, err := c.mustLookup(ctx)
		if err != nil {
			return err
		}
		return c.connectNetworks(ctx, id, moreNets)
	}
	if err != nil {
		_ = c.removeData()
		return fmt.Errorf("create container %s: %w", c.name, err)
	}
	c.mu.Lock()
	c.id = resp.ID
	c.mu.Unlock()
	if err := c.connectNetworks(ctx, resp.ID, moreNets); err != nil {
		// A container missing one of its networks must not run.
		_ = c.Remove(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// ensureImage uses the local image, pulling only when it is absent. Pull
// failures arrive either as the HTTP error or inside the progress stream;
// both carry the engine's message, which ends up in the task's Err.
func (c *controller) ensureImage(ctx context.Context, ref string) error {
	_, err := c.e.engine.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if err := c.pull(ctx, ref); err != nil {
		return err
	}
	if _, err := c.e.engine.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("image %s still missing after pull: %w", ref, err)
	}
	return nil
}

// pull pulls ref, failing with ErrPullStalled when the engine reports no
// progress for Options.PullStallTimeout: a registry or a dockerd that
// stops answering mid-pull would otherwise keep the task in PREPARING
// for good (the pull streams for as long as it lasts, so it has no
// deadline of its own). Progress is any message that differs from the
// one before for the same layer: new bytes, a layer done, a new layer;
// the engine repeats nothing while it waits.
func (c *controller) pull(ctx context.Context, ref string) error {
	stall := c.e.opts.pullStall()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()
	fail := func(err error) error {
		if stalled.Load() && ctx.Err() == nil {
			return fmt.Errorf("%w: no progress for %s pulling %s (is the registry reachable from this node? see `docker pull %s`)", ErrPullStalled, stall, ref, ref)
		}
		return err
	}
	rc, err := c.e.engine.ImagePull(pctx, ref, image.PullOptions{})
	if err != nil {
		return fail(fmt.Errorf("image %s not found locally and pull failed: %w", ref, err))
	}
	defer rc.Close()
	// Closing the body is what ends a read blocked on a silent engine.
	stop := context.AfterFunc(pctx, func() { _ = rc.Close() })
	defer stop()
	dec := json.NewDecoder(rc)
	last := map[string]string{}
	for {
		var msg struct {
			ID          string          `json:"id"`
			Status      string          `json:"status"`
			Progress    json.RawMessage `json:"progressDetail"`
			Error       string          `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF && !stalled.Load() {
			break
		} else if err != nil {
			return fail(fmt.Errorf("image %s: reading pull progress: %w", ref, err))
		}
		if state := msg.Status + string(msg.Progress); last[msg.ID] != state {
			last[msg.ID] = state
			watchdog.Reset(stall)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return fmt.Errorf("image %s not found locally and pull failed: %s", ref, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("image %s not found locally and pull failed: %s", ref, msg.Error)
		}
	}
	return nil
}

// configs translates the task's spec into Docker's create configuration.
func (c *controller) configs() (*container.Config, *container.HostConfig) {
	t := c.task
	spec := t.GetSpec().GetContainer()
	stopSecs := graceSeconds(exec.StopGracePeriodNs(t))
	cfg := &container.Config{
		Image:       spec.GetImage(),
		Env:         exec.ContainerEnv(t, c.e.nodeID),
		Labels:      exec.ContainerLabels(t, c.e.nodeID),
		WorkingDir:  spec.GetDir(),
		User:        spec.GetUser(),
		Hostname:    spec.GetHostname(),
		StopTimeout: &stopSecs, // so a manual `docker stop` honours it too
	}
	// Command replaces the image's entrypoint; Args alone keep it and
	// replace only the default command, as in `docker service create`.
	if len(spec.GetCommand()) > 0 {
		cfg.Entrypoint = append([]string(nil), spec.GetCommand()...)
	}
	if len(spec.GetArgs()) > 0 {
		cfg.Cmd = append([]string(nil), spec.GetArgs()...)
	}
	if hc := spec.GetHealthcheck(); hc != nil && len(hc.GetTest()) > 0 {
		cfg.Healthcheck = &container.HealthConfig{
			Test:        append([]string(nil), hc.GetTest()...), // ["NONE"] disables the image's check
			Interval:    time.Duration(hc.GetIntervalNs()),
			Timeout:     time.Duration(hc.GetTimeoutNs()),
			StartPeriod: time.Duration(hc.GetStartPeriodNs()),
			Retries:     int(hc.GetRetries()),
		}
	}
	hostCfg := &container.HostConfig{
		// The orchestrator restarts tasks (as new tasks); Docker must not.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
	}
	hostCfg.Mounts = dockerMounts(spec.GetMounts()) // volumes.go
	if lim := t.GetSpec().GetResources().GetLimits(); lim != nil {
		hostCfg.NanoCPUs = lim.GetNanoCpus()
		hostCfg.Memory = lim.GetMemoryBytes()
	}
	applyExtras(spec, cfg, hostCfg)
	c.publishPorts(cfg, hostCfg)
	return cfg, hostCfg
}

// publishPorts publishes the spec's ports on the node's ingress IP: an
// ingress-mode port on a port Docker picks (the routing mesh of every node
// forwards the service's published port to it), a host-mode port on its
// published port (Docker picks one when that is 0).
func (c *controller) publishPorts(cfg *container.Config, hostCfg *container.HostConfig) {
	for _, p := range c.task.GetSpec().GetPorts() {
		if p.GetTargetPort() == 0 {
			continue
		}
		port, err := nat.NewPort(exec.PortProtocol(p), strconv.FormatUint(uint64(p.GetTargetPort()), 10))
		if err != nil {
			continue // an unknown protocol; the API validates specs
		}
		hostPort := ""
		if exec.IsHostMode(p) && p.GetPublishedPort() != 0 {
			hostPort = strconv.FormatUint(uint64(p.GetPublishedPort()), 10)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = nat.PortSet{}
			hostCfg.PortBindings = nat.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		hostCfg.PortBindings[port] = append(hostCfg.PortBindings[port], nat.PortBinding{HostIP: c.e.opts.IngressIP, HostPort: hostPort})
	}
}

// graceSeconds rounds up: Docker takes whole seconds, and a sub-second grace
// period must not become "kill at once".
func graceSeconds(ns int64) int {
	return int((ns + 1e9 - 1) / 1e9)
}

func (c *controller) Start(ctx context.Context) error {
	id, err := c.mustLookup(ctx)
	if err != nil {
		return err
	}
	if err := c.e.engine.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	return nil
}

func (c *controller) Wait(ctx context.Context) (int, error) {
	id, err := c.mustLookup(ctx)
	if err != nil {
		return 0, err
	}
	respC, errC := c.e.engine.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case resp := <-respC:
		if resp.Error != nil && resp.Error.Message != "" {
			return int(resp.StatusCode), fmt.Errorf("wait container %s: %s", c.name, resp.Error.Message)
		}
		return int(resp.StatusCode), nil
	case err := <-errC:
		return 0, fmt.Errorf("wait container %s: %w", c.name, err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (c *controller) Shutdown(ctx context.Context) error {
	id, err := c.lookup(ctx)
	if err != nil || id == "" {
		return err
	}
	secs := graceSeconds(exec.StopGracePeriodNs(c.task))
	err = c.e.engine.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", c.name, err)
	}
	return nil
}

func (c *controller) Remove(ctx context.Context) error {
	id, err := c.lookup(ctx)
	if err != nil {
		return err
	}
	if id == "" {
		return c.removeData() // secrets.go
	}
	// Force: removal is final (the task is gone); anonymous volumes go
	// with the container, named volumes stay.
	err = c.e.engine.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", c.name, err)
	}
	c.forget()
	return c.removeData()
}

// ContainerID returns the container's ID once known, else "".
func (c *controller) ContainerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Ports reports the host addresses Docker bound the task's published ports
// to (NetworkSettings.Ports), HostIp as Docker reports it. A wildcard
// binding that Docker reports twice (0.0.0.0 and ::) is reported once, as
// the IPv4 one. A stopped container has no bindings.
func (c *controller) Ports(ctx context.Context) ([]*swarmpb.PortBinding, error) {
	specPorts := c.task.GetSpec().GetPorts()
	if len(specPorts) == 0 {
		return nil, nil
	}
	id, err := c.mustLookup(ctx)
	if err != nil {
		return nil, err
	}
	ins, err := c.e.engine.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inspect container %s: %w", c.name, err)
	}
	if ins.NetworkSettings == nil {
		return nil, nil
	}
	waitListening(ctx, containerIP(ins.NetworkSettings), specPorts)
	return portBindings(specPorts, ins.NetworkSettings.Ports), nil
}

// listenWait bounds how long a task's RUNNING report (which puts it in
// every node's routing mesh) waits for its process to accept connections.
const listenWait = 5 * time.Second

// waitListening waits until the container accepts TCP connections on its
// published target ports, up to listenWait. Docker's port proxy accepts a
// connection on the host port even before the process listens, and then
// closes it: a task routed to that early would fail requests. Probing the
// container's own address avoids that window. A process that never
// listens is reported anyway when the wait ends; health checks are the
// way to gate on more than a listening socket.
func waitListening(ctx context.Context, ip string, ports []*swarmpb.PortConfig) {
	if ip == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, listenWait)
	defer cancel()
	var d net.Dialer
	for _, p := range ports {
		if exec.PortProtocol(p) != "tcp" || p.GetTargetPort() == 0 {
			continue
		}
		addr := net.JoinHostPort(ip, strconv.FormatUint(uint64(p.GetTargetPort()), 10))
		for {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if !retry.Sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
	}
}

// portBindings maps Docker's bindings back to the spec's ports to tell
// their publish mode.
func portBindings(specPorts []*swarmpb.PortConfig, pm nat.PortMap) []*swarmpb.PortBinding {
	type key struct {
		proto  string
		target uint32
		host   uint32
	}
	seen := map[key]int{} // index in out
	var out []*swarmpb.PortBinding
	for _, p := range specPorts {
		if p.GetTargetPort() == 0 {
			continue
		}
		proto := exec.PortProtocol(p)
		port, err := nat.NewPort(proto, strconv.FormatUint(uint64(p.GetTargetPort()), 10))
		if err != nil {
			continue
		}
		// Docker lists a wildcard binding once per address family, and
		// may give the two families different host ports; the mesh dials
		// IPv4, so an IPv6 binding counts only when there is no IPv4 one.
		hasV4 := false
		for _, b := range pm[port] {
			if !isIPv6(b.HostIP) {
				hasV4 = true
			}
		}
		for _, b := range pm[port] {
			if hasV4 && isIPv6(b.HostIP) {
				continue
			}
			hp, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || hp == 0 {
				continue
			}
			k := key{proto, p.GetTargetPort(), uint32(hp)}
			mode := exec.PublishModeIngress
			if exec.IsHostMode(p) {
				// A host-mode port with a published port binds exactly
				// that port; another binding of the same target port
				// belongs to another (ingress) entry of the spec.
				if p.GetPublishedPort() != 0 && p.GetPublishedPort() != uint32(hp) {
					continue
				}
				mode = exec.PublishModeHost
			} else if hostModeOwns(specPorts, proto, p.GetTargetPort(), uint32(hp)) {
				continue
			}
			pb := &swarmpb.PortBinding{Protocol: proto, TargetPort: p.GetTargetPort(), HostIp: b.HostIP, HostPort: uint32(hp), PublishMode: mode}
			if i, ok := seen[k]; ok {
				// Docker lists a wildcard binding once per address family.
				if isIPv6(out[i].GetHostIp()) && !isIPv6(b.HostIP) {
					out[i] = pb
				}
				continue
			}
			seen[k] = len(out)
			out = append(out, pb)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].GetTargetPort() != out[j].GetTargetPort() {
			return out[i].GetTargetPort() < out[j].GetTargetPort()
		}
		return out[i].GetProtocol() < out[j].GetProtocol()
	})
	return out
}

// hostModeOwns reports whether a host-mode spec port publishes target on
// exactly hostPort.
func hostModeOwns(specPorts []*swarmpb.PortConfig, proto string, target, hostPort uint32) bool {
	for _, p := range specPorts {
		if exec.IsHostMode(p) && exec.PortProtocol(p) == proto && p.GetTargetPort() == target && p.GetPublishedPort() == hostPort {
			return true
		}
	}
	return false
}

func isIPv6(ip string) bool { return strings.Contains(ip, ":") }

// Health reports the container's health status (State.Health.Status):
// exec.HealthNone when it has no healthcheck.
func (c *controller) Health(ctx context.Context) (string, error) {
	id, err := c.mustLookup(ctx)
	if err != nil {
		return "", err
	}
	ins, err := c.e.engine.ContainerInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", c.name, err)
	}
	if ins.State == nil || ins.State.Health == nil || ins.State.Health.Status == container.NoHealthcheck {
		return exec.HealthNone, nil
	}
	return string(ins.State.Health.Status), nil
}
