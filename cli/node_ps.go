package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// nodePsCommand is 'node ps [NODE...]': the tasks on nodes, this node by
// default ("self" names it too), as 'service ps' lays them out.
func (a *app) nodePsCommand() *cobra.Command {
	var noTrunc, quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] [NODE...]",
		Short: "List the tasks on nodes (default: this node)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseTaskFilterArgs("node ps", filters); err != nil {
				return err
			}
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			nodes := args
			if len(nodes) == 0 {
				nodes = []string{"self"}
			}
			var self string
			for i, n := range nodes {
				if n != "self" {
					continue
				}
				if self == "" {
					local, err := a.local()
					if err != nil {
						return err
					}
					if err := a.call(0, func(ctx context.Context) error {
						info, err := local.Info(ctx, &swarmpb.InfoRequest{})
						self = info.GetNodeId()
						return err
					}); err != nil {
						return err
					}
					if self == "" {
						return fmt.Errorf("this node is not part of a swarm: name the nodes to list")
					}
				}
				nodes[i] = self
			}
			var all []*swarmpb.Task
			nodeNames := map[string]string{}
			var failed []error
			for _, n := range nodes {
				var tasks []*swarmpb.Task
				var names map[string]string
				if err := a.call(0, func(ctx context.Context) (err error) {
					tasks, names, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Node: n})
					return err
				}); err != nil {
					failed = append(failed, err)
					continue
				}
				all = append(all, tasks...)
				for k, v := range names {
					nodeNames[k] = v
				}
			}
			tasks, err := filterTasks("node ps", filters, all, nodeNames)
			if err != nil {
				return err
			}
			rows := taskRows(tasks, nodeNames, a.opts.now(), noTrunc)
			if _, err := a.writeTaskRows(rows, quiet, fmtr); err != nil {
				return err
			}
			return a.reportErrors(failed)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display task IDs")
	f.StringVar(&format, "format", "", "format the output with a Go template or json")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output: desired-state=running|shutdown|accepted, id=ID, name=NAME, node=NODE")
	return cmd
}
