package stack

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	specrules "github.com/raftswarm/raftswarm/spec"
)

// Defaults a service gets when its Compose file says nothing, the same as
// `service create`'s.
const (
	defaultRestartDelay = 5 * time.Second
	defaultMonitor      = 5 * time.Second
)

// converter carries what converting one project needs.
type converter struct {
	stack    string
	project  *types.Project
	warnings []string
	networks map[string]string // key -> cluster name
	volumes  map[string]Volume
	secrets  map[string]string
	configs  map[string]string
}

func (c *converter) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// Convert maps a loaded project to what deploying it as stack creates.
// It reads secret and config files; it never talks to the cluster, so
// whether external objects exist is for the deployer to check.
func Convert(p *Project, stack string) (*Plan, error) {
	if err := ValidateName(stack); err != nil {
		return nil, err
	}
	c := &converter{
		stack: stack, project: p.Project,
		networks: map[string]string{}, volumes: map[string]Volume{},
		secrets: map[string]string{}, configs: map[string]string{},
	}
	c.warnings = append(c.warnings, p.Warnings...)
	plan := &Plan{Stack: stack}

	// Networks: those the services use (as Docker's stack deploy, which
	// creates no unused network), STACK_default for services naming none.
	used := map[string]bool{}
	for _, s := range p.Services {
		if len(s.Networks) == 0 && s.NetworkMode == "" {
			used["default"] = true
		}
		for k := range s.Networks {
			used[k] = true
		}
	}
	for _, key := range sortedKeys(p.Networks) {
		if !used[key] {
			continue
		}
		nw, err := c.network(key, p.Networks[key])
		if err != nil {
			return nil, err
		}
		c.networks[key] = nw.Name
		plan.Networks = append(plan.Networks, nw)
	}
	if _, declared := c.networks["default"]; used["default"] && !declared {
		name := c.scoped("default")
		c.networks["default"] = name
		plan.Networks = append(plan.Networks, Network{Key: "default", Name: name,
			Spec: &swarmpb.NetworkSpec{Name: name, Labels: c.labels(nil), Driver: "overlay"}})
	}

	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		vol := Volume{Key: key, Name: c.objectName(key, v.Name, bool(v.External)), External: bool(v.External)}
		if !vol.External {
			vol.Driver = v.Driver
			vol.Options = maps.Clone(map[string]string(v.DriverOpts))
			vol.Labels = c.labels(v.Labels)
		}
		c.volumes[key] = vol
		plan.Volumes = append(plan.Volumes, vol)
	}

	for _, key := range sortedKeys(p.Secrets) {
		d, err := c.data("secrets", key, types.FileObjectConfig(p.Secrets[key]))
		if err != nil {
			return nil, err
		}
		c.secrets[key] = d.Name
		plan.Secrets = append(plan.Secrets, d)
	}
	for _, key := range sortedKeys(p.Configs) {
		d, err := c.data("configs", key, types.FileObjectConfig(p.Configs[key]))
		if err != nil {
			return nil, err
		}
		c.configs[key] = d.Name
		plan.Configs = append(plan.Configs, d)
	}

	services := map[string]Service{}
	for _, key := range sortedKeys(p.Services) {
		s, err := c.service(p.Services[key])
		if err != nil {
			return nil, err
		}
		services[key] = s
	}
	order, err := dependencyOrder(services)
	if err != nil {
		return nil, fmt.Errorf("compose file %s: %v", strings.Join(p.ComposeFiles, ", "), err)
	}
	for _, key := range order {
		plan.Services = append(plan.Services, services[key])
	}
	// compose-go reports unsupported keys; Convert adds what only the
	// values tell (endpoint_mode dnsrr, bind propagation): each once.
	seen := map[string]bool{}
	for _, w := range c.warnings {
		if !seen[w] {
			seen[w] = true
			plan.Warnings = append(plan.Warnings, w)
		}
	}
	return plan, nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

// scoped is STACK_KEY.
func (c *converter) scoped(key string) string { return c.stack + "_" + key }

