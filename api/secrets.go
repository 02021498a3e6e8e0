package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/raftswarm/raftswarm/internal/clock"
	"slices"
	"sort"
	"strings"

	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// Secrets and configs share everything but their types: the code below
// works on dataObj, a neutral copy of either, and a dataKind says how to
// read and build the stored type. Contents never leave the managers
// through Control: every answer is redacted (DataVersion.data cleared);
// only the dispatcher sends contents, to the nodes whose tasks use them
// (sessions_data.go).

// dataUpdateRetries bounds the re-reads of an update that conflicted with
// another write (a service changed meanwhile).
const dataUpdateRetries = 5

// dataObj is a secret or config, kind-neutral.
type dataObj struct {
	id       string
	meta     *swarmpb.Meta
	name     string
	labels   map[string]string
	version  uint64
	versions []*swarmpb.DataVersion
}

// dataRef points into one secret or config reference of a container spec.
type dataRef struct {
	id, name *string
	version  *uint64
}

// dataKind is how the shared code reads, builds and finds references to
// one kind of object.
type dataKind struct {
	noun   string // "secret" or "config"
	get    func(tx state.ReadTx, id string) *dataObj
	byName func(tx state.ReadTx, name string) *dataObj
	list   func(tx state.ReadTx) []*dataObj
	object func(o *dataObj) proto.Message // the stored type, for store actions
	refs   func(c *swarmpb.ContainerSpec) []dataRef
}

func secretObj(s *swarmpb.Secret) *dataObj {
	if s == nil {
		return nil
	}
	return &dataObj{id: s.Id, meta: s.Meta, name: s.Name, labels: s.Labels, version: s.Version, versions: s.Versions}
}

func configObj(c *swarmpb.Config) *dataObj {
	if c == nil {
		return nil
	}
	return &dataObj{id: c.Id, meta: c.Meta, name: c.Name, labels: c.Labels, version: c.Version, versions: c.Versions}
}

func objs[T any](in []T, conv func(T) *dataObj) []*dataObj {
	out := make([]*dataObj, len(in))
	for i, o := range in {
		out[i] = conv(o)
	}
	return out
}

var secretKind = &dataKind{
	noun:   "secret",
	get:    func(tx state.ReadTx, id string) *dataObj { return secretObj(tx.GetSecret(id)) },
	byName: func(tx state.ReadTx, n string) *dataObj { return secretObj(tx.GetSecretByName(n)) },
	list:   func(tx state.ReadTx) []*dataObj { return objs(tx.ListSecrets(), secretObj) },
	object: func(o *dataObj) proto.Message {
		return &swarmpb.Secret{Id: o.id, Meta: o.meta, Name: o.name, Labels: o.labels, Version: o.version, Versions: o.versions}
	},
	refs: func(c *swarmpb.ContainerSpec) []dataRef {
		out := make([]dataRef, 0, len(c.GetSecrets()))
		for _, r := range c.GetSecrets() {
			out = append(out, dataRef{&r.SecretId, &r.SecretName, &r.Version})
		}
		return out
	},
}

var configKind = &dataKind{
	noun:   "config",
	get:    func(tx state.ReadTx, id string) *dataObj { return configObj(tx.GetConfig(id)) },
	byName: func(tx state.ReadTx, n string) *dataObj { return configObj(tx.GetConfigByName(n)) },
	list:   func(tx state.ReadTx) []*dataObj { return objs(tx.ListConfigs(), configObj) },
	object: func(o *dataObj) proto.Message {
		return &swarmpb.Config{Id: o.id, Meta: o.meta, Name: o.name, Labels: o.labels, Version: o.version, Versions: o.versions}
	},
	refs: func(c *swarmpb.ContainerSpec) []dataRef {
		out := make([]dataRef, 0, len(c.GetConfigs()))
		for _, r := range c.GetConfigs() {
			out = append(out, dataRef{&r.ConfigId, &r.ConfigName, &r.Version})
		}
		return out
	},
}

