package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	specrules "github.com/raftswarm/raftswarm/spec"
)

// createFlags are the flags only `service create` has.
type createFlags struct {
	serviceFlags
	name            string
	mode            string
	publish         []string
	env             []string
	labels          []string
	containerLabels []string
	constraints     []string
	placementPrefs  []string
	mounts          []string
	networks        []string
	networkAliases  []string
	data            dataCreateFlags // --secret, --config (service_secrets.go)
}

func (o *createFlags) register(f *pflag.FlagSet) {
	o.serviceFlags.register(f)
	f.StringVar(&o.name, "name", "", "service name")
	f.StringVar(&o.mode, "mode", "replicated", "service mode (replicated, global)")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a port (PUB:TGT[/tcp|udp] or mode=host,published=P,target=T,protocol=udp)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "service label (KEY=VALUE)")
	f.StringArrayVar(&o.containerLabels, "container-label", nil, "container label (KEY=VALUE)")
	f.StringArrayVar(&o.constraints, "constraint", nil, "placement constraint (e.g. node.labels.zone==a)")
	f.StringArrayVar(&o.placementPrefs, "placement-pref", nil, "placement preference (spread=node.labels.KEY)")
	f.StringArrayVar(&o.mounts, "mount", nil, "attach a mount (type=bind|volume,source=...,target=...[,readonly])")
	f.StringArrayVar(&o.networks, "network", nil, "attach to a network: NAME or name=NAME,alias=ALIAS (repeatable)")
	f.StringArrayVar(&o.networkAliases, "network-alias", nil, "add a name the service answers to on every --network (repeatable)")
	o.data.register(f)
}

// spec builds and validates the spec of a new service.
func (o *createFlags) spec(fs *pflag.FlagSet, args []string) (*swarmpb.ServiceSpec, error) {
	spec := defaultSpec()
	spec.Name = o.name
	mode, err := parseMode(o.mode)
	if err != nil {
		return nil, err
	}
	spec.Mode = mode
	if mode == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL {
		spec.Replicas = 0
	}
	spec.Container.Image = args[0]
	if len(args) > 1 {
		spec.Container.Args = append([]string(nil), args[1:]...)
	}
	if err := o.serviceFlags.apply(spec, fs.Changed); err != nil {
		return nil, err
	}
	for _, p := range o.publish {
		pc, err := parsePort("--publish", p)
		if err != nil {
			return nil, err
		}
		spec.Ports = append(spec.Ports, pc)
	}
	spec.Container.Env = append(spec.Container.Env, o.env...)
	spec.Labels = labelMap(o.labels, spec.Labels)
	spec.Container.Labels = labelMap(o.containerLabels, spec.Container.Labels)
	placement := func() *swarmpb.Placement {
		if spec.Placement == nil {
			spec.Placement = &swarmpb.Placement{}
		}
		return spec.Placement
	}
	for _, c := range o.constraints {
		cons, err := parseConstraint(c)
		if err != nil {
			return nil, err
		}
		placement().Constraints = append(placement().Constraints, cons)
	}
	for _, p := range o.placementPrefs {
		d, err := parsePlacementPref("--placement-pref", p)
		if err != nil {
			return nil, err
		}
		placement().SpreadDescriptors = append(placement().SpreadDescriptors, d)
	}
	for _, m := range o.mounts {
		mnt, err := parseMount("--mount", m)
		if err != nil {
			return nil, err
		}
		spec.Container.Mounts = append(spec.Container.Mounts, mnt)
	}
	for _, n := range o.networks {
		att, err := parseNetworkAttachment("--network", n)
		if err != nil {
			return nil, err
		}
		att.Aliases = append(att.Aliases, o.networkAliases...)
		spec.Networks = append(spec.Networks, att)
	}
	if len(o.networkAliases) > 0 && len(o.networks) == 0 {
		return nil, fmt.Errorf("--network-alias needs a --network to apply to")
	}
	if err := o.data.apply(spec); err != nil {
		return nil, err
	}
	// The managers' rules, run here too so that bad input fails before
	// anything is sent, with the same message. The replica cap is the
	// cluster's setting, which only the managers know: they check it.
	// Without --name the managers pick a name.
	if err := specrules.ValidateNewServiceSpec(spec, 0); err != nil {
		return nil, err
	}
	return spec, nil
}

// labelMap adds KEY[=VALUE] labels to m; spec.ValidateLabels judges them.
func labelMap(values []string, m map[string]string) map[string]string {
	for _, l := range values {
		k, v, _ := strings.Cut(l, "=")
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
	}
	return m
}

func (a *app) serviceCreateCommand() *cobra.Command {
	o := &createFlags{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND [ARG...]]",
		Short: "Create a new service",
		Args:  minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec(cmd.Flags(), args)
			if err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.CreateServiceResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: spec})
				return err
			}); err != nil {
				return err
			}
			svc := resp.GetService()
			fmt.Fprintln(a.stdout, svc.GetId())
			if o.detach {
				return nil
			}
			return a.waitConverged(ctl, svc.GetId(), displayName(svc), o.timeout)
		},
	}
	cmd.Flags().SetInterspersed(false)
	o.register(cmd.Flags())
	return cmd
}

func displayName(s *swarmpb.Service) string {
	if n := s.GetSpec().GetName(); n != "" {
		return n
	}
	return s.GetId()
}