// objectName is the cluster name of a network, volume, secret or config:
// STACK_KEY unless the file names it (name:) or it is external.
func (c *converter) objectName(key, name string, external bool) string {
	switch {
	case external && name != "":
		return name
	case external:
		return key
	case name == "" || name == c.project.Name+"_"+key:
		// compose-go names what the file does not as PROJECT_KEY.
		return c.scoped(key)
	default:
		return name
	}
}

// labels adds the namespace label to a copy of l.
func (c *converter) labels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	out[NamespaceLabel] = c.stack
	return out
}

func (c *converter) network(key string, n types.NetworkConfig) (Network, error) {
	nw := Network{Key: key, Name: c.objectName(key, n.Name, bool(n.External)), External: bool(n.External)}
	if nw.External {
		return nw, nil
	}
	spec := &swarmpb.NetworkSpec{Name: nw.Name, Labels: c.labels(n.Labels), Driver: n.Driver, Internal: n.Internal}
	nw.Spec = spec
	if spec.Driver == "" {
		spec.Driver = "overlay"
	}
	if spec.Driver != "overlay" && spec.Driver != "bridge" {
		return nw, fmt.Errorf("networks.%s.driver: %q is not supported: use overlay (or bridge); both mean the cluster's data path", key, n.Driver)
	}
	for i, pool := range n.Ipam.Config {
		if pool == nil {
			continue
		}
		if i > 0 {
			c.warn("network %s: only the first ipam.config subnet is used", key)
			break
		}
		spec.Subnet = pool.Subnet
	}
	return nw, nil
}