// redact returns a copy of o without any content, for answers.
func redact(o *dataObj) *dataObj {
	c := *o
	c.versions = make([]*swarmpb.DataVersion, len(o.versions))
	for i, v := range o.versions {
		c.versions[i] = &swarmpb.DataVersion{Version: v.Version, Sha256: v.Sha256, CreatedAt: v.CreatedAt}
	}
	return &c
}

func (o *dataObj) find(version uint64) *swarmpb.DataVersion {
	for _, v := range o.versions {
		if v.Version == version {
			return v
		}
	}
	return nil
}

func newVersion(v uint64, data []byte) *swarmpb.DataVersion {
	sum := sha256.Sum256(data)
	return &swarmpb.DataVersion{Version: v, Data: slices.Clone(data), Sha256: hex.EncodeToString(sum[:]), CreatedAt: clock.Now().UnixNano()}
}

// findData resolves an ID, name or unique ID prefix.
func (k *dataKind) findData(tx state.ReadTx, ref string) (*dataObj, error) {
	if ref == "" {
		return nil, invalidf("a %s name or ID is required", k.noun)
	}
	if o := k.get(tx, ref); o != nil {
		return o, nil
	}
	if o := k.byName(tx, ref); o != nil {
		return o, nil
	}
	var match []*dataObj
	for _, o := range k.list(tx) {
		if strings.HasPrefix(o.id, ref) {
			match = append(match, o)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, notFoundf("%s %s not found", k.noun, ref)
	}
	return nil, invalidf("%s %q is ambiguous: %d %s IDs start with it", k.noun, ref, len(match), k.noun)
}

// specUses reports whether a service spec references the object id.
func (k *dataKind) specUses(sp *swarmpb.ServiceSpec, id string) bool {
	for _, r := range k.refs(sp.GetContainer()) {
		if *r.id == id {
			return true
		}
	}
	return false
}

// usedBy returns the sorted names of the services whose spec references
// id, and whether any task that has not ended still does (a service being
// rolled away from it, or removed, still has such tasks).
func (k *dataKind) usedBy(tx state.ReadTx, id string) (services []string, tasks bool) {
	for _, svc := range tx.ListServices() {
		if k.specUses(svc.Spec, id) {
			services = append(services, svc.Spec.GetName())
		}
	}
	for _, t := range tx.ListTasks() {
		if t.GetStatus().GetState() < swarmpb.TaskState_TASK_STATE_COMPLETE && k.specUses(t.GetSpec(), id) {
			tasks = true
			break
		}
	}
	sort.Strings(services)
	return services, tasks
}

// keptVersions returns the versions of o still referenced by a service's
// spec or previous spec (services, which may be the batch being written,
// replace the stored ones by ID) or by a task that has not ended, plus
// the current one.
func (k *dataKind) keptVersions(tx state.ReadTx, o *dataObj, services map[string]*swarmpb.Service) []*swarmpb.DataVersion {
	used := map[uint64]bool{o.version: true}
	mark := func(sp *swarmpb.ServiceSpec) {
		for _, r := range k.refs(sp.GetContainer()) {
			if *r.id == o.id {
				used[*r.version] = true
			}
		}
	}
	for _, svc := range tx.ListServices() {
		if n := services[svc.Id]; n != nil {
			svc = n
		}
		mark(svc.Spec)
		mark(svc.PreviousSpec)
	}
	for _, t := range tx.ListTasks() {
		if t.GetStatus().GetState() < swarmpb.TaskState_TASK_STATE_COMPLETE {
			mark(t.GetSpec())
		}
	}
	var out []*swarmpb.DataVersion
	for _, v := range o.versions {
		if used[v.Version] {
			out = append(out, v)
		}
	}
	return out
}

// resolveRefs fills every reference of kind k in a service spec: the
// object's ID and name, and the version (0: the current one). It fails on
// an object that does not exist or a version no longer kept.
func (k *dataKind) resolveRefs(tx state.ReadTx, sp *swarmpb.ServiceSpec) error {
	for _, r := range k.refs(sp.GetContainer()) {
		var o *dataObj
		if *r.id != "" {
			o = k.get(tx, *r.id)
		}
		if o == nil && *r.name != "" {
			o = k.byName(tx, *r.name)
		}
		if o == nil {
			ref := *r.name
			if ref == "" {
				ref = *r.id
			}
			return notFoundf("%s %s not found: create it first with 'swarmctl %s create %s FILE'", k.noun, ref, k.noun, ref)
		}
		*r.id, *r.name = o.id, o.name
		if *r.version == 0 {
			*r.version = o.version
		} else if o.find(*r.version) == nil {
			return invalidf("%s %s has no version %d any more (current: %d)", k.noun, o.name, *r.version, o.version)
		}
	}
	return nil
}

// resolveDataRefs resolves a service spec's secret and config references
// against the store (see resolveRefs). CreateService and UpdateService
// call it after validating the spec.
func (s *ControlServer) resolveDataRefs(sp *swarmpb.ServiceSpec) error {
	var err error
	s.Store.View(func(tx state.ReadTx) {
		if err = secretKind.resolveRefs(tx, sp); err == nil {
			err = configKind.resolveRefs(tx, sp)
		}
	})
	if err != nil {
		return Status(err)
	}
	return nil
}

func (s *ControlServer) createData(ctx context.Context, k *dataKind, name string, labels map[string]string, data []byte) (*dataObj, error) {
	if err := spec.ValidateDataObject(k.noun, name, labels, data); err != nil {
		return nil, Status(invalidf("%v", err))
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var exists bool
	s.Store.View(func(tx state.ReadTx) { exists = k.byName(tx, name) != nil })
	if exists {
		return nil, Status(&userError{kind: state.ErrNameConflict, msg: fmt.Sprintf("%s %s already exists", k.noun, name)})
	}
	o := &dataObj{id: identity.NewID(), name: name, labels: labels, version: 1, versions: []*swarmpb.DataVersion{newVersion(1, data)}}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Create(k.object(o)))); err != nil {
		if errors.Is(err, state.ErrNameConflict) {
			return nil, Status(&userError{kind: state.ErrNameConflict, msg: fmt.Sprintf("%s %s already exists", k.noun, name)})
		}
		return nil, Status(fmt.Errorf("create %s %s: %w", k.noun, name, err))
	}
	var out *dataObj
	s.Store.View(func(tx state.ReadTx) { out = k.get(tx, o.id) })
	if out == nil {
		return nil, Status(notFoundf("%s %s was removed meanwhile", k.noun, name))
	}
	return redact(out), nil
}

