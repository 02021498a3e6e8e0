package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func (a *app) serviceCommand() *cobra.Command {
	cmd := groupCommand("service", "Manage services")
	cmd.AddCommand(
		a.serviceCreateCommand(),
		a.serviceLsCommand(),
		a.servicePsCommand(),
		a.serviceLogsCommand(),
		a.serviceInspectCommand(),
		a.serviceScaleCommand(),
		a.serviceUpdateCommand(),
		a.serviceRollbackCommand(),
		a.serviceRmCommand(),
	)
	return cmd
}

// serviceRow is one line of `service ls`, and what --format templates see.
type serviceRow struct {
	ID       string
	Name     string
	Mode     string
	Replicas string
	Image    string
	Ports    string
}

var serviceFields = []string{".ID", ".Name", ".Mode", ".Replicas", ".Image", ".Ports"}

func formatPort(p *swarmpb.PortConfig) string {
	proto := p.GetProtocol()
	if proto == "" {
		proto = "tcp"
	}
	if p.GetPublishedPort() == 0 {
		return fmt.Sprintf("%d/%s", p.GetTargetPort(), proto)
	}
	return fmt.Sprintf("*:%d->%d/%s", p.GetPublishedPort(), p.GetTargetPort(), proto)
}

func formatPorts(ports []*swarmpb.PortConfig, onlyHost bool) string {
	var out []string
	for _, p := range ports {
		if onlyHost && p.GetPublishMode() != "host" {
			continue
		}
		out = append(out, formatPort(p))
	}
	return strings.Join(out, ", ")
}

func (a *app) serviceLsCommand() *cobra.Command {
	var quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--filter K=V]... [--format TEMPLATE|json]",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := parseListFilters("service ls", serviceLsFilters, filters)
			if err == nil {
				err = validateServiceFilters(flt)
			}
			if err != nil {
				return err
			}
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			var infos []*swarmpb.ServiceInfo
			if err := a.call(0, func(ctx context.Context) (err error) {
				infos, err = listing.Services(ctx, ctl)
				return err
			}); err != nil {
				return err
			}
			sort.SliceStable(infos, func(i, j int) bool {
				si, sj := infos[i].GetService(), infos[j].GetService()
				if si.GetSpec().GetName() != sj.GetSpec().GetName() {
					return si.GetSpec().GetName() < sj.GetSpec().GetName()
				}
				return si.GetId() < sj.GetId()
			})
			rows := make([]any, 0, len(infos))
			for _, si := range infos {
				s := si.GetService()
				if !flt.match(func(k, v string) bool { return serviceFilterMatch(s, k, v) }) {
					continue
				}
				rows = append(rows, serviceRow{
					ID:       shortID(s.GetId()),
					Name:     s.GetSpec().GetName(),
					Mode:     modeString(s.GetSpec().GetMode()),
					Replicas: fmt.Sprintf("%d/%d", si.GetRunning(), si.GetDesired()),
					Image:    s.GetSpec().GetContainer().GetImage(),
					Ports:    formatPorts(s.GetSpec().GetPorts(), false),
				})
			}
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(a.stdout, escapeText(r.(serviceRow).ID))
				}
			case fmtr != nil:
				return fmtr.writeRows(a.stdout, rows, serviceFields)
			default:
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS")
				for _, r := range rows {
					r := r.(serviceRow)
					writeCells(tw, r.ID, r.Name, r.Mode, r.Replicas, r.Image, r.Ports)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter output: id=ID, label=KEY[=VALUE], mode=replicated|global, name=NAME")
	return cmd
}

func (a *app) getService(ctl swarmpb.ControlClient, ref string) (*swarmpb.Service, error) {
	var resp *swarmpb.GetServiceResponse
	err := a.call(0, func(ctx context.Context) (err error) {
		resp, err = ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: ref})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetService(), nil
}

// errServiceChanged marks an update refused because the service changed
// since the version it names was read.
var errServiceChanged = errors.New("service changed since it was read")

// changedError is the managers' own message for errServiceChanged.
type changedError struct{ error }

func (changedError) Is(target error) bool { return target == errServiceChanged }