// data reads a secret's or config's content.
func (c *converter) data(kind, key string, f types.FileObjectConfig) (Data, error) {
	d := Data{Key: key, Name: c.objectName(key, f.Name, bool(f.External)), External: bool(f.External)}
	if d.External {
		return d, nil
	}
	d.Labels = c.labels(f.Labels)
	switch {
	case f.File != "":
		b, err := os.ReadFile(absUnder(c.project.WorkingDir, f.File))
		if err != nil {
			return d, fmt.Errorf("%s.%s.file: cannot read %s: %v", kind, key, f.File, unwrapPathErr(err))
		}
		d.Content = b
	case f.Environment != "":
		v, ok := c.project.Environment[f.Environment]
		if !ok {
			return d, fmt.Errorf("%s.%s.environment: variable %s is not set", kind, key, f.Environment)
		}
		d.Content = []byte(v)
	case f.Content != "":
		d.Content = []byte(f.Content)
	default:
		return d, fmt.Errorf("%s.%s: give file, environment, content or external: true", kind, key)
	}
	return d, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// service converts one service; errors name the service's key.
func (c *converter) service(s types.ServiceConfig) (Service, error) {
	out, err := c.serviceSpec(s)
	if err != nil {
		return out, fmt.Errorf("services.%s.%v", s.Name, err)
	}
	if err := specrules.ValidateServiceSpec(out.Spec, 0); err != nil {
		return out, fmt.Errorf("services.%s: %v", s.Name, err)
	}
	return out, nil
}

func durNs(d *types.Duration) int64 {
	if d == nil {
		return 0
	}
	return int64(*d)
}

// serviceSpec maps the keys of one service. Errors start with the key
// below services.NAME.
func (c *converter) serviceSpec(s types.ServiceConfig) (Service, error) {
	name := c.scoped(s.Name)
	spec := &swarmpb.ServiceSpec{
		Name:      name,
		Labels:    c.labels(nil),
		Container: &swarmpb.ContainerSpec{},
		Mode:      swarmpb.ServiceMode_SERVICE_MODE_REPLICATED,
		Replicas:  1,
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY, DelayNs: int64(defaultRestartDelay)},
		Update:    defaultUpdate(),
		Rollback:  defaultUpdate(),
	}
	out := Service{Key: s.Name, Spec: spec}
	ct := spec.Container
	ct.Image = s.Image
	if s.Build != nil {
		tag := s.Image
		if tag == "" {
			tag = strings.ToLower(name)
		}
		ct.Image = tag
		b := &Build{Context: absUnder(c.project.WorkingDir, s.Build.Context), Dockerfile: s.Build.Dockerfile,
			Args: map[string]*string(s.Build.Args), Target: s.Build.Target, Labels: maps.Clone(map[string]string(s.Build.Labels)), Tag: tag}
		if b.Context == "" {
			b.Context = c.project.WorkingDir
		}
		if s.Build.DockerfileInline != "" {
			return out, fmt.Errorf("build.dockerfile_inline: not supported: put the Dockerfile in the build context")
		}
		out.Build = b
	}
	if ct.Image == "" {
		return out, fmt.Errorf("image: is required (or build:)")
	}
	ct.Command = slices.Clone([]string(s.Entrypoint))
	ct.Args = slices.Clone([]string(s.Command))
	for _, k := range sortedKeys(s.Environment) {
		v := s.Environment[k]
		if v == nil {
			// KEY alone, unset in the environment: Compose leaves it out.
			continue
		}
		ct.Env = append(ct.Env, k+"="+*v)
	}
	ct.Labels = c.labels(s.Labels)
	ct.Dir = s.WorkingDir
	ct.User = s.User
	ct.Hostname = s.Hostname
	ct.StopGracePeriodNs = durNs(s.StopGracePeriod)
	if h := s.HealthCheck; h != nil {
		hc := &swarmpb.HealthConfig{Test: slices.Clone([]string(h.Test)), IntervalNs: durNs(h.Interval),
			TimeoutNs: durNs(h.Timeout), StartPeriodNs: durNs(h.StartPeriod)}
		if h.Retries != nil {
			if *h.Retries > math.MaxInt32 {
				return out, fmt.Errorf("healthcheck.retries: %d is too large", *h.Retries)
			}
			hc.Retries = int32(*h.Retries)
		}
		if h.Disable {
			hc = &swarmpb.HealthConfig{Test: []string{"NONE"}}
		}
		ct.Healthcheck = hc
	}
	ct.Tty, ct.OpenStdin, ct.ReadOnly, ct.StopSignal = s.Tty, s.StdinOpen, s.ReadOnly, s.StopSignal
	ct.Init = s.Init != nil && *s.Init
	ct.CapAdd, ct.CapDrop = slices.Clone(s.CapAdd), slices.Clone(s.CapDrop)
	ct.Sysctls = maps.Clone(map[string]string(s.Sysctls))
	ct.GroupAdd = slices.Clone(s.GroupAdd)
	for _, name := range sortedKeys(s.Ulimits) {
		u := s.Ulimits[name]
		soft, hard := int64(u.Soft), int64(u.Hard)
		if u.Single != 0 {
			soft, hard = int64(u.Single), int64(u.Single)
		}
		ct.Ulimits = append(ct.Ulimits, &swarmpb.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	ct.ExtraHosts = s.ExtraHosts.AsList(":")
	sort.Strings(ct.ExtraHosts)
	if err := c.mounts(s, ct); err != nil {
		return out, err
	}
	if err := c.references(s, ct); err != nil {
		return out, err
	}
	if err := c.ports(s, spec); err != nil {
		return out, err
	}
	if err := c.deploy(s, spec); err != nil {
		return out, err
	}
	if s.NetworkMode != "" {
		return out, fmt.Errorf("network_mode: not supported: use networks:")
	}
	nets := s.NetworksByPriority()
	if len(nets) == 0 {
		nets = []string{"default"}
	}
	for _, key := range nets {
		nname, ok := c.networks[key]
		if !ok {
			return out, fmt.Errorf("networks.%s: the network is not declared under the top-level networks:", key)
		}
		att := &swarmpb.NetworkAttachmentConfig{Target: nname}
		aliases := []string{s.Name}
		if cfg := s.Networks[key]; cfg != nil {
			for _, a := range cfg.Aliases {
				if !slices.Contains(aliases, a) {
					aliases = append(aliases, a)
				}
			}
		}
		att.Aliases = aliases
		spec.Networks = append(spec.Networks, att)
	}
	for _, dep := range sortedKeys(s.DependsOn) {
		d := s.DependsOn[dep]
		cond := Condition(d.Condition)
		switch cond {
		case "":
			cond = ServiceStarted
		case ServiceStarted, ServiceHealthy, ServiceCompletedSuccessfully:
		default:
			return out, fmt.Errorf("depends_on.%s.condition: %q is unknown: use service_started, service_healthy or service_completed_successfully", dep, d.Condition)
		}
		out.DependsOn = append(out.DependsOn, Dependency{Service: c.scoped(dep), Key: dep, Condition: cond})
	}
	return out, nil
}

func defaultUpdate() *swarmpb.UpdateConfig {
	return &swarmpb.UpdateConfig{
		Parallelism:   1,
		FailureAction: "pause",
		MonitorNs:     int64(defaultMonitor),
		Order:         "stop-first",
	}
}

func (c *converter) mounts(s types.ServiceConfig, ct *swarmpb.ContainerSpec) error {
	for i, v := range s.Volumes {
		m := &swarmpb.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeBind:
			m.Type = swarmpb.Mount_TYPE_BIND
			m.Source = absUnder(c.project.WorkingDir, v.Source)
			if v.Bind != nil && (v.Bind.Propagation != "" || v.Bind.SELinux != "") {
				c.warn("service %s: key volumes[%d].bind (propagation, selinux) is not supported by the cluster and is ignored", s.Name, i)
			}
		case types.VolumeTypeVolume:
			m.Type = swarmpb.Mount_TYPE_VOLUME
			if v.Source != "" {
				vol, ok := c.volumes[v.Source]
				if !ok {
					return fmt.Errorf("volumes[%d].source: volume %s is not declared under the top-level volumes:", i, v.Source)
				}
				m.Source = vol.Name
				m.VolumeDriver = vol.Driver
				m.VolumeOptions = maps.Clone(vol.Options)
				m.VolumeLabels = maps.Clone(vol.Labels)
			}
			if v.Volume != nil {
				m.VolumeNocopy = v.Volume.NoCopy
			}
		case types.VolumeTypeTmpfs:
			m.Type = swarmpb.Mount_TYPE_TMPFS
			if v.Tmpfs != nil {
				m.TmpfsSizeBytes = int64(v.Tmpfs.Size)
			}
		default:
			return fmt.Errorf("volumes[%d].type: %q is not supported: use volume, bind or tmpfs", i, v.Type)
		}
		ct.Mounts = append(ct.Mounts, m)
	}
	for _, t := range s.Tmpfs {
		ct.Mounts = append(ct.Mounts, &swarmpb.Mount{Type: swarmpb.Mount_TYPE_TMPFS, Target: t})
	}
	return nil
}

func parseID(field, s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", field, s)
	}
	return uint32(n), nil
}

