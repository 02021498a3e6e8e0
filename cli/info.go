package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// managerInfo is one manager as 'info' shows it.
type managerInfo struct {
	ID            string
	Hostname      string
	Addr          string
	ManagerStatus string // Leader | Reachable | Unreachable
}

// infoReport is what 'info --format' sees.
type infoReport struct {
	NodeID     string
	Addr       string
	State      string // inactive | active | locked
	Role       string
	ClusterID  string
	Version    string
	RaftIndex  uint64 `json:",omitempty"`
	RaftTerm   uint64 `json:",omitempty"`
	RaftLeader string `json:",omitempty"`
	Autolock   *bool  `json:",omitempty"`
	Managers   []managerInfo
	Nodes      *int     `json:",omitempty"`
	NodesReady *int     `json:",omitempty"`
	Services   *int     `json:",omitempty"`
	Tasks      *int     `json:",omitempty"`
	TasksRun   *int     `json:"TasksRunning,omitempty"`
	Errors     []string `json:",omitempty"`
}

func (a *app) infoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [--format TEMPLATE|json]",
		Short: "Show this node and the cluster it belongs to",
		Long: "Show this node (ID, address, role), its cluster (ID, autolock), the managers and whether each is\n" +
			"reachable, this manager's Raft index, term and leader, and the number of nodes, services and tasks.\n" +
			"On a worker only what the node itself knows is shown. Fields for --format: .NodeID .Addr .State .Role\n" +
			".ClusterID .Version .RaftIndex .RaftTerm .RaftLeader .Autolock .Managers .Nodes .NodesReady .Services\n" +
			".Tasks .TasksRun .Errors.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fmtr *rowFormatter
			if format != "" {
				var err error
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			local, err := a.local()
			if err != nil {
				return err
			}
			var info *swarmpb.InfoResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				info, err = local.Info(ctx, &swarmpb.InfoRequest{})
				return err
			}); err != nil {
				return err
			}
			rep := infoReport{NodeID: info.GetNodeId(), Addr: info.GetAddr(), State: info.GetState(), ClusterID: info.GetClusterId(),
				Version: info.GetVersion(), RaftIndex: info.GetRaftIndex(), RaftTerm: info.GetRaftTerm(), RaftLeader: info.GetRaftLeader()}
			if rep.State != "inactive" {
				rep.Role = roleString(info.GetRole())
			}
			for _, m := range info.GetManagers() {
				rep.Managers = append(rep.Managers, managerInfo{Addr: m})
			}
			if rep.Role == "manager" && rep.State == "active" {
				a.clusterInfo(&rep)
			}
			return a.writeReport(fmtr, rep, escapeInfo(rep), []string{".NodeID", ".Role", ".ClusterID", ".Managers", ".RaftIndex"},
				func() { printInfoText(a.stdout, rep) }, rep.Errors)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

// clusterInfo adds what a manager can tell about the cluster. Each part
// is best effort: a cluster without quorum still shows the node's side.
func (a *app) clusterInfo(rep *infoReport) {
	ctl, err := a.control()
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	var nodes []*swarmpb.NodeInfo
	if err := a.call(0, func(ctx context.Context) (err error) {
		nodes, err = listing.Nodes(ctx, ctl)
		return err
	}); err != nil {
		rep.Errors = append(rep.Errors, "cluster state: "+err.Error())
		return
	}
	rep.Managers = nil
	ready := 0
	for _, ni := range nodes {
		n := ni.GetNode()
		if n.GetStatus() == swarmpb.NodeStatus_NODE_STATUS_READY {
			ready++
		}
		if ni.GetManagerStatus() != "" {
			rep.Managers = append(rep.Managers, managerInfo{ID: n.GetId(), Hostname: n.GetDescription().GetHostname(), Addr: n.GetAddr(), ManagerStatus: ni.GetManagerStatus()})
		}
	}
	sort.Slice(rep.Managers, func(i, j int) bool { return rep.Managers[i].Hostname < rep.Managers[j].Hostname })
	nn := len(nodes)
	rep.Nodes, rep.NodesReady = &nn, &ready
	var cluster *swarmpb.GetClusterResponse
	if err := a.call(0, func(ctx context.Context) (err error) {
		cluster, err = ctl.GetCluster(ctx, &swarmpb.GetClusterRequest{})
		return err
	}); err != nil {
		rep.Errors = append(rep.Errors, "cluster settings: "+err.Error())
	} else {
		al := cluster.GetCluster().GetSettings().GetAutolock()
		rep.Autolock = &al
	}
	var services []*swarmpb.ServiceInfo
	if err := a.call(0, func(ctx context.Context) (err error) {
		services, err = listing.Services(ctx, ctl)
		return err
	}); err != nil {
		rep.Errors = append(rep.Errors, "services: "+err.Error())
	} else {
		ns := len(services)
		rep.Services = &ns
	}
	var tasks []*swarmpb.Task
	if err := a.call(0, func(ctx context.Context) (err error) {
		tasks, _, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{})
		return err
	}); err != nil {
		rep.Errors = append(rep.Errors, "tasks: "+err.Error())
	} else {
		nt, running := len(tasks), 0
		for _, t := range tasks {
			if t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING {
				running++
			}
		}
		rep.Tasks, rep.TasksRun = &nt, &running
	}
}

