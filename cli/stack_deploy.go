package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"google.golang.org/grpc/codes"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/stack"
)

type deployFlags struct {
	composeLoadOptions
	prune        bool
	detach       bool
	resolveImage string
	timeout      time.Duration
}

func (a *app) stackDeployCommand() *cobra.Command {
	o := &deployFlags{}
	cmd := &cobra.Command{
		Use:   "deploy -c FILE [-c FILE...] [--prune] [-d] STACK",
		Short: "Deploy a new stack or update an existing one from Compose files",
		Long: `Deploy a new stack or update an existing one from Compose files.

Services start in depends_on order: a service is created or updated only once
its dependencies are running (service_started), healthy (service_healthy) or
have exited 0 (service_completed_successfully). A redeploy updates only the
services whose spec changed, and secrets and configs whose content changed
(which rolls the services using them). build: sections are built on the
Docker Engine of the node this command talks to.`,
		Args: exactArgs(1, "STACK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.deployStack(o, args[0])
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&o.prune, "prune", false, "remove services of the stack that the Compose files no longer name")
	f.BoolVarP(&o.detach, "detach", "d", false, "exit once the services are created or updated instead of waiting for them to converge")
	f.StringVar(&o.resolveImage, "resolve-image", "never", "accepted for compatibility (always, changed, never): no registry is queried; nodes resolve images by ID")
	f.DurationVar(&o.timeout, "timeout", defaultWaitTimeout, "how long to wait for each dependency and each service to converge")
	return cmd
}

// deployer carries one stack deploy.
type deployer struct {
	a       *app
	ctl     swarmpb.ControlClient
	plan    *stack.Plan
	o       *deployFlags
	netIDs  map[string]string // network name -> ID
	images  map[string]string // service key -> ID of the image built for it
	waited  map[string]bool   // dependency conditions already met: "service/condition"
	rolling map[string]bool   // services the managers roll to a new secret or config
	ran     map[string]bool   // services awaited until they completed
	changed []changedService
}

type changedService struct {
	id, name string
	once     bool // restart condition none: runs once
}

func (a *app) deployStack(o *deployFlags, name string) error {
	if err := stack.ValidateName(name); err != nil {
		return err
	}
	switch o.resolveImage {
	case "always", "changed", "never":
	default:
		return fmt.Errorf("invalid --resolve-image %q: use always, changed or never", o.resolveImage)
	}
	p, err := o.load(name)
	if err != nil {
		return err
	}
	plan, err := stack.Convert(p, name)
	if err != nil {
		return err
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(a.stderr, "Warning: %s\n", escapeText(w))
	}
	ctl, err := a.control()
	if err != nil {
		return err
	}
	d := &deployer{a: a, ctl: ctl, plan: plan, o: o, netIDs: map[string]string{},
		images: map[string]string{}, waited: map[string]bool{}, ran: map[string]bool{}, rolling: map[string]bool{}}
	// Everything that can fail without changing the cluster comes first:
	// external objects, then image builds.
	if err := d.checkExternal(); err != nil {
		return err
	}
	if err := d.build(); err != nil {
		return err
	}
	if err := d.networks(); err != nil {
		return err
	}
	if err := d.data(); err != nil {
		return err
	}
	if err := d.services(); err != nil {
		return err
	}
	if o.detach {
		return nil
	}
	for _, s := range d.changed {
		if s.once || d.ran[s.name] {
			continue
		}
		fmt.Fprintf(a.stdout, "Waiting for service %s to converge\n", escapeText(s.name))
		if err := a.waitConverged(ctl, s.id, s.name, o.timeout); err != nil {
			return err
		}
	}
	return nil
}

func (d *deployer) checkExternal() error {
	for _, n := range d.plan.Networks {
		if !n.External {
			continue
		}
		var resp *swarmpb.GetNetworkResponse
		err := d.a.stackCall(func(ctx context.Context) (err error) {
			resp, err = d.ctl.GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: n.Name})
			return err
		})
		if stackNotFound(err) {
			return fmt.Errorf("network %s (networks.%s) is external but does not exist: create it first (swarmctl network create %s)", n.Name, n.Key, n.Name)
		}
		if err != nil {
			return fmt.Errorf("network %s: %v", n.Name, err)
		}
		d.netIDs[n.Name] = resp.GetNetwork().GetId()
	}
	for _, s := range d.plan.Secrets {
		if !s.External {
			continue
		}
		err := d.a.stackCall(func(ctx context.Context) error {
			_, err := d.ctl.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: s.Name})
			return err
		})
		if stackNotFound(err) {
			return fmt.Errorf("secret %s (secrets.%s) is external but does not exist: create it first (swarmctl secret create %s FILE)", s.Name, s.Key, s.Name)
		}
		if err != nil {
			return fmt.Errorf("secret %s: %v", s.Name, err)
		}
	}
	for _, c := range d.plan.Configs {
		if !c.External {
			continue
		}
		err := d.a.stackCall(func(ctx context.Context) error {
			_, err := d.ctl.GetConfig(ctx, &swarmpb.GetConfigRequest{Config: c.Name})
			return err
		})
		if stackNotFound(err) {
			return fmt.Errorf("config %s (configs.%s) is external but does not exist: create it first (swarmctl config create %s FILE)", c.Name, c.Key, c.Name)
		}
		if err != nil {
			return fmt.Errorf("config %s: %v", c.Name, err)
		}
	}
	return nil
}