func (c *converter) references(s types.ServiceConfig, ct *swarmpb.ContainerSpec) error {
	for i, r := range s.Secrets {
		name, ok := c.secrets[r.Source]
		if !ok {
			return fmt.Errorf("secrets[%d]: secret %s is not declared under the top-level secrets:", i, r.Source)
		}
		ref := &swarmpb.SecretReference{SecretName: name, Target: r.Target, Mode: 0o444}
		// compose-go makes the target /run/secrets/NAME; the cluster
		// mounts every secret there and stores the file name.
		ref.Target = strings.TrimPrefix(ref.Target, "/run/secrets/")
		if ref.Target == "" {
			ref.Target = r.Source
		}
		if strings.Contains(ref.Target, "/") {
			return fmt.Errorf("secrets[%d].target: %q must be a file name (secrets are mounted under /run/secrets)", i, r.Target)
		}
		if err := fileRef(fmt.Sprintf("secrets[%d]", i), types.FileReferenceConfig(r), &ref.Uid, &ref.Gid, &ref.Mode); err != nil {
			return err
		}
		ct.Secrets = append(ct.Secrets, ref)
	}
	for i, r := range s.Configs {
		name, ok := c.configs[r.Source]
		if !ok {
			return fmt.Errorf("configs[%d]: config %s is not declared under the top-level configs:", i, r.Source)
		}
		ref := &swarmpb.ConfigReference{ConfigName: name, Target: r.Target, Mode: 0o444}
		if ref.Target == "" {
			ref.Target = "/" + r.Source
		}
		if err := fileRef(fmt.Sprintf("configs[%d]", i), types.FileReferenceConfig(r), &ref.Uid, &ref.Gid, &ref.Mode); err != nil {
			return err
		}
		ct.Configs = append(ct.Configs, ref)
	}
	return nil
}

