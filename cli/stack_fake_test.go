package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// stackFake is a stateful fake of the Control API for stack commands: it
// stores networks, secrets, configs and services as the managers would
// (filling what they fill) and makes up each service's tasks.
type stackFake struct {
	swarmpb.UnimplementedLocalServer
	swarmpb.UnimplementedControlServer

	mu       sync.Mutex
	calls    []string // "Method name"
	networks map[string]*swarmpb.Network
	secrets  map[string]*swarmpb.Secret
	configs  map[string]*swarmpb.Config
	services map[string]*swarmpb.Service // by name
	nextID   int
	// taskPolls counts ListTasks calls per service name.
	taskPolls map[string]int
	// state says what a service's tasks are doing at its n-th poll
	// (1-based); nil: running.
	state func(name string, poll int) (swarmpb.TaskState, int32, string)
	// volumesRemoved records RemoveVolumes' names.
	volumesRemoved []string
	engineHost     string
	// conflicts makes the next UpdateService calls find the service
	// changed since it was read (and change it).
	conflicts int
}

func newStackFake() *stackFake {
	return &stackFake{
		networks: map[string]*swarmpb.Network{}, secrets: map[string]*swarmpb.Secret{},
		configs: map[string]*swarmpb.Config{}, services: map[string]*swarmpb.Service{},
		taskPolls: map[string]int{},
		state:     dbThenMigrate,
	}
}

func (f *stackFake) record(method, name string) {
	f.calls = append(f.calls, method+" "+name)
}

// callList returns the recorded calls, without reads, in order.
func (f *stackFake) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "Create") || strings.HasPrefix(c, "Update") || strings.HasPrefix(c, "Remove") {
			out = append(out, c)
		}
	}
	return out
}

func (f *stackFake) allCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *stackFake) id(prefix string) string {
	f.nextID++
	return fmt.Sprintf("%s%04d", prefix, f.nextID)
}

func (f *stackFake) Info(context.Context, *swarmpb.InfoRequest) (*swarmpb.InfoResponse, error) {
	return &swarmpb.InfoResponse{NodeId: "n1", State: "active", EngineHost: f.engineHost}, nil
}

// ---- networks

func (f *stackFake) findNetwork(ref string) *swarmpb.Network {
	if n, ok := f.networks[ref]; ok {
		return n
	}
	for _, n := range f.networks {
		if n.Id == ref {
			return n
		}
	}
	return nil
}

func (f *stackFake) CreateNetwork(_ context.Context, r *swarmpb.CreateNetworkRequest) (*swarmpb.CreateNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateNetwork", r.GetSpec().GetName())
	if f.findNetwork(r.GetSpec().GetName()) != nil {
		return nil, status.Errorf(codes.AlreadyExists, "network %s already exists", r.GetSpec().GetName())
	}
	n := &swarmpb.Network{Id: f.id("net"), Spec: r.GetSpec()}
	f.networks[n.Spec.Name] = n
	return &swarmpb.CreateNetworkResponse{Network: n}, nil
}

func (f *stackFake) GetNetwork(_ context.Context, r *swarmpb.GetNetworkRequest) (*swarmpb.GetNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetNetwork", r.GetNetwork())
	if n := f.findNetwork(r.GetNetwork()); n != nil {
		return &swarmpb.GetNetworkResponse{Network: n}, nil
	}
	return nil, status.Errorf(codes.NotFound, "network %s not found", r.GetNetwork())
}

func (f *stackFake) ListNetworks(context.Context, *swarmpb.ListNetworksRequest) (*swarmpb.ListNetworksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*swarmpb.NetworkInfo
	for _, n := range f.networks {
		out = append(out, &swarmpb.NetworkInfo{Network: n})
	}
	return &swarmpb.ListNetworksResponse{Networks: out}, nil
}

func (f *stackFake) RemoveNetwork(_ context.Context, r *swarmpb.RemoveNetworkRequest) (*swarmpb.RemoveNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveNetwork", r.GetNetwork())
	n := f.findNetwork(r.GetNetwork())
	if n == nil {
		return nil, status.Errorf(codes.NotFound, "network %s not found", r.GetNetwork())
	}
	delete(f.networks, n.Spec.Name)
	return &swarmpb.RemoveNetworkResponse{}, nil
}

// ---- secrets and configs

func fakeDataVersion(v uint64, data []byte) *swarmpb.DataVersion {
	sum := sha256.Sum256(data)
	return &swarmpb.DataVersion{Version: v, Sha256: hex.EncodeToString(sum[:])}
}

