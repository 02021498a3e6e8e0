package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/stack"
)

func (a *app) stackCommand() *cobra.Command {
	cmd := groupCommand("stack", "Manage stacks deployed from Compose files")
	cmd.AddCommand(
		a.stackDeployCommand(),
		a.stackLsCommand(),
		a.stackServicesCommand(),
		a.stackPsCommand(),
		a.stackConfigCommand(),
		a.stackRmCommand(),
	)
	return cmd
}

// stackOf is the stack a service belongs to, or "".
func stackOf(s *swarmpb.Service) string {
	return s.GetSpec().GetLabels()[stack.NamespaceLabel]
}

// stackServices lists the services of one stack, by name.
func (a *app) stackServices(ctl swarmpb.ControlClient, name string) ([]*swarmpb.ServiceInfo, error) {
	var infos []*swarmpb.ServiceInfo
	if err := a.call(0, func(ctx context.Context) (err error) {
		infos, err = listing.Services(ctx, ctl)
		return err
	}); err != nil {
		return nil, err
	}
	var out []*swarmpb.ServiceInfo
	for _, si := range infos {
		if stackOf(si.GetService()) == name {
			out = append(out, si)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].GetService().GetSpec().GetName() < out[j].GetService().GetSpec().GetName()
	})
	return out, nil
}

// stackRPCError is a user-facing RPC error that keeps its gRPC code.
type stackRPCError struct {
	code codes.Code
	err  error
}

func (e *stackRPCError) Error() string { return e.err.Error() }

// stackCall is call under the default deadline, keeping the gRPC code of a
// failure for stackHasCode.
func (a *app) stackCall(fn func(ctx context.Context) error) error {
	code := codes.OK
	err := a.call(0, func(ctx context.Context) error {
		err := fn(ctx)
		code = status.Code(err)
		return err
	})
	if err != nil {
		return &stackRPCError{code: code, err: err}
	}
	return nil
}

func stackHasCode(err error, c codes.Code) bool {
	var ce *stackRPCError
	return errors.As(err, &ce) && ce.code == c
}

func stackNotFound(err error) bool { return stackHasCode(err, codes.NotFound) }

func (a *app) stackLsCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls [--format TEMPLATE|json]",
		Aliases: []string{"list"},
		Short:   "List stacks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
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
			count := map[string]int{}
			for _, si := range infos {
				if n := stackOf(si.GetService()); n != "" {
					count[n]++
				}
			}
			names := make([]string, 0, len(count))
			for n := range count {
				names = append(names, n)
			}
			sort.Strings(names)
			type stackRow struct {
				Name     string
				Services string
			}
			rows := make([]any, 0, len(names))
			for _, n := range names {
				rows = append(rows, stackRow{Name: n, Services: fmt.Sprint(count[n])})
			}
			if fmtr != nil {
				return fmtr.writeRows(a.stdout, rows, []string{".Name", ".Services"})
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "NAME\tSERVICES")
			for _, r := range rows {
				r := r.(stackRow)
				writeCells(tw, r.Name, r.Services)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

func (a *app) stackServicesCommand() *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "services [-q] [--format TEMPLATE|json] STACK",
		Short: "List the services of a stack",
		Args:  exactArgs(1, "STACK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			infos, err := a.stackServices(ctl, args[0])
			if err != nil {
				return err
			}
			if len(infos) == 0 {
				return fmt.Errorf("nothing found in stack: %s", args[0])
			}
			rows := make([]any, 0, len(infos))
			for _, si := range infos {
				s := si.GetService()
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
				return nil
			case fmtr != nil:
				return fmtr.writeRows(a.stdout, rows, serviceFields)
			}
			tw := newTable(a.stdout)
			fmt.Fprintln(tw, "ID\tNAME\tMODE\tREPLICAS\tIMAGE\tPORTS")
			for _, r := range rows {
				r := r.(serviceRow)
				writeCells(tw, r.ID, r.Name, r.Mode, r.Replicas, r.Image, r.Ports)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

func (a *app) stackPsCommand() *cobra.Command {
	var noTrunc, quiet bool
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] STACK",
		Short: "List the tasks of a stack",
		Args:  exactArgs(1, "STACK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseTaskFilterArgs("stack ps", filters); err != nil {
				return err
			}
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			infos, err := a.stackServices(ctl, args[0])
			if err != nil {
				return err
			}
			if len(infos) == 0 {
				return fmt.Errorf("nothing found in stack: %s", args[0])
			}
			ids := make([]string, 0, len(infos))
			for _, si := range infos {
				ids = append(ids, si.GetService().GetId())
			}
			var all []*swarmpb.Task
			var nodeNames map[string]string
			if err := a.call(0, func(ctx context.Context) (err error) {
				all, nodeNames, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Services: ids})
				return err
			}); err != nil {
				return err
			}
			tasks, err := filterTasks("stack ps", filters, all, nodeNames)
			if err != nil {
				return err
			}
			rows := taskRows(tasks, nodeNames, a.opts.now(), noTrunc)
			_, err = a.writeTaskRows(rows, quiet, fmtr)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display task IDs")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output: desired-state=running|shutdown|accepted, id=ID, name=NAME, node=NODE")
	f.StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

// composeLoadOptions are the Compose files' load settings of deploy and config.
type composeLoadOptions struct {
	files    []string
	profiles []string
}

func (o *composeLoadOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&o.files, "compose-file", "c", nil, "path to a Compose file (repeat to merge several, in order)")
	cmd.Flags().StringArrayVar(&o.profiles, "profile", nil, "enable a Compose profile (repeatable)")
}

func (o *composeLoadOptions) load(name string) (*stack.Project, error) {
	if len(o.files) == 0 {
		return nil, errors.New("no Compose file given: use -c FILE (repeatable)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return stack.Load(ctx, stack.LoadOptions{Files: o.files, Env: os.Environ(), Profiles: o.profiles, Name: name})
}

func (a *app) stackConfigCommand() *cobra.Command {
	var lo composeLoadOptions
	cmd := &cobra.Command{
		Use:   "config -c FILE [-c FILE...]",
		Short: "Print the merged, interpolated Compose file",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := lo.load("")
			if err != nil {
				return err
			}
			for _, w := range p.Warnings {
				fmt.Fprintf(a.stderr, "Warning: %s\n", escapeText(w))
			}
			out, err := p.Project.MarshalYAML()
			if err != nil {
				return fmt.Errorf("cannot print the project: %v", err)
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
	lo.register(cmd)
	return cmd
}
