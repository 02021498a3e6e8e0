package api

import (
	"context"
	"errors"
	"fmt"
	"github.com/docker/docker/pkg/namesgenerator"
	"strings"

	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// generatedServiceName picks a name, Docker style (adjective_surname), for
// a service created without one, avoiding the names in use; the store
// refuses a duplicate anyway if a concurrent create takes it meanwhile.
func (s *ControlServer) generatedServiceName() string {
	name := namesgenerator.GetRandomName(0)
	for retry := 1; retry < 10; retry++ {
		var taken bool
		s.Store.View(func(tx state.ReadTx) { taken = tx.GetServiceByName(name) != nil })
		if !taken {
			break
		}
		name = namesgenerator.GetRandomName(retry)
	}
	return name
}

// validateServiceSpec applies package spec's rules with the cluster's
// replica cap, read from the store's Cluster object, and returns an
// InvalidArgument status naming the field and the limit. A valid spec that
// gives the update settings only as enums gets the deprecated strings
// filled too, so that older managers and clients read the same settings.
func (s *ControlServer) validateServiceSpec(sp *swarmpb.ServiceSpec) error {
	var settings *swarmpb.ClusterSettings
	s.Store.View(func(tx state.ReadTx) { settings = tx.Cluster().GetSettings() })
	if err := spec.ValidateServiceSpec(sp, spec.MaxReplicas(settings)); err != nil {
		return Status(invalidf("%v", err))
	}
	sp.GetUpdate().FillDeprecated()
	sp.GetRollback().FillDeprecated()
	return nil
}

// tasksAffected reports whether moving from a to b needs new tasks.
// Replicas, update and rollback settings do not.
func tasksAffected(a, b *swarmpb.ServiceSpec) bool {
	strip := func(s *swarmpb.ServiceSpec) *swarmpb.ServiceSpec {
		c := proto.Clone(s).(*swarmpb.ServiceSpec)
		c.Replicas, c.Update, c.Rollback, c.Labels = 0, nil, nil, nil
		return c
	}
	return !proto.Equal(strip(a), strip(b))
}

// findService resolves an ID, unique ID prefix or name.
func findService(tx state.ReadTx, ref string) (*swarmpb.Service, error) {
	if ref == "" {
		return nil, invalidf("a service name or ID is required")
	}
	if s := tx.GetService(ref); s != nil {
		return s, nil
	}
	if s := tx.GetServiceByName(ref); s != nil {
		return s, nil
	}
	var match []*swarmpb.Service
	for _, s := range tx.ListServices() {
		if strings.HasPrefix(s.Id, ref) {
			match = append(match, s)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, notFoundf("service %s not found", ref)
	}
	return nil, invalidf("service %q is ambiguous: %d service IDs start with it", ref, len(match))
}

// checkPorts refuses, early and with the owner's name, a spec claiming a
// published port another service owns. It is a courtesy: two concurrent
// writes can both pass it, and the store, which checks again where the
// writes are applied (state.PortConflictError), is what keeps ports unique.
func checkPorts(tx state.ReadTx, exceptID string, spec *swarmpb.ServiceSpec) error {
	for _, p := range spec.Ports {
		if p.PublishedPort == 0 {
			continue
		}
		if s := tx.PortOwner(state.PortKey{Port: p.PublishedPort, Protocol: p.Protocol}); s != nil && s.Id != exceptID {
			return refusedf("port %d/%s is already published by service %s", p.PublishedPort, p.Protocol, s.Spec.Name)
		}
	}
	return nil
}

func (s *ControlServer) CreateService(ctx context.Context, req *swarmpb.CreateServiceRequest) (*swarmpb.CreateServiceResponse, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		if err != nil {
			return nil, err
		}
		var svc *swarmpb.Service
		s.Store.View(func(tx state.ReadTx) { svc = tx.GetService(r.ObjectId) })
		if svc != nil {
			return &swarmpb.CreateServiceResponse{Service: svc}, nil
		}
		return nil, Status(notFoundf("the service this request created was removed meanwhile"))
	}
	if req.Spec != nil && req.Spec.Name == "" {
		named := proto.Clone(req.Spec).(*swarmpb.ServiceSpec)
		named.Name = s.generatedServiceName()
		req = &swarmpb.CreateServiceRequest{Spec: named, ImageNodeId: req.ImageNodeId}
	}
	if err := s.validateServiceSpec(req.Spec); err != nil {
		return nil, err
	}
	if err := s.resolveDataRefs(req.Spec); err != nil { // secrets.go
		return nil, err
	}
	svc := &swarmpb.Service{Id: identity.NewID(), Spec: proto.Clone(req.Spec).(*swarmpb.ServiceSpec), SpecVersion: 1}
	for attempt := 0; ; attempt++ {
		var err error
		s.Store.View(func(tx state.ReadTx) {
			if tx.GetServiceByName(svc.Spec.Name) != nil {
				err = &userError{kind: state.ErrNameConflict, msg: fmt.Sprintf("service %s already exists", svc.Spec.Name)}
				return
			}
			if err = checkPorts(tx, "", svc.Spec); err != nil {
				return
			}
			if err = resolveNetworks(tx, svc.Id, svc.Spec); err != nil {
				return
			}
			svc.VirtualIps, err = allocateVIPs(tx, svc.Id, svc.Spec, nil)
			svc.ImageOrigins = imageOrigins(tx, nil, svc.Spec, nil, req.ImageNodeId) // images.go
		})
		if err != nil {
			return nil, Status(err)
		}
		out, err := s.writeService(ctx, state.Create(svc), svc.Id, "create service "+svc.Spec.Name)
		if retryVIP(err, attempt) {
			continue
		}
		if err != nil {
			return nil, Status(err)
		}
		return &swarmpb.CreateServiceResponse{Service: out}, nil
	}
}

// vipAttempts bounds the writes of one service create or update that
// lose races for VIPs: each lost race means another write won, so n
// concurrent writes to one network all succeed within n attempts.
const vipAttempts = 5

// retryVIP reports whether a service write lost a race for a VIP to
// another write (the store refused it) and may be tried again, with VIPs
// allocated from the state that includes the winner.
func retryVIP(err error, attempt int) bool {
	return attempt+1 < vipAttempts && errors.Is(err, state.ErrVIPConflict)
}

// writeService applies one change to a service and returns the service as
// stored. The write went through this leader, so its store already holds it.
// Its error is a status, except a lost race for a VIP, which is left as
// the store's error (errors.Is state.ErrVIPConflict) for the caller to
// retry; Status turns it into one.
func (s *ControlServer) writeService(ctx context.Context, a *swarmpb.StoreAction, id, what string) (*swarmpb.Service, error) {
	if _, err := s.Raft.Apply(ctx, state.Batch(a)); err != nil {
		if pce := (*state.PortConflictError)(nil); errors.As(err, &pce) {
			// Lost a race for the port to another write.
			return nil, Status(refusedf("%s", pce.Error()))
		}
		if errors.Is(err, state.ErrNoSuchNetwork) {
			// A network was removed since it was resolved.
			return nil, Status(notFoundf("%s: a network it attaches was removed meanwhile; try again", what))
		}
		if vce := (*state.VIPConflictError)(nil); errors.As(err, &vce) {
			return nil, &userError{kind: vipConflict{vce}, msg: fmt.Sprintf("%s: %s; try again", what, vce.Error())}
		}
		return nil, Status(fmt.Errorf("%s: %w", what, err))
	}
	if a.Kind == swarmpb.StoreAction_KIND_CREATE {
		// A resend that raced its first attempt: the store applied the
		// first one's create (with its own ID) and skipped this one.
		if r, ok := s.Store.AppliedRequest(raft.FirstWriteID(raft.RequestID(ctx))); ok && r.ObjectId != "" {
			id = r.ObjectId
		}
	}
	var out *swarmpb.Service
	s.Store.View(func(tx state.ReadTx) { out = tx.GetService(id) })
	if out == nil {
		return nil, Status(notFoundf("service %s was removed meanwhile", id))
	}
	return out, nil
}

// vipConflict classifies a lost VIP race: errors.Is matches both
// state.ErrVIPConflict (to retry) and errRefused (for the status code).
type vipConflict struct{ err *state.VIPConflictError }

func (v vipConflict) Error() string { return v.err.Error() }
func (v vipConflict) Is(target error) bool {
	return target == state.ErrVIPConflict || target == errRefused
}

// lookupService resolves a user's SERVICE argument with a linearizable
// read, returning a status error.
func (s *ControlServer) lookupService(ctx context.Context, ref string) (*swarmpb.Service, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var svc *swarmpb.Service
	var err error
	s.Store.View(func(tx state.ReadTx) { svc, err = findService(tx, ref) })
	if err != nil {
		return nil, Status(err)
	}
	return svc, nil
}

func (s *ControlServer) GetService(ctx context.Context, req *swarmpb.GetServiceRequest) (*swarmpb.GetServiceResponse, error) {
	svc, err := s.lookupService(ctx, req.Service)
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetServiceResponse{Service: svc}, nil
}

// UpdateService replaces a service's spec. The previous spec is kept for
// rollback; a change that affects tasks bumps spec_version, which the
// orchestrator rolls out.
func (s *ControlServer) UpdateService(ctx context.Context, req *swarmpb.UpdateServiceRequest) (*swarmpb.UpdateServiceResponse, error) {
	cur, err := s.lookupService(ctx, req.Service)
	if err != nil {
		return nil, err
	}
	if req.Version != 0 && req.Version != cur.Meta.GetVersion() {
		return nil, Status(&userError{kind: state.ErrConflict, msg: fmt.Sprintf("service %s changed since it was read; try again", cur.Spec.Name)})
	}
	var spec *swarmpb.ServiceSpec
	imageNode := req.ImageNodeId
	switch {
	case req.Rollback:
		if cur.PreviousSpec == nil {
			return nil, Status(refusedf("service %s has no previous spec to roll back to", cur.Spec.Name))
		}
		spec = proto.Clone(cur.PreviousSpec).(*swarmpb.ServiceSpec)
	case req.Spec != nil:
		spec = proto.Clone(req.Spec).(*swarmpb.ServiceSpec)
		clearStaleImageID(cur.Spec, spec) // images.go
		imageNode = settleImagePin(cur.Spec, spec, req.Force, imageNode)
	default:
		spec = proto.Clone(cur.Spec).(*swarmpb.ServiceSpec)
	}
	if spec.Name != cur.Spec.Name {
		return nil, Status(invalidf("a service cannot be renamed (%s to %s)", cur.Spec.Name, spec.Name))
	}
	if spec.Mode != cur.Spec.Mode {
		return nil, Status(invalidf("service %s: the mode cannot change after creation", cur.Spec.Name))
	}
	if err := s.validateServiceSpec(spec); err != nil {
		return nil, err
	}
	if err := s.resolveDataRefs(spec); err != nil { // secrets.go
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		next := proto.Clone(cur).(*swarmpb.Service)
		spec := proto.Clone(spec).(*swarmpb.ServiceSpec)
		s.Store.View(func(tx state.ReadTx) {
			if err = checkPorts(tx, cur.Id, spec); err != nil {
				return
			}
			if err = resolveNetworks(tx, cur.Id, spec); err != nil {
				return
			}
			next.VirtualIps, err = allocateVIPs(tx, cur.Id, spec, cur.VirtualIps)
		})
		if err != nil {
			return nil, Status(err)
		}
		changed := !proto.Equal(spec, cur.Spec)
		if changed {
			next.PreviousSpec = proto.Clone(cur.Spec).(*swarmpb.ServiceSpec)
		}
		next.Spec = spec
		s.Store.View(func(tx state.ReadTx) {
			next.ImageOrigins = imageOrigins(tx, cur.ImageOrigins, next.Spec, next.PreviousSpec, imageNode) // images.go
		})
		// A change of networks or aliases is a change of the spec's
		// networks field, so tasksAffected rolls the tasks for it.
		if req.Force || tasksAffected(cur.Spec, spec) {
			next.SpecVersion++
			phase := swarmpb.UpdateState_UPDATE_STATE_UPDATING
			if req.Rollback {
				phase = swarmpb.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
			}
			next.UpdateStatus = swarmpb.NewUpdateStatus(phase)
		}
		if !changed && next.SpecVersion == cur.SpecVersion && proto.Equal(next, cur) {
			return &swarmpb.UpdateServiceResponse{Service: cur}, nil
		}
		out, err := s.writeService(ctx, state.Update(next), cur.Id, "update service "+cur.Spec.Name)
		if retryVIP(err, attempt) {
			continue
		}
		if err != nil {
			return nil, Status(err)
		}
		return &swarmpb.UpdateServiceResponse{Service: out}, nil
	}
}

// ListServices returns one page of services in ID order (see paging.go)
// with their running and desired task counts.
func (s *ControlServer) ListServices(ctx context.Context, req *swarmpb.ListServicesRequest) (*swarmpb.ListServicesResponse, error) {
	size, after, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, Status(err)
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	resp := &swarmpb.ListServicesResponse{}
	s.Store.View(func(tx state.ReadTx) {
		svcs := tx.ServicesPage(after, size+1)
		pg := pager{limit: size}
		for _, svc := range svcs {
			info := &swarmpb.ServiceInfo{Service: svc, Desired: svc.Spec.Replicas}
			if !pg.fits(proto.Size(info) + 60) { // + the counts below
				break
			}
			var desired uint64
			for _, t := range tx.TasksByServiceUnordered(svc.Id) {
				info.Total++
				running := t.Status.GetState() == swarmpb.TaskState_TASK_STATE_RUNNING
				if running {
					info.RunningAny++
				}
				if t.DesiredState <= swarmpb.TaskState_TASK_STATE_RUNNING {
					info.Live++
				}
				if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING {
					desired++
					if running {
						info.Running++
						if t.SpecVersion == svc.SpecVersion {
							info.RunningCurrent++
						}
					}
				}
			}
			if svc.Spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
				info.Desired = desired
			}
			resp.Services = append(resp.Services, info)
		}
		if len(resp.Services) > 0 {
			resp.NextPageToken = pg.next(len(svcs), resp.Services[len(resp.Services)-1].Service.Id)
		}
	})
	return resp, nil
}

