package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	specrules "github.com/raftswarm/raftswarm/spec"
)

// updateOnlyFlags are the flags only `service update` has.
type updateOnlyFlags struct {
	serviceFlags
	image                               string
	args                                []string
	envAdd, envRm                       []string
	constraintAdd, constraintRm         []string
	labelAdd, labelRm                   []string
	containerLabelAdd, containerLabelRm []string
	publishAdd, publishRm               []string
	mountAdd, mountRm                   []string
	placementPrefAdd, placementPrefRm   []string
	networkAdd, networkRm               []string
	force, rollback                     bool
	data                                dataUpdateFlags // --secret-add etc. (service_secrets.go)
}

func (o *updateOnlyFlags) register(f *pflag.FlagSet) {
	o.serviceFlags.register(f)
	f.StringVar(&o.image, "image", "", "service image")
	f.StringArrayVar(&o.args, "args", nil, "service command args (repeat for each word)")
	f.StringArrayVar(&o.envAdd, "env-add", nil, "add or update an environment variable (KEY=VALUE)")
	f.StringArrayVar(&o.envRm, "env-rm", nil, "remove an environment variable")
	f.StringArrayVar(&o.constraintAdd, "constraint-add", nil, "add or update a placement constraint")
	f.StringArrayVar(&o.constraintRm, "constraint-rm", nil, "remove a placement constraint")
	f.StringArrayVar(&o.labelAdd, "label-add", nil, "add or update a service label (KEY=VALUE)")
	f.StringArrayVar(&o.labelRm, "label-rm", nil, "remove a service label")
	f.StringArrayVar(&o.containerLabelAdd, "container-label-add", nil, "add or update a container label (KEY=VALUE)")
	f.StringArrayVar(&o.containerLabelRm, "container-label-rm", nil, "remove a container label")
	f.StringArrayVar(&o.publishAdd, "publish-add", nil, "add or update a published port")
	f.StringArrayVar(&o.publishRm, "publish-rm", nil, "remove a published port by its target port ([PUB:]TGT[/proto])")
	f.StringArrayVar(&o.mountAdd, "mount-add", nil, "add or update a mount")
	f.StringArrayVar(&o.mountRm, "mount-rm", nil, "remove a mount by its target path")
	f.StringArrayVar(&o.placementPrefAdd, "placement-pref-add", nil, "add a placement preference (spread=node.labels.KEY)")
	f.StringArrayVar(&o.placementPrefRm, "placement-pref-rm", nil, "remove a placement preference")
	f.StringArrayVar(&o.networkAdd, "network-add", nil, "attach to a network: NAME or name=NAME,alias=ALIAS")
	f.StringArrayVar(&o.networkRm, "network-rm", nil, "detach from a network")
	f.BoolVar(&o.force, "force", false, "force the update even if no changes require it")
	f.BoolVar(&o.rollback, "rollback", false, "roll back to the previous spec")
	o.data.register(f)
}

func envKey(e string) string {
	k, _, _ := strings.Cut(e, "=")
	return k
}

