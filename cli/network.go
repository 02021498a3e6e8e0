package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	specrules "github.com/raftswarm/raftswarm/spec"
)

func (a *app) networkCommand() *cobra.Command {
	cmd := groupCommand("network", "Manage networks (service discovery)")
	cmd.AddCommand(
		a.networkCreateCommand(),
		a.networkLsCommand(),
		a.networkInspectCommand(),
		a.networkRmCommand(),
	)
	return cmd
}

func (a *app) networkCreateCommand() *cobra.Command {
	var driver, subnet string
	var labels []string
	var internal bool
	cmd := &cobra.Command{
		Use:   "create [--driver overlay] [--subnet CIDR] [--label KEY=VALUE]... [--internal] NAME",
		Short: "Create a network",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sp := &swarmpb.NetworkSpec{Name: args[0], Driver: driver, Subnet: subnet, Internal: internal, Labels: labelMap(labels, nil)}
			if err := specrules.ValidateNetworkSpec(sp); err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.CreateNetworkResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.CreateNetwork(ctx, &swarmpb.CreateNetworkRequest{Spec: sp})
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, escapeText(resp.GetNetwork().GetId()))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "", "network driver: overlay (the default) or bridge, accepted for compatibility; both mean raftswarm's data path")
	f.StringVar(&subnet, "subnet", "", "virtual address subnet, IPv4 CIDR /16 to /24 (default: the next free /20 of 10.96.0.0/12)")
	f.StringArrayVar(&labels, "label", nil, "network label (KEY=VALUE)")
	f.BoolVar(&internal, "internal", false, "give the network's tasks no route out of the cluster")
	return cmd
}

// networkRow is one line of `network ls`, and what --format templates see.
type networkRow struct {
	ID       string
	Name     string
	Driver   string
	Subnet   string
	Services uint32
	Internal bool
}

var networkFields = []string{".ID", ".Name", ".Driver", ".Subnet", ".Services", ".Internal"}

func (a *app) listNetworks(ctl swarmpb.ControlClient) ([]*swarmpb.NetworkInfo, error) {
	var infos []*swarmpb.NetworkInfo
	err := a.call(0, func(ctx context.Context) (err error) {
		infos, err = listing.Networks(ctx, ctl)
		return err
	})
	return infos, err
}