func (s *ControlServer) getData(ctx context.Context, k *dataKind, ref string) (*dataObj, []string, error) {
	if err := s.read(ctx); err != nil {
		return nil, nil, err
	}
	var o *dataObj
	var services []string
	var err error
	s.Store.View(func(tx state.ReadTx) {
		if o, err = k.findData(tx, ref); err == nil {
			services, _ = k.usedBy(tx, o.id)
		}
	})
	if err != nil {
		return nil, nil, Status(err)
	}
	return redact(o), services, nil
}

func (s *ControlServer) listData(ctx context.Context, k *dataKind, pageSize int32, token string) ([]*dataObj, string, error) {
	size, after, err := pageArgs(pageSize, token)
	if err != nil {
		return nil, "", Status(err)
	}
	if err := s.read(ctx); err != nil {
		return nil, "", err
	}
	var all []*dataObj
	s.Store.View(func(tx state.ReadTx) { all = k.list(tx) }) // in ID order
	var out []*dataObj
	pg := pager{limit: size}
	read := 0
	for _, o := range all {
		if o.id <= after {
			continue
		}
		read++
		r := redact(o)
		if !pg.fits(proto.Size(k.object(r))) {
			break
		}
		out = append(out, r)
	}
	next := ""
	if len(out) > 0 {
		next = pg.next(read, out[len(out)-1].id)
	}
	return out, next, nil
}