// modify applies the update flags to spec (a copy of the current one).
func (o *updateOnlyFlags) modify(spec *swarmpb.ServiceSpec, fs *pflag.FlagSet) error {
	if err := o.serviceFlags.apply(spec, fs.Changed); err != nil {
		return err
	}
	c := spec.Container
	if fs.Changed("image") {
		c.Image = o.image
	}
	if fs.Changed("args") {
		c.Args = append([]string(nil), o.args...)
	}
	// Environment: remove, then add or replace by key.
	for _, k := range o.envRm {
		c.Env = removeWhere(c.Env, func(e string) bool { return envKey(e) == envKey(k) })
	}
	for _, e := range o.envAdd {
		c.Env = removeWhere(c.Env, func(old string) bool { return envKey(old) == envKey(e) })
		c.Env = append(c.Env, e)
	}
	placement := func() *swarmpb.Placement {
		if spec.Placement == nil {
			spec.Placement = &swarmpb.Placement{}
		}
		return spec.Placement
	}
	for _, s := range o.constraintRm {
		// A stored constraint that no longer parses can still be removed
		// by its exact text.
		cons, err := parseConstraint(s)
		if err != nil {
			cons = s
		}
		placement().Constraints = removeWhere(placement().Constraints, func(old string) bool {
			n, err := parseConstraint(old)
			return old == cons || (err == nil && n == cons)
		})
	}
	for _, s := range o.constraintAdd {
		cons, err := parseConstraint(s)
		if err != nil {
			return err
		}
		p := placement()
		p.Constraints = removeWhere(p.Constraints, func(old string) bool { return old == cons })
		p.Constraints = append(p.Constraints, cons)
	}
	for _, s := range o.placementPrefRm {
		d, err := parsePlacementPref("--placement-pref-rm", s)
		if err != nil {
			_, d, _ = strings.Cut(s, "=") // remove a stored descriptor by its text
		}
		placement().SpreadDescriptors = removeWhere(placement().SpreadDescriptors, func(old string) bool { return old == d })
	}
	for _, s := range o.placementPrefAdd {
		d, err := parsePlacementPref("--placement-pref-add", s)
		if err != nil {
			return err
		}
		placement().SpreadDescriptors = append(placement().SpreadDescriptors, d)
	}
	for _, k := range o.labelRm {
		delete(spec.Labels, k)
	}
	spec.Labels = labelMap(o.labelAdd, spec.Labels)
	for _, k := range o.containerLabelRm {
		delete(c.Labels, k)
	}
	c.Labels = labelMap(o.containerLabelAdd, c.Labels)
	if err := o.modifyPorts(spec); err != nil {
		return err
	}
	for _, n := range o.networkAdd {
		if _, err := parseNetworkAttachment("--network-add", n); err != nil {
			return err
		}
	}
	for _, target := range o.mountRm {
		c.Mounts = removeWhere(c.Mounts, func(m *swarmpb.Mount) bool { return m.Target == target })
	}
	for _, s := range o.mountAdd {
		m, err := parseMount("--mount-add", s)
		if err != nil {
			return err
		}
		c.Mounts = removeWhere(c.Mounts, func(old *swarmpb.Mount) bool { return old.Target == m.Target })
		c.Mounts = append(c.Mounts, m)
	}
	return o.data.modify(spec)
}

func (o *updateOnlyFlags) modifyPorts(spec *swarmpb.ServiceSpec) error {
	for _, s := range o.publishRm {
		rm, err := parsePort("--publish-rm", s)
		if err != nil {
			return err
		}
		explicitProto := strings.Contains(s, "/") || strings.Contains(s, "protocol=")
		spec.Ports = removeWhere(spec.Ports, func(p *swarmpb.PortConfig) bool {
			return p.TargetPort == rm.TargetPort &&
				(rm.PublishedPort == 0 || p.PublishedPort == rm.PublishedPort) &&
				(!explicitProto || p.Protocol == rm.Protocol)
		})
	}
	for _, s := range o.publishAdd {
		add, err := parsePort("--publish-add", s)
		if err != nil {
			return err
		}
		spec.Ports = removeWhere(spec.Ports, func(p *swarmpb.PortConfig) bool {
			return (add.PublishedPort != 0 && p.PublishedPort == add.PublishedPort && p.Protocol == add.Protocol) ||
				(p.TargetPort == add.TargetPort && p.Protocol == add.Protocol && p.PublishedPort == add.PublishedPort)
		})
		spec.Ports = append(spec.Ports, add)
	}
	return nil
}