// RemoveService deletes the service; the orchestrator then shuts its tasks
// down and the agents remove their containers.
func (s *ControlServer) RemoveService(ctx context.Context, req *swarmpb.RemoveServiceRequest) (*swarmpb.RemoveServiceResponse, error) {
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		return &swarmpb.RemoveServiceResponse{}, err
	}
	svc, err := s.lookupService(ctx, req.Service)
	if err != nil {
		return nil, err
	}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Delete(svc))); err != nil {
		return nil, Status(fmt.Errorf("remove service %s: %w", svc.Spec.Name, err))
	}
	return &swarmpb.RemoveServiceResponse{}, nil
}

// ListTasks returns one page of the selected tasks in ID order (see
// paging.go), with the hostnames of the nodes they are on.
func (s *ControlServer) ListTasks(ctx context.Context, req *swarmpb.ListTasksRequest) (*swarmpb.ListTasksResponse, error) {
	size, after, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, Status(err)
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	resp := &swarmpb.ListTasksResponse{NodeNames: map[string]string{}}
	s.Store.View(func(tx state.ReadTx) {
		var q state.TaskQuery
		if req.Node != "" {
			n, nerr := findNode(tx, req.Node)
			if nerr != nil {
				err = nerr
				return
			}
			q.ByNode, q.NodeID = true, n.Id
		}
		for _, ref := range req.Services {
			svc, serr := findService(tx, ref)
			if serr != nil {
				err = serr
				return
			}
			q.ServiceIDs = append(q.ServiceIDs, svc.Id)
		}
		tasks := tx.TasksPage(q, after, size+1)
		pg := pager{limit: size}
		for _, t := range tasks {
			sz := proto.Size(t)
			var name string
			_, named := resp.NodeNames[t.NodeId]
			if n := tx.GetNode(t.NodeId); n != nil && !named {
				name = hostname(n)
				sz += len(t.NodeId) + len(name) + 8
			}
			if !pg.fits(sz) {
				break
			}
			resp.Tasks = append(resp.Tasks, t)
			if name != "" {
				resp.NodeNames[t.NodeId] = name
			}
		}
		if len(resp.Tasks) > 0 {
			resp.NextPageToken = pg.next(len(tasks), resp.Tasks[len(resp.Tasks)-1].Id)
		}
	})
	if err != nil {
		return nil, Status(err)
	}
	return resp, nil
}