// updateData replaces the content (a new version) and/or the labels. Every
// service whose spec references the object is updated in the same Raft
// entry to mount the new version, as UpdateService would update it: the
// old spec becomes previous_spec (so a rollback returns to the old
// content), spec_version is bumped and the update starts, which the
// orchestrator rolls with the service's update settings. Versions no
// longer referenced by any service or unfinished task are dropped.
func (s *ControlServer) updateData(ctx context.Context, k *dataKind, ref string, data []byte, setLabels bool, labels map[string]string) (*dataObj, []string, error) {
	if len(data) == 0 && !setLabels {
		return nil, nil, Status(invalidf("nothing to update: give the %s's new content", k.noun))
	}
	if len(data) > 0 {
		if err := spec.ValidateData(k.noun, data); err != nil {
			return nil, nil, Status(invalidf("%v", err))
		}
	}
	if setLabels {
		if err := spec.ValidateLabels(k.noun+" label", labels); err != nil {
			return nil, nil, Status(invalidf("%v", err))
		}
	}
	if err := s.read(ctx); err != nil {
		return nil, nil, err
	}
	var nv *swarmpb.DataVersion
	if len(data) > 0 {
		nv = newVersion(0, data)
	}
	var lastErr error
	for range dataUpdateRetries {
		var (
			actions []*swarmpb.StoreAction
			rolled  []string
			id      string
			err     error
		)
		s.Store.View(func(tx state.ReadTx) {
			var cur *dataObj
			if cur, err = k.findData(tx, ref); err != nil {
				return
			}
			id = cur.id
			next := *cur
			if setLabels {
				next.labels = labels
			}
			changed := map[string]*swarmpb.Service{}
			if nv != nil && (cur.find(cur.version) == nil || cur.find(cur.version).Sha256 != nv.Sha256) {
				v := proto.Clone(nv).(*swarmpb.DataVersion)
				for _, old := range cur.versions {
					v.Version = max(v.Version, old.Version)
				}
				v.Version = max(v.Version, cur.version) + 1
				next.version = v.Version
				next.versions = append(slices.Clone(cur.versions), v)
				for _, svc := range tx.ListServices() {
					if !k.specUses(svc.Spec, cur.id) {
						continue
					}
					n := proto.Clone(svc).(*swarmpb.Service)
					n.PreviousSpec = proto.Clone(svc.Spec).(*swarmpb.ServiceSpec)
					for _, r := range k.refs(n.Spec.GetContainer()) {
						if *r.id == cur.id {
							*r.version = v.Version
						}
					}
					n.SpecVersion++
					n.UpdateStatus = swarmpb.NewUpdateStatus(swarmpb.UpdateState_UPDATE_STATE_UPDATING)
					changed[n.Id] = n
					rolled = append(rolled, n.Spec.GetName())
				}
				next.versions = k.keptVersions(tx, &next, changed)
			} else if !setLabels {
				return // same content: nothing to do
			}
			actions = append(actions, state.Update(k.object(&next)))
			ids := make([]string, 0, len(changed))
			for sid := range changed {
				ids = append(ids, sid)
			}
			sort.Strings(ids)
			for _, sid := range ids {
				actions = append(actions, state.Update(changed[sid]))
			}
		})
		if err != nil {
			return nil, nil, Status(err)
		}
		if len(actions) > 0 {
			_, err = s.Raft.Apply(ctx, state.Batch(actions...))
			if errors.Is(err, state.ErrConflict) {
				lastErr = err
				continue
			}
			if err != nil {
				return nil, nil, Status(fmt.Errorf("update %s %s: %w", k.noun, ref, err))
			}
		}
		var out *dataObj
		s.Store.View(func(tx state.ReadTx) { out = k.get(tx, id) })
		if out == nil {
			return nil, nil, Status(notFoundf("%s %s was removed meanwhile", k.noun, ref))
		}
		sort.Strings(rolled)
		return redact(out), rolled, nil
	}
	return nil, nil, Status(fmt.Errorf("update %s %s: the services using it kept changing; try again: %w", k.noun, ref, lastErr))
}