func removeWhere[T any](s []T, drop func(T) bool) []T {
	out := s[:0]
	for _, v := range s {
		if !drop(v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (a *app) serviceUpdateCommand() *cobra.Command {
	o := &updateOnlyFlags{}
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] SERVICE",
		Short: "Update a service",
		Args:  exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if o.rollback {
				changed := false
				fs.Visit(func(f *pflag.Flag) {
					switch f.Name {
					case "rollback", "detach", "timeout", "host":
					default:
						changed = true
					}
				})
				if changed {
					return fmt.Errorf("--rollback cannot be combined with options that change the service")
				}
			}
			// Check the flags before talking to the daemon.
			if err := o.modify(defaultSpec(), fs); err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			// The flags are changes to whatever the service is now: when
			// it changed between the read and the write (the managers
			// record a rolling update's progress on it, too), read it
			// again and apply them again, a few times.
			var s *swarmpb.Service
			for attempt := 1; ; attempt++ {
				s, err = a.getService(ctl, args[0])
				if err != nil {
					return err
				}
				req, err := o.updateRequest(a, ctl, s, fs)
				if err != nil {
					return err
				}
				_, err = a.updateService(ctl, req)
				if err == nil {
					break
				}
				if !errors.Is(err, errServiceChanged) || attempt == serviceUpdateAttempts {
					return err
				}
			}
			fmt.Fprintln(a.stdout, args[0])
			if o.detach {
				return nil
			}
			return a.waitConverged(ctl, s.GetId(), displayName(s), o.timeout)
		},
	}
	o.register(cmd.Flags())
	return cmd
}

// serviceUpdateAttempts bounds the reads and writes of one service update
// that keep meeting a service changed in between.
const serviceUpdateAttempts = 5

// updateRequest is the update o's flags make to s as it is now.
func (o *updateOnlyFlags) updateRequest(a *app, ctl swarmpb.ControlClient, s *swarmpb.Service, fs *pflag.FlagSet) (*swarmpb.UpdateServiceRequest, error) {
	req := &swarmpb.UpdateServiceRequest{
		Service:  s.GetId(),
		Version:  s.GetMeta().GetVersion(),
		Force:    o.force,
		Rollback: o.rollback,
	}
	if o.rollback {
		return req, nil
	}
	spec := proto.Clone(s.GetSpec()).(*swarmpb.ServiceSpec)
	if spec == nil {
		spec = &swarmpb.ServiceSpec{}
	}
	if err := o.modify(spec, fs); err != nil {
		return nil, err
	}
	if err := a.modifyNetworks(ctl, s, spec, o.networkAdd, o.networkRm); err != nil {
		return nil, err
	}
	// The managers' rules (the replica cap aside, which only they know),
	// so that an update they would refuse is not sent.
	if err := specrules.ValidateServiceSpec(spec, 0); err != nil {
		return nil, err
	}
	req.Spec = spec
	return req, nil
}

// modifyNetworks applies --network-rm, then --network-add, to spec (a copy
// of svc's), naming networks by ID as the managers store them.
func (a *app) modifyNetworks(ctl swarmpb.ControlClient, svc *swarmpb.Service, spec *swarmpb.ServiceSpec, add, rm []string) error {
	name := displayName(svc)
	for _, ref := range rm {
		resp, err := a.getNetwork(ctl, ref)
		if err != nil {
			return err
		}
		id := resp.GetNetwork().GetId()
		before := len(spec.Networks)
		spec.Networks = removeWhere(spec.Networks, func(n *swarmpb.NetworkAttachmentConfig) bool { return n.GetTarget() == id })
		if len(spec.Networks) == before {
			return fmt.Errorf("service %s is not attached to network %s", name, ref)
		}
	}
	for _, s := range add {
		att, err := parseNetworkAttachment("--network-add", s)
		if err != nil {
			return err
		}
		resp, err := a.getNetwork(ctl, att.Target)
		if err != nil {
			return err
		}
		n := resp.GetNetwork()
		for _, cur := range spec.Networks {
			if cur.GetTarget() == n.GetId() {
				return fmt.Errorf("network %s is already attached to service %s", n.GetSpec().GetName(), name)
			}
		}
		att.Target = n.GetId()
		spec.Networks = append(spec.Networks, att)
	}
	return nil
}