func (a *app) updateService(ctl swarmpb.ControlClient, req *swarmpb.UpdateServiceRequest) (*swarmpb.Service, error) {
	var resp *swarmpb.UpdateServiceResponse
	var code codes.Code
	err := a.call(0, func(ctx context.Context) (err error) {
		resp, err = ctl.UpdateService(ctx, req)
		code = status.Code(err)
		return err
	})
	if err != nil {
		if code == codes.Aborted {
			return nil, changedError{err}
		}
		return nil, err
	}
	return resp.GetService(), nil
}

func (a *app) serviceInspectCommand() *cobra.Command {
	return a.inspectCommand("SERVICE", "Display detailed information on services",
		func(ctl swarmpb.ControlClient, ref string) (func(io.Writer), func() (json.RawMessage, error), error) {
			svc, err := a.getService(ctl, ref)
			if err != nil {
				return nil, nil, err
			}
			names, err := a.serviceNetworkNames(ctl, svc)
			if err != nil {
				return nil, nil, err
			}
			nets := serviceNetworks(svc, names)
			return func(w io.Writer) {
					printServicePretty(w, svc)
					printServiceNetworks(w, nets)
				},
				func() (json.RawMessage, error) {
					var extra map[string]any
					if len(nets) > 0 {
						extra = map[string]any{"Networks": nets}
					}
					return marshalObject(svc, extra)
				}, nil
		})
}

func (a *app) serviceScaleCommand() *cobra.Command {
	var detach bool
	var timeout = defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS...",
		Short: "Scale one or more replicated services",
		Args:  minArgs(1, "SERVICE=REPLICAS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			type scale struct {
				ref string
				n   uint64
			}
			var scales []scale
			for _, arg := range args {
				ref, num, ok := strings.Cut(arg, "=")
				n, err := strconv.ParseUint(num, 10, 64)
				if !ok || ref == "" || err != nil {
					return fmt.Errorf("invalid scale specifier %q: expected SERVICE=REPLICAS with REPLICAS >= 0", arg)
				}
				scales = append(scales, scale{ref, n})
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var errs []error
			for _, sc := range scales {
				if err := a.scaleOne(ctl, sc.ref, sc.n, detach, timeout); err != nil {
					errs = append(errs, err)
				}
			}
			return a.reportErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "exit immediately instead of waiting for the services to converge")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long to wait for each service to converge")
	return cmd
}

func (a *app) scaleOne(ctl swarmpb.ControlClient, ref string, n uint64, detach bool, timeout time.Duration) error {
	s, err := a.getService(ctl, ref)
	if err != nil {
		return err
	}
	if s.GetSpec().GetMode() != swarmpb.ServiceMode_SERVICE_MODE_REPLICATED {
		return fmt.Errorf("service %s: scale can only be used with replicated mode", ref)
	}
	spec := proto.Clone(s.GetSpec()).(*swarmpb.ServiceSpec)
	spec.Replicas = n
	updated, err := a.updateService(ctl, &swarmpb.UpdateServiceRequest{
		Service: s.GetId(), Version: s.GetMeta().GetVersion(), Spec: spec,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s scaled to %d\n", ref, n)
	if detach {
		return nil
	}
	id := s.GetId()
	if updated.GetId() != "" {
		id = updated.GetId()
	}
	return a.waitConverged(ctl, id, displayName(s), timeout)
}

func (a *app) serviceRollbackCommand() *cobra.Command {
	var detach bool
	var timeout = defaultWaitTimeout
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Revert a service to its previous spec",
		Args:  exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			s, err := a.updateService(ctl, &swarmpb.UpdateServiceRequest{Service: args[0], Rollback: true})
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, args[0])
			if detach {
				return nil
			}
			id := s.GetId()
			if id == "" {
				id = args[0]
			}
			return a.waitConverged(ctl, id, args[0], timeout)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "exit immediately instead of waiting for the service to converge")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "how long to wait for the service to converge")
	return cmd
}

func (a *app) serviceRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE...",
		Aliases: []string{"remove"},
		Short:   "Remove services",
		Args:    minArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			return a.forEach(args, func(ref string) error {
				if err := a.call(0, func(ctx context.Context) error {
					_, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: ref})
					return err
				}); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, ref)
				return nil
			})
		},
	}
}