func fileRef(field string, r types.FileReferenceConfig, uid, gid, mode *uint32) error {
	var err error
	if *uid, err = parseID(field+".uid", r.UID); err != nil {
		return err
	}
	if *gid, err = parseID(field+".gid", r.GID); err != nil {
		return err
	}
	if r.Mode != nil {
		if *r.Mode < 0 || *r.Mode > 0o7777 {
			return fmt.Errorf("%s.mode: %o is not a file mode", field, int64(*r.Mode))
		}
		*mode = uint32(*r.Mode)
	}
	return nil
}

func (c *converter) ports(s types.ServiceConfig, spec *swarmpb.ServiceSpec) error {
	for i, p := range s.Ports {
		pc := &swarmpb.PortConfig{Protocol: strings.ToLower(p.Protocol), TargetPort: p.Target, PublishMode: p.Mode}
		if pc.Protocol == "" {
			pc.Protocol = "tcp"
		}
		if pc.PublishMode == "" {
			pc.PublishMode = "ingress"
		}
		if p.Published != "" {
			n, err := strconv.ParseUint(p.Published, 10, 16)
			if err != nil {
				return fmt.Errorf("ports[%d].published: %q is not a port number (ranges are not supported)", i, p.Published)
			}
			pc.PublishedPort = uint32(n)
		}
		spec.Ports = append(spec.Ports, pc)
	}
	return nil
}

func restartCondition(field, s string) (swarmpb.RestartPolicy_Condition, error) {
	switch s {
	case "any", "always", "unless-stopped":
		return swarmpb.RestartPolicy_CONDITION_ANY, nil
	case "on-failure", "on_failure":
		return swarmpb.RestartPolicy_CONDITION_ON_FAILURE, nil
	case "none", "no":
		return swarmpb.RestartPolicy_CONDITION_NONE, nil
	}
	return 0, fmt.Errorf("%s: %q is unknown: use none, on-failure or any", field, s)
}