func (a *app) networkLsCommand() *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--format TEMPLATE|json]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			infos, err := a.listNetworks(ctl)
			if err != nil {
				return err
			}
			sort.SliceStable(infos, func(i, j int) bool {
				return infos[i].GetNetwork().GetSpec().GetName() < infos[j].GetNetwork().GetSpec().GetName()
			})
			rows := make([]any, 0, len(infos))
			for _, ni := range infos {
				n := ni.GetNetwork()
				rows = append(rows, networkRow{
					ID:       shortID(n.GetId()),
					Name:     n.GetSpec().GetName(),
					Driver:   specrules.NetworkDriver(n.GetSpec()),
					Subnet:   n.GetSubnet(),
					Services: ni.GetServices(),
					Internal: n.GetSpec().GetInternal(),
				})
			}
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(a.stdout, escapeText(r.(networkRow).ID))
				}
			case fmtr != nil:
				return fmtr.writeRows(a.stdout, rows, networkFields)
			default:
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "ID\tNAME\tDRIVER\tSUBNET\tSERVICES")
				for _, r := range rows {
					r := r.(networkRow)
					writeCells(tw, r.ID, r.Name, r.Driver, r.Subnet, fmt.Sprint(r.Services))
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

// networkView is what `network inspect --format` templates see. Its
// strings come from the cluster state and are escaped (escapeText).
type networkView struct {
	ID       string
	Name     string
	Driver   string
	Subnet   string
	Internal bool
	Labels   map[string]string
	Created  string
	Services []networkServiceView
	Nodes    []networkNodeView
}

type networkServiceView struct {
	ID      string
	Name    string
	VIP     string
	Aliases []string
}

type networkNodeView struct {
	ID            string
	Hostname      string
	DockerNetwork string
	Bridge        string
	Subnet        string
	Gateway       string
	Tasks         uint32
}

func newNetworkView(r *swarmpb.GetNetworkResponse) networkView {
	n := r.GetNetwork()
	e := escapeText
	v := networkView{
		ID: e(n.GetId()), Name: e(n.GetSpec().GetName()), Driver: e(specrules.NetworkDriver(n.GetSpec())),
		Subnet: e(n.GetSubnet()), Internal: n.GetSpec().GetInternal(), Created: formatTime(n.GetMeta().GetCreatedAt()),
		Labels: map[string]string{},
	}
	for k, val := range n.GetSpec().GetLabels() {
		v.Labels[e(k)] = e(val)
	}
	for _, s := range r.GetServices() {
		sv := networkServiceView{ID: e(s.GetServiceId()), Name: e(s.GetServiceName()), VIP: e(s.GetVip())}
		for _, al := range s.GetAliases() {
			sv.Aliases = append(sv.Aliases, e(al))
		}
		v.Services = append(v.Services, sv)
	}
	for _, nd := range r.GetNodes() {
		st := nd.GetState()
		v.Nodes = append(v.Nodes, networkNodeView{ID: e(nd.GetNodeId()), Hostname: e(nd.GetHostname()),
			DockerNetwork: e(st.GetDockerNetwork()), Bridge: e(st.GetBridge()), Subnet: e(st.GetSubnet()), Gateway: e(st.GetGateway()), Tasks: st.GetTasks()})
	}
	return v
}

func (a *app) getNetwork(ctl swarmpb.ControlClient, ref string) (*swarmpb.GetNetworkResponse, error) {
	var resp *swarmpb.GetNetworkResponse
	err := a.call(0, func(ctx context.Context) (err error) {
		resp, err = ctl.GetNetwork(ctx, &swarmpb.GetNetworkRequest{Network: ref})
		return err
	})
	return resp, err
}

func (a *app) networkInspectCommand() *cobra.Command {
	var pretty bool
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--pretty | --format TEMPLATE] NETWORK...",
		Short: "Display detailed information on networks: the services attached and, per node, what it set up",
		Args:  minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var tmpl *template.Template
			if format != "" {
				if pretty {
					return fmt.Errorf("--pretty and --format cannot be combined")
				}
				var err error
				f := strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
				if tmpl, err = template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(f); err != nil {
					return fmt.Errorf("invalid --format template: %v", oneLine(err))
				}
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var objs []json.RawMessage
			var failed []error
			var out bytes.Buffer
			for i, ref := range args {
				resp, err := a.getNetwork(ctl, ref)
				if err != nil {
					failed = append(failed, err)
					continue
				}
				switch {
				case tmpl != nil:
					if err := tmpl.Execute(&out, newNetworkView(resp)); err != nil {
						return fmt.Errorf("invalid --format template: %v (fields: .ID .Name .Driver .Subnet .Internal .Labels .Created .Services .Nodes)", oneLine(err))
					}
					out.WriteByte('\n')
				case pretty:
					if i > 0 && out.Len() > 0 {
						out.WriteByte('\n')
					}
					printNetworkPretty(&out, resp)
				default:
					obj, err := marshalObject(resp.GetNetwork(), map[string]any{
						"Services": orEmpty(resp.GetServices()),
						"Nodes":    orEmpty(resp.GetNodes()),
					})
					if err != nil {
						return err
					}
					objs = append(objs, obj)
				}
			}
			if tmpl == nil && !pretty {
				if err := writeJSONArray(a.stdout, objs); err != nil {
					return err
				}
			} else if _, err := a.stdout.Write(out.Bytes()); err != nil {
				return err
			}
			return a.reportErrors(failed)
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "print the information in a human friendly format")
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output with a Go template")
	return cmd
}

// orEmpty renders messages as JSON objects (protojson field names), and
// nil as [] rather than null.
func orEmpty[T proto.Message](items []T) []json.RawMessage {
	out := []json.RawMessage{}
	for _, it := range items {
		if raw, err := marshalObject(it, nil); err == nil {
			out = append(out, raw)
		}
	}
	return out
}

func printNetworkPretty(w io.Writer, r *swarmpb.GetNetworkResponse) {
	v := newNetworkView(r)
	k := newKV(w)
	k.line(0, "ID", "%s", v.ID)
	k.line(0, "Name", "%s", v.Name)
	k.line(0, "Driver", "%s", v.Driver)
	k.line(0, "Subnet", "%s", v.Subnet)
	k.line(0, "Internal", "%t", v.Internal)
	k.line(0, "Created", "%s", v.Created)
	if labels := r.GetNetwork().GetSpec().GetLabels(); len(labels) > 0 {
		k.head(0, "Labels")
		for _, l := range sortedLabels(labels) {
			k.item(" - ", l)
		}
	}
	k.head(0, "Services")
	for _, s := range r.GetServices() {
		k.line(1, escapeText(s.GetServiceName()), "%s", s.GetVip()) // keys are not escaped by kv
		if len(s.GetAliases()) > 0 {
			k.line(2, "Aliases", "%s", strings.Join(s.GetAliases(), ", "))
		}
	}
	k.head(0, "Nodes")
	for _, nd := range r.GetNodes() {
		st := nd.GetState()
		k.line(1, escapeText(nd.GetHostname()), "%s", nd.GetNodeId())
		k.line(2, "Docker network", "%s", st.GetDockerNetwork())
		k.line(2, "Bridge", "%s", st.GetBridge())
		k.line(2, "Subnet", "%s", st.GetSubnet())
		k.line(2, "Gateway", "%s", st.GetGateway())
		k.line(2, "Tasks", "%d", st.GetTasks())
	}
	k.flush()
}