// usersOf names the services referring to a secret or config.
func (f *stackFake) usersOf(secret, config string) []string {
	var out []string
	for name, s := range f.services {
		for _, r := range s.GetSpec().GetContainer().GetSecrets() {
			if r.GetSecretName() == secret {
				out = append(out, name)
			}
		}
		for _, r := range s.GetSpec().GetContainer().GetConfigs() {
			if r.GetConfigName() == config {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (f *stackFake) CreateSecret(_ context.Context, r *swarmpb.CreateSecretRequest) (*swarmpb.CreateSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateSecret", r.GetName())
	s := &swarmpb.Secret{Id: f.id("sec"), Name: r.GetName(), Labels: r.GetLabels(), Version: 1,
		Versions: []*swarmpb.DataVersion{fakeDataVersion(1, r.GetData())}}
	f.secrets[s.Name] = s
	return &swarmpb.CreateSecretResponse{Secret: s}, nil
}

func (f *stackFake) GetSecret(_ context.Context, r *swarmpb.GetSecretRequest) (*swarmpb.GetSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetSecret", r.GetSecret())
	if s, ok := f.secrets[r.GetSecret()]; ok {
		return &swarmpb.GetSecretResponse{Secret: s}, nil
	}
	return nil, status.Errorf(codes.NotFound, "secret %s not found", r.GetSecret())
}

func (f *stackFake) UpdateSecret(_ context.Context, r *swarmpb.UpdateSecretRequest) (*swarmpb.UpdateSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UpdateSecret", r.GetSecret())
	s, ok := f.secrets[r.GetSecret()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "secret %s not found", r.GetSecret())
	}
	s.Version++
	s.Versions = append(s.Versions, fakeDataVersion(s.Version, r.GetData()))
	return &swarmpb.UpdateSecretResponse{Secret: s, Services: f.usersOf(s.Name, "")}, nil
}

func (f *stackFake) ListSecrets(context.Context, *swarmpb.ListSecretsRequest) (*swarmpb.ListSecretsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*swarmpb.Secret
	for _, s := range f.secrets {
		out = append(out, s)
	}
	return &swarmpb.ListSecretsResponse{Secrets: out}, nil
}

func (f *stackFake) RemoveSecret(_ context.Context, r *swarmpb.RemoveSecretRequest) (*swarmpb.RemoveSecretResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveSecret", r.GetSecret())
	delete(f.secrets, r.GetSecret())
	return &swarmpb.RemoveSecretResponse{}, nil
}

func (f *stackFake) CreateConfig(_ context.Context, r *swarmpb.CreateConfigRequest) (*swarmpb.CreateConfigResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateConfig", r.GetName())
	c := &swarmpb.Config{Id: f.id("cfg"), Name: r.GetName(), Labels: r.GetLabels(), Version: 1,
		Versions: []*swarmpb.DataVersion{fakeDataVersion(1, r.GetData())}}
	f.configs[c.Name] = c
	return &swarmpb.CreateConfigResponse{Config: c}, nil
}

func (f *stackFake) GetConfig(_ context.Context, r *swarmpb.GetConfigRequest) (*swarmpb.GetConfigResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetConfig", r.GetConfig())
	if c, ok := f.configs[r.GetConfig()]; ok {
		return &swarmpb.GetConfigResponse{Config: c}, nil
	}
	return nil, status.Errorf(codes.NotFound, "config %s not found", r.GetConfig())
}

func (f *stackFake) UpdateConfig(_ context.Context, r *swarmpb.UpdateConfigRequest) (*swarmpb.UpdateConfigResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UpdateConfig", r.GetConfig())
	c, ok := f.configs[r.GetConfig()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "config %s not found", r.GetConfig())
	}
	c.Version++
	c.Versions = append(c.Versions, fakeDataVersion(c.Version, r.GetData()))
	return &swarmpb.UpdateConfigResponse{Config: c, Services: f.usersOf("", c.Name)}, nil
}

func (f *stackFake) ListConfigs(context.Context, *swarmpb.ListConfigsRequest) (*swarmpb.ListConfigsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*swarmpb.Config
	for _, c := range f.configs {
		out = append(out, c)
	}
	return &swarmpb.ListConfigsResponse{Configs: out}, nil
}

func (f *stackFake) RemoveConfig(_ context.Context, r *swarmpb.RemoveConfigRequest) (*swarmpb.RemoveConfigResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveConfig", r.GetConfig())
	delete(f.configs, r.GetConfig())
	return &swarmpb.RemoveConfigResponse{}, nil
}

func (f *stackFake) RemoveVolumes(_ context.Context, r *swarmpb.RemoveVolumesRequest) (*swarmpb.RemoveVolumesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveVolumes", strings.Join(r.GetNames(), ","))
	f.volumesRemoved = append(f.volumesRemoved, r.GetNames()...)
	var out []*swarmpb.VolumeRemoval
	for _, n := range r.GetNames() {
		out = append(out, &swarmpb.VolumeRemoval{NodeId: "n1", Hostname: "host1", Name: n, Removed: true})
	}
	return &swarmpb.RemoveVolumesResponse{Results: out}, nil
}

// ---- services

// stored is spec as the managers store it: secret IDs and versions
// filled, update settings' enums filled beside the text.
func (f *stackFake) stored(spec *swarmpb.ServiceSpec) *swarmpb.ServiceSpec {
	s := proto.Clone(spec).(*swarmpb.ServiceSpec)
	for _, r := range s.GetContainer().GetSecrets() {
		if sec, ok := f.secrets[r.SecretName]; ok {
			r.SecretId, r.Version = sec.Id, sec.Version
		}
	}
	for _, r := range s.GetContainer().GetConfigs() {
		if c, ok := f.configs[r.ConfigName]; ok {
			r.ConfigId, r.Version = c.Id, c.Version
		}
	}
	for _, u := range []*swarmpb.UpdateConfig{s.GetUpdate(), s.GetRollback()} {
		if u != nil {
			u.OnFailure = u.FailureActionValue()
			u.UpdateOrder = u.OrderValue()
		}
	}
	return s
}

func (f *stackFake) findService(ref string) *swarmpb.Service {
	if s, ok := f.services[ref]; ok {
		return s
	}
	for _, s := range f.services {
		if s.Id == ref {
			return s
		}
	}
	return nil
}

func (f *stackFake) CreateService(_ context.Context, r *swarmpb.CreateServiceRequest) (*swarmpb.CreateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateService", r.GetSpec().GetName())
	if f.findService(r.GetSpec().GetName()) != nil {
		return nil, status.Errorf(codes.AlreadyExists, "service %s already exists", r.GetSpec().GetName())
	}
	s := &swarmpb.Service{Id: f.id("svc"), Meta: &swarmpb.Meta{Version: uint64(f.nextID)}, Spec: f.stored(r.GetSpec()), SpecVersion: 1}
	f.services[s.Spec.Name] = s
	return &swarmpb.CreateServiceResponse{Service: s}, nil
}

func (f *stackFake) UpdateService(_ context.Context, r *swarmpb.UpdateServiceRequest) (*swarmpb.UpdateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.findService(r.GetService())
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "service %s not found", r.GetService())
	}
	f.record("UpdateService", s.Spec.Name)
	if f.conflicts > 0 {
		f.conflicts--
		s.Meta = &swarmpb.Meta{Version: s.GetMeta().GetVersion() + 1}
	}
	if r.GetVersion() != s.GetMeta().GetVersion() {
		return nil, status.Errorf(codes.Aborted, "update out of sequence")
	}
	s.PreviousSpec = s.Spec
	s.Spec = f.stored(r.GetSpec())
	s.SpecVersion++
	f.nextID++
	s.Meta = &swarmpb.Meta{Version: uint64(f.nextID)}
	return &swarmpb.UpdateServiceResponse{Service: s}, nil
}