func (c *converter) deploy(s types.ServiceConfig, spec *swarmpb.ServiceSpec) error {
	if s.Restart != "" {
		cond, err := restartCondition("restart", strings.SplitN(s.Restart, ":", 2)[0])
		if err != nil {
			return err
		}
		spec.Restart.Condition = cond
	}
	if s.Scale != nil {
		spec.Replicas = uint64(max(*s.Scale, 0))
	}
	d := s.Deploy
	if d == nil {
		return nil
	}
	switch d.Mode {
	case "", "replicated":
	case "global":
		spec.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
		spec.Replicas = 0
	default:
		return fmt.Errorf("deploy.mode: %q is not supported: use replicated or global", d.Mode)
	}
	if d.Replicas != nil {
		if spec.Mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
			return fmt.Errorf("deploy.replicas: cannot be set for a global service")
		}
		if *d.Replicas < 0 {
			return fmt.Errorf("deploy.replicas: %d is negative", *d.Replicas)
		}
		spec.Replicas = uint64(*d.Replicas)
	}
	for k, v := range d.Labels {
		spec.Labels[k] = v
	}
	spec.Labels[NamespaceLabel] = c.stack
	if rp := d.RestartPolicy; rp != nil {
		r := &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY, DelayNs: int64(defaultRestartDelay)}
		if rp.Condition != "" {
			cond, err := restartCondition("deploy.restart_policy.condition", rp.Condition)
			if err != nil {
				return err
			}
			r.Condition = cond
		}
		if rp.Delay != nil {
			r.DelayNs = int64(*rp.Delay)
		}
		if rp.MaxAttempts != nil {
			r.MaxAttempts = *rp.MaxAttempts
		}
		r.WindowNs = durNs(rp.Window)
		spec.Restart = r
	}
	if err := updateConfig("deploy.update_config", d.UpdateConfig, spec.Update); err != nil {
		return err
	}
	if err := updateConfig("deploy.rollback_config", d.RollbackConfig, spec.Rollback); err != nil {
		return err
	}
	pl := &swarmpb.Placement{MaxReplicasPerNode: d.Placement.MaxReplicas}
	for i, con := range d.Placement.Constraints {
		canon, err := specrules.ParseConstraint(con)
		if err != nil {
			return fmt.Errorf("deploy.placement.constraints[%d]: %v", i, err)
		}
		pl.Constraints = append(pl.Constraints, canon)
	}
	for i, pref := range d.Placement.Preferences {
		desc, err := specrules.ParseSpreadDescriptor(pref.Spread)
		if err != nil {
			return fmt.Errorf("deploy.placement.preferences[%d].spread: %v", i, err)
		}
		pl.SpreadDescriptors = append(pl.SpreadDescriptors, desc)
	}
	if len(pl.Constraints) > 0 || len(pl.SpreadDescriptors) > 0 || pl.MaxReplicasPerNode > 0 {
		spec.Placement = pl
	}
	res := &swarmpb.ResourceRequirements{}
	if l := d.Resources.Limits; l != nil {
		res.Limits = &swarmpb.Resources{NanoCpus: int64(math.Round(float64(l.NanoCPUs) * 1e9)), MemoryBytes: int64(l.MemoryBytes)}
	}
	if r := d.Resources.Reservations; r != nil {
		res.Reservations = &swarmpb.Resources{NanoCpus: int64(math.Round(float64(r.NanoCPUs) * 1e9)), MemoryBytes: int64(r.MemoryBytes)}
	}
	if res.Limits != nil || res.Reservations != nil {
		spec.Resources = res
	}
	switch d.EndpointMode {
	case "", "vip":
	default:
		c.warn("service %s: key deploy.endpoint_mode %q is not supported by the cluster: the service gets a virtual IP", s.Name, d.EndpointMode)
	}
	return nil
}

func updateConfig(field string, u *types.UpdateConfig, out *swarmpb.UpdateConfig) error {
	if u == nil {
		return nil
	}
	if u.Parallelism != nil {
		out.Parallelism = *u.Parallelism
	}
	out.DelayNs = int64(u.Delay)
	if u.FailureAction != "" {
		switch u.FailureAction {
		case "pause", "continue", "rollback":
		default:
			return fmt.Errorf("%s.failure_action: %q is unknown: use pause, continue or rollback", field, u.FailureAction)
		}
		out.FailureAction = u.FailureAction
	}
	if u.Monitor != 0 {
		out.MonitorNs = int64(u.Monitor)
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		return fmt.Errorf("%s.max_failure_ratio: %v is not between 0 and 1", field, u.MaxFailureRatio)
	}
	out.MaxFailureRatio = u.MaxFailureRatio
	if u.Order != "" {
		switch u.Order {
		case "stop-first", "start-first":
		default:
			return fmt.Errorf("%s.order: %q is unknown: use stop-first or start-first", field, u.Order)
		}
		out.Order = u.Order
	}
	return nil
}

// dependencyOrder sorts services so that each comes after its
// dependencies, and refuses a cycle, naming it.
func dependencyOrder(services map[string]Service) ([]string, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var order []string
	var stack []string
	var visit func(k string) error
	visit = func(k string) error {
		switch state[k] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, k)
			cycle := append(slices.Clone(stack[i:]), k)
			return fmt.Errorf("services.%s.depends_on: dependency cycle %s", k, strings.Join(cycle, " -> "))
		}
		state[k] = visiting
		stack = append(stack, k)
		s := services[k]
		for _, d := range s.DependsOn {
			if _, ok := services[d.Key]; !ok {
				return fmt.Errorf("services.%s.depends_on: service %s is not defined", k, d.Key)
			}
			if err := visit(d.Key); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[k] = done
		order = append(order, k)
		return nil
	}
	for _, k := range sortedKeys(services) {
		if err := visit(k); err != nil {
			return nil, err
		}
	}
	return order, nil
}
