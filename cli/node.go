package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

func (a *app) nodeCommand() *cobra.Command {
	cmd := groupCommand("node", "Manage swarm nodes")
	cmd.AddCommand(
		a.nodeLsCommand(),
		a.nodeInspectCommand(),
		a.nodePsCommand(),
		a.nodeRoleCommand(true),
		a.nodeRoleCommand(false),
		a.nodeUpdateCommand(),
		a.nodeRmCommand(),
	)
	return cmd
}

// nodeRow is one line of `node ls`, and what --format templates see.
type nodeRow struct {
	ID            string
	Hostname      string
	Status        string
	Availability  string
	ManagerStatus string
	EngineVersion string
	Self          bool
}

var nodeFields = []string{".ID", ".Hostname", ".Status", ".Availability", ".ManagerStatus", ".EngineVersion", ".Self"}

func nodeStatusString(s swarmpb.NodeStatus) string {
	switch s {
	case swarmpb.NodeStatus_NODE_STATUS_READY:
		return "Ready"
	case swarmpb.NodeStatus_NODE_STATUS_DOWN:
		return "Down"
	}
	return "Unknown"
}

func availabilityString(v swarmpb.NodeAvailability) string {
	switch v {
	case swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE:
		return "Pause"
	case swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return "Drain"
	}
	return "Active"
}

func parseAvailability(s string) (swarmpb.NodeAvailability, error) {
	switch strings.ToLower(s) {
	case "active":
		return swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE, nil
	case "pause":
		return swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE, nil
	case "drain":
		return swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN, nil
	}
	return 0, fmt.Errorf("invalid availability %q: must be active, pause or drain", s)
}

func roleString(r swarmpb.NodeRole) string {
	if r == swarmpb.NodeRole_NODE_ROLE_MANAGER {
		return "manager"
	}
	return "worker"
}

func (a *app) nodeLsCommand() *cobra.Command {
	var quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--filter K=V]... [--format TEMPLATE|json]",
		Aliases: []string{"list"},
		Short:   "List the nodes of the swarm",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := parseListFilters("node ls", nodeLsFilters, filters)
			if err == nil {
				err = validateNodeFilters(flt)
			}
			if err != nil {
				return err
			}
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			local, _ := a.local()
			var self string
			// Info only marks our own node; a failure there is not fatal.
			_ = a.call(0, func(ctx context.Context) error {
				info, err := local.Info(ctx, &swarmpb.InfoRequest{})
				self = info.GetNodeId()
				return err
			})
			var nodes []*swarmpb.NodeInfo
			if err := a.call(0, func(ctx context.Context) (err error) {
				nodes, err = listing.Nodes(ctx, ctl)
				return err
			}); err != nil {
				return err
			}
			rows := make([]nodeRow, 0, len(nodes))
			for _, ni := range nodes {
				n := ni.GetNode()
				if !flt.match(func(k, v string) bool { return nodeFilterMatch(n, k, v) }) {
					continue
				}
				rows = append(rows, nodeRow{
					ID:            n.GetId(),
					Hostname:      n.GetDescription().GetHostname(),
					Status:        nodeStatusString(n.GetStatus()),
					Availability:  availabilityString(n.GetSpec().GetAvailability()),
					ManagerStatus: ni.GetManagerStatus(),
					EngineVersion: n.GetDescription().GetEngineVersion(),
					Self:          self != "" && n.GetId() == self,
				})
			}
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].Hostname != rows[j].Hostname {
					return rows[i].Hostname < rows[j].Hostname
				}
				return rows[i].ID < rows[j].ID
			})
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(a.stdout, escapeText(r.ID))
				}
			case fmtr != nil:
				anyRows := make([]any, len(rows))
				for i := range rows {
					anyRows[i] = rows[i]
				}
				return fmtr.writeRows(a.stdout, anyRows, nodeFields)
			default:
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tAVAILABILITY\tMANAGER STATUS\tENGINE VERSION")
				for _, r := range rows {
					id := r.ID
					if r.Self {
						id += " *"
					}
					writeCells(tw, id, r.Hostname, r.Status, r.Availability, r.ManagerStatus, r.EngineVersion)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display node IDs")
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter output: id=ID, label=KEY[=VALUE], node.label=KEY[=VALUE], membership=accepted|pending, name=NAME, role=manager|worker")
	return cmd
}