func (f *stackFake) GetService(_ context.Context, r *swarmpb.GetServiceRequest) (*swarmpb.GetServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.findService(r.GetService()); s != nil {
		return &swarmpb.GetServiceResponse{Service: s}, nil
	}
	return nil, status.Errorf(codes.NotFound, "service %s not found", r.GetService())
}

func (f *stackFake) ListServices(context.Context, *swarmpb.ListServicesRequest) (*swarmpb.ListServicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*swarmpb.ServiceInfo
	for _, s := range f.services {
		out = append(out, &swarmpb.ServiceInfo{Service: s, Running: s.Spec.Replicas, Desired: s.Spec.Replicas})
	}
	return &swarmpb.ListServicesResponse{Services: out}, nil
}

func (f *stackFake) RemoveService(_ context.Context, r *swarmpb.RemoveServiceRequest) (*swarmpb.RemoveServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.findService(r.GetService())
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "service %s not found", r.GetService())
	}
	f.record("RemoveService", s.Spec.Name)
	delete(f.services, s.Spec.Name)
	return &swarmpb.RemoveServiceResponse{}, nil
}

func (f *stackFake) ListTasks(_ context.Context, r *swarmpb.ListTasksRequest) (*swarmpb.ListTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var svcs []*swarmpb.Service
	if len(r.GetServices()) == 0 {
		for _, s := range f.services {
			svcs = append(svcs, s)
		}
	}
	for _, ref := range r.GetServices() {
		if s := f.findService(ref); s != nil {
			svcs = append(svcs, s)
		}
	}
	var tasks []*swarmpb.Task
	for _, s := range svcs {
		name := s.Spec.Name
		f.record("ListTasks", name)
		f.taskPolls[name]++
		st, code, msg := swarmpb.TaskState_TASK_STATE_RUNNING, int32(0), ""
		if f.state != nil {
			st, code, msg = f.state(name, f.taskPolls[name])
		}
		n := int(s.Spec.Replicas)
		if s.Spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
			n = 1
		}
		copies := 1
		if isFailed(st) {
			// A failing slot has a history of failed tasks.
			copies = 3
		}
		for i := 1; i <= n*copies; i++ {
			tasks = append(tasks, &swarmpb.Task{
				Id: fmt.Sprintf("%s-t%d-v%d", s.Id, i, s.SpecVersion), ServiceId: s.Id, ServiceName: name,
				Slot: uint64((i-1)%n + 1), NodeId: "n1", DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
				Status:      &swarmpb.TaskStatus{State: st, ExitCode: code, Err: msg, Timestamp: 1},
				Spec:        s.Spec,
				SpecVersion: s.SpecVersion,
				Meta:        &swarmpb.Meta{CreatedAt: int64(f.taskPolls[name])},
			})
		}
	}
	return &swarmpb.ListTasksResponse{Tasks: tasks, NodeNames: map[string]string{"n1": "host1"}}, nil
}