// removeData deletes an object no service and no unfinished task uses.
func (s *ControlServer) removeData(ctx context.Context, k *dataKind, ref string) error {
	if err := s.read(ctx); err != nil {
		return err
	}
	var o *dataObj
	var services []string
	var tasks bool
	var err error
	s.Store.View(func(tx state.ReadTx) {
		if o, err = k.findData(tx, ref); err == nil {
			services, tasks = k.usedBy(tx, o.id)
		}
	})
	if err != nil {
		return Status(err)
	}
	switch {
	case len(services) > 0:
		return Status(refusedf("%s %s is in use by service(s) %s: remove it from them first (service update --%s-rm %s)",
			k.noun, o.name, strings.Join(services, ", "), k.noun, o.name))
	case tasks:
		return Status(refusedf("%s %s is still used by tasks that are shutting down: try again once they have stopped", k.noun, o.name))
	}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Delete(k.object(o)))); err != nil {
		return Status(fmt.Errorf("remove %s %s: %w", k.noun, o.name, err))
	}
	return nil
}

// ---------------------------------------------------------------- secrets

func toSecret(o *dataObj) *swarmpb.Secret { return secretKind.object(o).(*swarmpb.Secret) }

// CreateSecret stores a new secret (version 1) and returns its metadata.
func (s *ControlServer) CreateSecret(ctx context.Context, req *swarmpb.CreateSecretRequest) (*swarmpb.CreateSecretResponse, error) {
	o, err := s.createData(ctx, secretKind, req.GetName(), req.GetLabels(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &swarmpb.CreateSecretResponse{Secret: toSecret(o)}, nil
}

// GetSecret returns a secret's metadata (never its content) and the
// services using it.
func (s *ControlServer) GetSecret(ctx context.Context, req *swarmpb.GetSecretRequest) (*swarmpb.GetSecretResponse, error) {
	o, services, err := s.getData(ctx, secretKind, req.GetSecret())
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetSecretResponse{Secret: toSecret(o), Services: services}, nil
}

// ListSecrets returns one page of secrets' metadata in ID order.
func (s *ControlServer) ListSecrets(ctx context.Context, req *swarmpb.ListSecretsRequest) (*swarmpb.ListSecretsResponse, error) {
	list, next, err := s.listData(ctx, secretKind, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &swarmpb.ListSecretsResponse{NextPageToken: next}
	for _, o := range list {
		resp.Secrets = append(resp.Secrets, toSecret(o))
	}
	return resp, nil
}

// UpdateSecret stores a new content and rolls the services using it (see
// updateData).
func (s *ControlServer) UpdateSecret(ctx context.Context, req *swarmpb.UpdateSecretRequest) (*swarmpb.UpdateSecretResponse, error) {
	o, rolled, err := s.updateData(ctx, secretKind, req.GetSecret(), req.GetData(), req.GetSetLabels(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	return &swarmpb.UpdateSecretResponse{Secret: toSecret(o), Services: rolled}, nil
}

// RemoveSecret deletes a secret no service uses.
func (s *ControlServer) RemoveSecret(ctx context.Context, req *swarmpb.RemoveSecretRequest) (*swarmpb.RemoveSecretResponse, error) {
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		return &swarmpb.RemoveSecretResponse{}, err
	}
	if err := s.removeData(ctx, secretKind, req.GetSecret()); err != nil {
		return nil, err
	}
	return &swarmpb.RemoveSecretResponse{}, nil
}