func (d *deployer) build() error {
	var b imageBuilder
	for _, s := range d.plan.Services {
		if s.Build == nil {
			continue
		}
		if b == nil {
			var err error
			if b, err = d.a.builder(); err != nil {
				return err
			}
		}
		fmt.Fprintf(d.a.stdout, "Building image %s for service %s\n", escapeText(s.Build.Tag), escapeText(s.Name()))
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		id, err := b.Build(ctx, s.Build, d.a.stdout)
		cancel()
		if err != nil {
			return fmt.Errorf("service %s: build of %s failed: %v", s.Name(), s.Build.Tag, err)
		}
		d.images[s.Key] = id
	}
	return nil
}

func (d *deployer) networks() error {
	for _, n := range d.plan.Networks {
		if n.External {
			continue
		}
		var got *swarmpb.GetNetworkResponse
		err := d.a.stackCall(func(ctx context.Context) (err error) {
			got, err = d.ctl.GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: n.Name})
			return err
		})
		if err == nil {
			d.netIDs[n.Name] = got.GetNetwork().GetId()
			continue
		}
		if !stackNotFound(err) {
			return fmt.Errorf("network %s: %v", n.Name, err)
		}
		fmt.Fprintf(d.a.stdout, "Creating network %s\n", escapeText(n.Name))
		var created *swarmpb.CreateNetworkResponse
		if err := d.a.stackCall(func(ctx context.Context) (err error) {
			created, err = d.ctl.CreateNetwork(ctx, &swarmpb.CreateNetworkRequest{Spec: n.Spec})
			return err
		}); err != nil {
			return fmt.Errorf("cannot create network %s: %v", n.Name, err)
		}
		d.netIDs[n.Name] = created.GetNetwork().GetId()
	}
	return nil
}

func contentDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// currentDigest is the sha256 of a secret's or config's current content.
func currentDigest(version uint64, versions []*swarmpb.DataVersion) string {
	for _, v := range versions {
		if v.GetVersion() == version {
			return v.GetSha256()
		}
	}
	return ""
}

// data creates the stack's secrets and configs, and updates those whose
// content changed (the managers roll the services using them).
func (d *deployer) data() error {
	for _, s := range d.plan.Secrets {
		if s.External {
			continue
		}
		var got *swarmpb.GetSecretResponse
		err := d.a.stackCall(func(ctx context.Context) (err error) {
			got, err = d.ctl.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: s.Name})
			return err
		})
		switch {
		case stackNotFound(err):
			fmt.Fprintf(d.a.stdout, "Creating secret %s\n", escapeText(s.Name))
			if err := d.a.stackCall(func(ctx context.Context) error {
				_, err := d.ctl.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: s.Name, Labels: s.Labels, Data: s.Content})
				return err
			}); err != nil {
				return fmt.Errorf("cannot create secret %s: %v", s.Name, err)
			}
		case err != nil:
			return fmt.Errorf("secret %s: %v", s.Name, err)
		case currentDigest(got.GetSecret().GetVersion(), got.GetSecret().GetVersions()) != contentDigest(s.Content):
			fmt.Fprintf(d.a.stdout, "Updating secret %s\n", escapeText(s.Name))
			var resp *swarmpb.UpdateSecretResponse
			if err := d.a.stackCall(func(ctx context.Context) (err error) {
				resp, err = d.ctl.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: s.Name, Data: s.Content})
				return err
			}); err != nil {
				return fmt.Errorf("cannot update secret %s: %v", s.Name, err)
			}
			d.rolled(resp.GetServices())
		}
	}
	for _, c := range d.plan.Configs {
		if c.External {
			continue
		}
		var got *swarmpb.GetConfigResponse
		err := d.a.stackCall(func(ctx context.Context) (err error) {
			got, err = d.ctl.GetConfig(ctx, &swarmpb.GetConfigRequest{Config: c.Name})
			return err
		})
		switch {
		case stackNotFound(err):
			fmt.Fprintf(d.a.stdout, "Creating config %s\n", escapeText(c.Name))
			if err := d.a.stackCall(func(ctx context.Context) error {
				_, err := d.ctl.CreateConfig(ctx, &swarmpb.CreateConfigRequest{Name: c.Name, Labels: c.Labels, Data: c.Content})
				return err
			}); err != nil {
				return fmt.Errorf("cannot create config %s: %v", c.Name, err)
			}
		case err != nil:
			return fmt.Errorf("config %s: %v", c.Name, err)
		case currentDigest(got.GetConfig().GetVersion(), got.GetConfig().GetVersions()) != contentDigest(c.Content):
			fmt.Fprintf(d.a.stdout, "Updating config %s\n", escapeText(c.Name))
			var resp *swarmpb.UpdateConfigResponse
			if err := d.a.stackCall(func(ctx context.Context) (err error) {
				resp, err = d.ctl.UpdateConfig(ctx, &swarmpb.UpdateConfigRequest{Config: c.Name, Data: c.Content})
				return err
			}); err != nil {
				return fmt.Errorf("cannot update config %s: %v", c.Name, err)
			}
			d.rolled(resp.GetServices())
		}
	}
	return nil
}