func escapeInfo(r infoReport) infoReport {
	r = escapedRow(r).(infoReport)
	ms := make([]managerInfo, len(r.Managers))
	for i, m := range r.Managers {
		ms[i] = escapedRow(m).(managerInfo)
	}
	r.Managers = ms
	errs := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		errs[i] = escapeText(e)
	}
	r.Errors = errs
	return r
}

func printInfoText(w io.Writer, r infoReport) {
	tw := newTable(w)
	row := func(k, v string) { writeCells(tw, k, v) }
	count := func(n *int) string {
		if n == nil {
			return "?"
		}
		return strconv.Itoa(*n)
	}
	writeCells(tw, "Node:")
	row(" ID:", r.NodeID)
	row(" State:", r.State)
	if r.State != "inactive" {
		row(" Address:", r.Addr)
		row(" Role:", r.Role)
		row(" Cluster ID:", r.ClusterID)
	}
	row(" Version:", r.Version)
	if r.Role == "manager" && r.State == "active" {
		writeCells(tw, "Raft:")
		row(" Index:", strconv.FormatUint(r.RaftIndex, 10))
		row(" Term:", strconv.FormatUint(r.RaftTerm, 10))
		leader := r.RaftLeader
		if leader == "" {
			leader = "(none known)"
		}
		row(" Leader:", leader)
		if r.Autolock != nil {
			row("Autolock:", strconv.FormatBool(*r.Autolock))
		}
		row("Nodes:", count(r.Nodes)+" ("+count(r.NodesReady)+" ready)")
		row("Services:", count(r.Services))
		row("Tasks:", count(r.Tasks)+" ("+count(r.TasksRun)+" running)")
	}
	_ = tw.Flush()
	if len(r.Managers) > 0 {
		fmt.Fprintf(w, "Managers: %d\n", len(r.Managers))
		tw := newTable(w)
		if r.Managers[0].ID != "" {
			fmt.Fprintln(tw, " HOSTNAME\tID\tADDRESS\tMANAGER STATUS")
			for _, m := range r.Managers {
				writeCells(tw, " "+m.Hostname, m.ID, m.Addr, m.ManagerStatus)
			}
		} else {
			for _, m := range r.Managers {
				writeCells(tw, " "+m.Addr)
			}
		}
		_ = tw.Flush()
	}
}

// writeReport prints a report of info or version: JSON with --format json,
// the escaped copy through a template with --format TEMPLATE (fields say
// what a template may name in its error), else as text; then each error
// as a warning on stderr.
func (a *app) writeReport(fmtr *rowFormatter, rep, escaped any, fields []string, text func(), errs []string) error {
	switch {
	case fmtr != nil && fmtr.json:
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	case fmtr != nil:
		if err := fmtr.write(a.stdout, escaped, fields); err != nil {
			return err
		}
	default:
		text()
	}
	for _, e := range errs {
		fmt.Fprintf(a.stderr, "Warning: %s\n", escapeText(e))
	}
	return nil
}