func (a *app) getNode(ctl swarmpb.ControlClient, ref string) (*swarmpb.NodeInfo, error) {
	var resp *swarmpb.GetNodeResponse
	err := a.call(0, func(ctx context.Context) (err error) {
		resp, err = ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: ref})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetNode(), nil
}

func (a *app) nodeInspectCommand() *cobra.Command {
	return a.inspectCommand("NODE", "Display detailed information on nodes",
		func(ctl swarmpb.ControlClient, ref string) (func(io.Writer), func() (json.RawMessage, error), error) {
			ni, err := a.getNode(ctl, ref)
			if err != nil {
				return nil, nil, err
			}
			return func(w io.Writer) { printNodePretty(w, ni) },
				func() (json.RawMessage, error) {
					return marshalObject(ni.GetNode(), map[string]any{"managerStatus": ni.GetManagerStatus()})
				}, nil
		})
}

// nodeRoleCommand builds `node promote` (promote) or `node demote`.
func (a *app) nodeRoleCommand(promote bool) *cobra.Command {
	use, short, role := "demote NODE...", "Demote managers to workers", swarmpb.NodeRole_NODE_ROLE_WORKER
	if promote {
		use, short, role = "promote NODE...", "Promote nodes to managers", swarmpb.NodeRole_NODE_ROLE_MANAGER
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  minArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			return a.forEach(args, func(ref string) error {
				r := role
				err := a.call(0, func(ctx context.Context) error {
					_, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: ref, DesiredRole: &r})
					return err
				})
				if err != nil {
					return err
				}
				if promote {
					fmt.Fprintf(a.stdout, "Node %s promoted to a manager in the swarm.\n", ref)
				} else {
					fmt.Fprintf(a.stdout, "Manager %s demoted in the swarm.\n", ref)
				}
				return nil
			})
		},
	}
}

// forEach runs fn over every argument, printing each failure on stderr, and
// reports an error when any failed.
func (a *app) forEach(args []string, fn func(string) error) error {
	var errs []error
	for _, arg := range args {
		if err := fn(arg); err != nil {
			errs = append(errs, err)
		}
	}
	return a.reportErrors(errs)
}

// reportErrors prints all but the last error on stderr and returns the last,
// which the caller prints as the final "Error: " line.
func (a *app) reportErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	for _, err := range errs[:len(errs)-1] {
		fmt.Fprintf(a.stderr, "Error: %s\n", oneLine(err))
	}
	return errs[len(errs)-1]
}

func (a *app) nodeUpdateCommand() *cobra.Command {
	var availability string
	var labelAdd, labelRm []string
	cmd := &cobra.Command{
		Use:   "update [--availability active|pause|drain] [--label-add K=V]... [--label-rm K]... NODE",
		Short: "Update a node",
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &swarmpb.UpdateNodeRequest{Node: args[0]}
			if cmd.Flags().Changed("availability") {
				av, err := parseAvailability(availability)
				if err != nil {
					return err
				}
				req.Availability = &av
			}
			req.LabelAdd = labelMap(labelAdd, nil)
			// The managers' label rules; they check the merged labels too.
			if err := spec.ValidateLabels("node label", req.LabelAdd); err != nil {
				return err
			}
			for _, k := range labelRm {
				if strings.TrimSpace(k) == "" || strings.Contains(k, "=") {
					return fmt.Errorf("invalid --label-rm %q: expected a label key", k)
				}
				req.LabelRm = append(req.LabelRm, k)
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			if err := a.call(0, func(ctx context.Context) error {
				_, err := ctl.UpdateNode(ctx, req)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, args[0])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&availability, "availability", "", "availability of the node (active, pause, drain)")
	f.StringArrayVar(&labelAdd, "label-add", nil, "add or update a node label (KEY=VALUE)")
	f.StringArrayVar(&labelRm, "label-rm", nil, "remove a node label if it exists")
	return cmd
}

func (a *app) nodeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [--force] NODE...",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the swarm",
		Args:    minArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			return a.forEach(args, func(ref string) error {
				if err := a.call(0, func(ctx context.Context) error {
					_, err := ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: ref, Force: force})
					return err
				}); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, ref)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force-remove a node from the swarm")
	return cmd
}