func (d *deployer) rolled(services []string) {
	if len(services) == 0 {
		return
	}
	for _, n := range services {
		d.rolling[n] = true
	}
	sort.Strings(services)
	for i := range services {
		services[i] = escapeText(services[i])
	}
	fmt.Fprintf(d.a.stdout, "  rolling services: %v\n", services)
}

// desiredSpec is the spec to send: network names resolved to IDs (the
// form the managers store), and the ID of the image built for it.
func (d *deployer) desiredSpec(s stack.Service) *swarmpb.ServiceSpec {
	spec := proto.Clone(s.Spec).(*swarmpb.ServiceSpec)
	for _, n := range spec.Networks {
		if id, ok := d.netIDs[n.Target]; ok && id != "" {
			n.Target = id
		}
	}
	if id := d.images[s.Key]; id != "" {
		spec.Container.ImageId = id
	}
	return spec
}

func (d *deployer) services() error {
	infos, err := d.a.stackServices(d.ctl, d.plan.Stack)
	if err != nil {
		return err
	}
	existing := map[string]*swarmpb.Service{}
	for _, si := range infos {
		existing[si.GetService().GetSpec().GetName()] = si.GetService()
	}
	for _, s := range d.plan.Services {
		for _, dep := range s.DependsOn {
			if err := d.waitDependency(s, dep); err != nil {
				return err
			}
		}
		spec := d.desiredSpec(s)
		once := spec.GetRestart().GetCondition() == swarmpb.RestartPolicy_CONDITION_NONE
		cur, ok := existing[s.Name()]
		if !ok {
			fmt.Fprintf(d.a.stdout, "Creating service %s\n", escapeText(s.Name()))
			var resp *swarmpb.CreateServiceResponse
			if err := d.a.stackCall(func(ctx context.Context) (err error) {
				resp, err = d.ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec})
				return err
			}); err != nil {
				return fmt.Errorf("cannot create service %s: %v", s.Name(), err)
			}
			d.changed = append(d.changed, changedService{id: resp.GetService().GetId(), name: s.Name(), once: once})
			continue
		}
		stored := cur.GetSpec()
		built := d.images[s.Key]
		if !stack.SpecChanged(stored, spec) && (built == "" || built == stored.GetContainer().GetImageId()) {
			if d.rolling[s.Name()] {
				// Rolling to new secret or config content: wait for it too.
				d.changed = append(d.changed, changedService{id: cur.GetId(), name: s.Name(), once: once})
			}
			continue
		}
		fmt.Fprintf(d.a.stdout, "Updating service %s (id: %s)\n", escapeText(s.Name()), escapeText(cur.GetId()))
		// The file's spec replaces whatever is stored; when the service
		// changed between the read and the write (the managers record a
		// rolling update's progress on it), read its version again.
		version := cur.GetMeta().GetVersion()
		for attempt := 1; ; attempt++ {
			err := d.a.stackCall(func(ctx context.Context) error {
				_, err := d.ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: cur.GetId(), Version: version, Spec: spec})
				return err
			})
			if err == nil {
				break
			}
			if !stackHasCode(err, codes.Aborted) || attempt == serviceUpdateAttempts {
				return fmt.Errorf("cannot update service %s: %v", s.Name(), err)
			}
			if err := d.a.stackCall(func(ctx context.Context) error {
				resp, err := d.ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: cur.GetId()})
				version = resp.GetService().GetMeta().GetVersion()
				return err
			}); err != nil {
				return fmt.Errorf("cannot update service %s: %v", s.Name(), err)
			}
		}
		d.changed = append(d.changed, changedService{id: cur.GetId(), name: s.Name(), once: once})
	}
	if !d.o.prune {
		return nil
	}
	var names []string
	for n := range existing {
		if !slices.ContainsFunc(d.plan.Services, func(s stack.Service) bool { return s.Name() == n }) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(d.a.stdout, "Removing service %s\n", escapeText(n))
		if err := d.a.stackCall(func(ctx context.Context) error {
			_, err := d.ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: existing[n].GetId()})
			return err
		}); err != nil && !stackNotFound(err) {
			return fmt.Errorf("cannot remove service %s: %v", n, err)
		}
	}
	return nil
}

