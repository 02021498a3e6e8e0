package cli

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/raftswarm/raftswarm/internal/listing"
	"github.com/raftswarm/raftswarm/internal/version"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// versionInfo is one binary's build, as 'version --format' sees it.
type versionInfo struct {
	Version    string
	GitCommit  string
	GoVersion  string
	APIVersion string
	OS         string `json:",omitempty"`
	Arch       string `json:",omitempty"`
}

// nodeVersion is a cluster node's reported daemon version.
type nodeVersion struct {
	ID       string
	Hostname string
	Role     string
	Status   string
	Version  string
}

// versionReport is what 'version --format' sees.
type versionReport struct {
	Client versionInfo
	Daemon *versionInfo  `json:",omitempty"`
	Nodes  []nodeVersion `json:",omitempty"`
	Errors []string      `json:",omitempty"`
}

func (a *app) versionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [--format TEMPLATE|json]",
		Short: "Show the version of swarmctl, of this node's daemon and of every node's daemon",
		Long: "Show swarmctl's version, the daemon's on this node (through its socket), and, on a manager,\n" +
			"the daemon version each node reports (nodes that are down show their last report).\n" +
			"Fields for --format: .Client, .Daemon (each .Version .GitCommit .GoVersion .APIVersion .OS .Arch), .Nodes, .Errors.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fmtr *rowFormatter
			if format != "" {
				var err error
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			v := version.Get()
			rep := versionReport{Client: versionInfo{v.Version, v.Commit, v.GoVersion, v.API, v.OS, v.Arch}}
			// The daemon and the cluster are best effort: the client's own
			// version is worth printing even when nothing answers.
			local, err := a.local()
			if err != nil {
				return err
			}
			var info *swarmpb.InfoResponse
			daemonErr := a.call(0, func(ctx context.Context) (err error) {
				info, err = local.Info(ctx, &swarmpb.InfoRequest{})
				return err
			})
			if daemonErr == nil {
				rep.Daemon = &versionInfo{Version: info.GetVersion(), GitCommit: info.GetGitCommit(), GoVersion: info.GetGoVersion(), APIVersion: info.GetApiVersion()}
				if info.GetRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER && info.GetState() == "active" {
					ctl, _ := a.control()
					var nodes []*swarmpb.NodeInfo
					if err := a.call(0, func(ctx context.Context) (err error) {
						nodes, err = listing.Nodes(ctx, ctl)
						return err
					}); err != nil {
						rep.Errors = append(rep.Errors, "nodes: "+err.Error())
					}
					for _, ni := range nodes {
						n := ni.GetNode()
						rep.Nodes = append(rep.Nodes, nodeVersion{ID: n.GetId(), Hostname: n.GetDescription().GetHostname(),
							Role: roleString(n.GetRole()), Status: nodeStatusString(n.GetStatus()), Version: n.GetDescription().GetDaemonVersion()})
					}
					sort.Slice(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Hostname < rep.Nodes[j].Hostname })
				}
			}
			if err := a.writeReport(fmtr, rep, escapeVersionReport(rep), []string{".Client", ".Daemon", ".Nodes", ".Errors"},
				func() { printVersionText(a.stdout, rep) }, rep.Errors); err != nil {
				return err
			}
			// Like docker version: the client's part is printed, and an
			// unreachable daemon is still an error.
			return daemonErr
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

func escapeVersionReport(r versionReport) versionReport {
	esc := func(v versionInfo) versionInfo { return escapedRow(v).(versionInfo) }
	r.Client = esc(r.Client)
	if r.Daemon != nil {
		d := esc(*r.Daemon)
		r.Daemon = &d
	}
	for i := range r.Nodes {
		r.Nodes[i] = escapedRow(r.Nodes[i]).(nodeVersion)
	}
	for i := range r.Errors {
		r.Errors[i] = escapeText(r.Errors[i])
	}
	return r
}

func printVersionText(w io.Writer, r versionReport) {
	block := func(title string, v versionInfo) {
		fmt.Fprintln(w, title)
		tw := newTable(w)
		writeCells(tw, " Version:", v.Version)
		writeCells(tw, " Git commit:", v.GitCommit)
		writeCells(tw, " Go version:", v.GoVersion)
		writeCells(tw, " API version:", v.APIVersion)
		if v.OS != "" {
			writeCells(tw, " OS/Arch:", v.OS+"/"+v.Arch)
		}
		_ = tw.Flush()
	}
	block("Client:", r.Client)
	if r.Daemon != nil {
		fmt.Fprintln(w)
		block("Daemon (this node):", *r.Daemon)
	}
	if len(r.Nodes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Nodes:")
		tw := newTable(w)
		fmt.Fprintln(tw, "HOSTNAME\tID\tROLE\tSTATUS\tVERSION")
		for _, n := range r.Nodes {
			writeCells(tw, n.Hostname, n.ID, n.Role, n.Status, n.Version)
		}
		_ = tw.Flush()
	}
}