func (a *app) networkRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks no service uses",
		Args:    minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			return a.forEach(args, func(ref string) error {
				if err := a.call(0, func(ctx context.Context) error {
					_, err := ctl.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: ref})
					return err
				}); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, escapeText(ref))
				return nil
			})
		},
	}
}

// parseNetworkAttachment parses a --network or --network-add value: NAME,
// or name=NAME[,alias=ALIAS]... (target= is a synonym of name=).
func parseNetworkAttachment(flag, s string) (*swarmpb.NetworkAttachmentConfig, error) {
	if !strings.Contains(s, "=") {
		if s == "" {
			return nil, fmt.Errorf("invalid %s %s: expected NAME or name=NAME,alias=ALIAS", flag, echo(s))
		}
		return &swarmpb.NetworkAttachmentConfig{Target: s}, nil
	}
	out := &swarmpb.NetworkAttachmentConfig{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		switch k = strings.TrimSpace(strings.ToLower(k)); {
		case !ok:
			return nil, fmt.Errorf("invalid %s %s: %s is not KEY=VALUE (keys: name, alias)", flag, echo(s), echo(part))
		case k == "name" || k == "target":
			if out.Target != "" {
				return nil, fmt.Errorf("invalid %s %s: the network is named twice", flag, echo(s))
			}
			out.Target = v
		case k == "alias":
			out.Aliases = append(out.Aliases, v)
		default:
			return nil, fmt.Errorf("invalid %s %s: unknown key %s (keys: name, alias)", flag, echo(s), echo(k))
		}
	}
	if out.Target == "" {
		return nil, fmt.Errorf("invalid %s %s: name=NETWORK is required", flag, echo(s))
	}
	return out, nil
}

// serviceNetworkNames maps the IDs of the networks svc is attached to to
// their names (an ID stays itself when the network is not listed).
func (a *app) serviceNetworkNames(ctl swarmpb.ControlClient, svc *swarmpb.Service) (map[string]string, error) {
	names := map[string]string{}
	if len(svc.GetSpec().GetNetworks()) == 0 && len(svc.GetVirtualIps()) == 0 {
		return names, nil
	}
	infos, err := a.listNetworks(ctl)
	if err != nil {
		return nil, err
	}
	for _, ni := range infos {
		names[ni.GetNetwork().GetId()] = ni.GetNetwork().GetSpec().GetName()
	}
	return names, nil
}

// serviceNetworkView is one network of `service inspect`.
type serviceNetworkView struct {
	ID      string   `json:"ID"`
	Name    string   `json:"Name"`
	VIP     string   `json:"VIP"`
	Aliases []string `json:"Aliases"`
}

func serviceNetworks(svc *swarmpb.Service, names map[string]string) []serviceNetworkView {
	out := []serviceNetworkView{}
	for _, att := range svc.GetSpec().GetNetworks() {
		v := serviceNetworkView{ID: att.GetTarget(), Name: names[att.GetTarget()], Aliases: att.GetAliases()}
		if v.Name == "" {
			v.Name = att.GetTarget()
		}
		if v.Aliases == nil {
			v.Aliases = []string{}
		}
		for _, vip := range svc.GetVirtualIps() {
			if vip.GetNetworkId() == att.GetTarget() {
				v.VIP = vip.GetAddr()
			}
		}
		out = append(out, v)
	}
	return out
}

func printServiceNetworks(w io.Writer, nets []serviceNetworkView) {
	if len(nets) == 0 {
		return
	}
	k := newKV(w)
	k.head(0, "Networks")
	for _, n := range nets {
		k.line(1, escapeText(n.Name), "%s", n.VIP)
		if len(n.Aliases) > 0 {
			k.line(2, "Aliases", "%s", strings.Join(n.Aliases, ", "))
		}
	}
	k.flush()
}