// waitDependency waits until dep's condition holds, before s is created
// or updated.
func (d *deployer) waitDependency(s stack.Service, dep stack.Dependency) error {
	key := dep.Service + "/" + string(dep.Condition)
	if d.waited[key] {
		return nil
	}
	fmt.Fprintf(d.a.stdout, "Waiting for %s (%s) before %s\n", escapeText(dep.Service), dep.Condition, escapeText(s.Name()))
	deadline := time.Now().Add(d.o.timeout)
	ticker := time.NewTicker(d.a.opts.pollInterval)
	defer ticker.Stop()
	var last string
	p := &progressPrinter{w: d.a.stdout, terminal: d.a.isTerminal()}
	for polls := 0; ; polls++ {
		var svc *swarmpb.Service
		var tasks []*swarmpb.Task
		err := d.a.stackCall(func(ctx context.Context) error {
			resp, err := d.ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: dep.Service})
			if err != nil {
				return err
			}
			svc = resp.GetService()
			tasks, _, err = listing.Tasks(ctx, d.ctl, &swarmpb.ListTasksRequest{Services: []string{svc.GetId()}})
			return err
		})
		if err != nil {
			return fmt.Errorf("service %s depends on %s: %v", s.Name(), dep.Service, err)
		}
		done, why, failure := dependencyMet(svc, tasks, dep.Condition, polls)
		if failure != "" {
			return fmt.Errorf("service %s depends on %s (%s), which cannot get there: %s", s.Name(), dep.Service, dep.Condition, failure)
		}
		if done {
			d.waited[key] = true
			if dep.Condition == stack.ServiceCompletedSuccessfully {
				d.ran[dep.Service] = true
			}
			return nil
		}
		last = why
		p.draw([]string{fmt.Sprintf("%s: %s", escapeText(dep.Service), escapeText(why))})
		if !time.Now().Before(deadline) {
			return fmt.Errorf("service %s depends on %s (%s), which did not get there within %s: %s", s.Name(), dep.Service, dep.Condition, d.o.timeout, last)
		}
		<-ticker.C
	}
}

// dependencyMet judges one poll of a dependency: whether the condition
// holds, where it stands if not, and why it never will.
func dependencyMet(svc *swarmpb.Service, tasks []*swarmpb.Task, cond stack.Condition, polls int) (done bool, why, failure string) {
	if cond != stack.ServiceCompletedSuccessfully {
		// A task is RUNNING only once it listens and, with a health
		// check, once healthy: started and healthy read the same state.
		c := evaluate(svc, tasks, polls)
		if c.failure != "" {
			return false, "", c.failure
		}
		why = fmt.Sprintf("%d out of %d tasks running", c.running, c.desired)
		if c.lastErr != "" {
			why += " (last error: " + c.lastErr + ")"
		}
		return c.converged, why, ""
	}
	global := svc.GetSpec().GetMode() == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	newest := map[string]*swarmpb.Task{}
	for _, t := range tasks {
		if t.GetSpecVersion() != svc.GetSpecVersion() {
			continue
		}
		k := fmt.Sprint(t.GetSlot())
		if global {
			k = t.GetNodeId()
		}
		if cur, ok := newest[k]; !ok || newer(t, cur) {
			newest[k] = t
		}
	}
	want := int(svc.GetSpec().GetReplicas())
	if global {
		want = max(len(newest), 1)
	}
	exited := 0
	restarts := svc.GetSpec().GetRestart().GetCondition() != swarmpb.RestartPolicy_CONDITION_NONE
	for _, t := range newest {
		st := t.GetStatus()
		switch {
		case st.GetState() == swarmpb.TaskState_TASK_STATE_COMPLETE && st.GetExitCode() == 0:
			exited++
		case st.GetState() == swarmpb.TaskState_TASK_STATE_REJECTED:
			return false, "", taskErr(t)
		case (isFailed(st.GetState()) || st.GetState() == swarmpb.TaskState_TASK_STATE_COMPLETE) && !restarts:
			msg := fmt.Sprintf("a task exited with code %d", st.GetExitCode())
			if e := taskErr(t); e != "" {
				msg += ": " + e
			}
			return false, "", msg
		}
	}
	return exited >= want, fmt.Sprintf("%d out of %d tasks exited 0", exited, want), ""
}
