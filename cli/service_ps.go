package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

const maxErrLength = 30

// taskRow is one line of `service ps`, and what --format templates see.
type taskRow struct {
	ID           string
	Name         string
	Image        string
	Node         string
	DesiredState string
	CurrentState string
	Error        string
	Ports        string

	child bool // an older task of the slot above
}

var taskFields = []string{".ID", ".Name", ".Image", ".Node", ".DesiredState", ".CurrentState", ".Error", ".Ports"}

func taskStateTitle(s swarmpb.TaskState) string {
	return titleWord(stateWord(s))
}

// taskRows orders tasks per service, then per slot (or node), newest first.
func taskRows(tasks []*swarmpb.Task, nodeNames map[string]string, now time.Time, noTrunc bool) []taskRow {
	type group struct {
		service string
		slot    uint64
		node    string
		tasks   []*swarmpb.Task
	}
	groups := map[string]*group{}
	var order []*group
	for _, t := range tasks {
		key := fmt.Sprintf("%s/%d/%s", t.GetServiceId(), t.GetSlot(), t.GetNodeId())
		if t.GetSlot() != 0 {
			key = fmt.Sprintf("%s/%d", t.GetServiceId(), t.GetSlot())
		}
		g, ok := groups[key]
		if !ok {
			g = &group{service: t.GetServiceName(), slot: t.GetSlot(), node: nodeNames[t.GetNodeId()]}
			groups[key] = g
			order = append(order, g)
		}
		g.tasks = append(g.tasks, t)
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.service != b.service {
			return a.service < b.service
		}
		if a.slot != b.slot {
			return a.slot < b.slot
		}
		return a.node < b.node
	})
	var rows []taskRow
	for _, g := range order {
		sort.SliceStable(g.tasks, func(i, j int) bool { return newer(g.tasks[i], g.tasks[j]) })
		for i, t := range g.tasks {
			rows = append(rows, makeTaskRow(t, nodeNames, now, noTrunc, i > 0))
		}
	}
	return rows
}

func makeTaskRow(t *swarmpb.Task, nodeNames map[string]string, now time.Time, noTrunc, child bool) taskRow {
	name := fmt.Sprintf("%s.%d", t.GetServiceName(), t.GetSlot())
	if t.GetSlot() == 0 {
		name = t.GetServiceName() + "." + t.GetNodeId()
	}
	id := t.GetId()
	if !noTrunc {
		id = shortID(id)
	}
	node := nodeNames[t.GetNodeId()]
	if node == "" {
		node = t.GetNodeId()
	}
	current := taskStateTitle(t.GetStatus().GetState())
	if ts := t.GetStatus().GetTimestamp(); ts != 0 {
		ago := now.Sub(time.Unix(0, ts))
		if ago < 0 {
			ago = 0
		}
		current += " " + strings.ToLower(units.HumanDuration(ago)) + " ago"
	}
	errText := t.GetStatus().GetErr()
	if errText == "" && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_PENDING {
		errText = t.GetSchedulingMessage()
	}
	if errText != "" {
		if !noTrunc && len([]rune(errText)) > maxErrLength {
			// ASCII, so that tabwriter's byte counting keeps columns aligned.
			errText = string([]rune(errText)[:maxErrLength-3]) + "..."
		}
		errText = fmt.Sprintf("%q", errText)
	}
	return taskRow{
		ID:           id,
		Name:         name,
		Image:        t.GetSpec().GetContainer().GetImage(),
		Node:         node,
		DesiredState: taskStateTitle(t.GetDesiredState()),
		CurrentState: current,
		Error:        errText,
		Ports:        formatPorts(t.GetSpec().GetPorts(), true),
		child:        child,
	}
}

func (a *app) servicePsCommand() *cobra.Command {
	var noTrunc, quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] SERVICE...",
		Short: "List the tasks of services",
		Args:  minArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseTaskFilterArgs("service ps", filters); err != nil {
				return err
			}
			var fmtr *rowFormatter
			var err error
			if format != "" {
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var all []*swarmpb.Task
			var nodeNames map[string]string
			if err := a.call(0, func(ctx context.Context) (err error) {
				all, nodeNames, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{Services: args})
				return err
			}); err != nil {
				return err
			}
			tasks, err := filterTasks("service ps", filters, all, nodeNames)
			if err != nil {
				return err
			}
			rows := taskRows(tasks, nodeNames, a.opts.now(), noTrunc)
			table, err := a.writeTaskRows(rows, quiet, fmtr)
			if err != nil {
				return err
			}
			if table {
				a.printUpdateStatus(ctl, args)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display task IDs")
	f.StringVar(&format, "format", "", "format the output with a Go template or json")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output: desired-state=running|shutdown|accepted, id=ID, name=NAME, node=NODE")
	return cmd
}

// printUpdateStatus adds, under the task table, the state of each
// service's last rolling update or rollback (as service inspect shows it).
func (a *app) printUpdateStatus(ctl swarmpb.ControlClient, services []string) {
	for _, ref := range services {
		svc, err := a.getService(ctl, ref)
		if err != nil {
			continue
		}
		us := svc.GetUpdateStatus()
		if us.Current() == swarmpb.UpdateState_UPDATE_STATE_UNSPECIFIED {
			continue
		}
		line := fmt.Sprintf("\n%s update status: %s", escapeText(svc.GetSpec().GetName()), escapeText(us.Current().Text()))
		if m := us.GetMessage(); m != "" {
			line += " (" + escapeText(m) + ")"
		}
		fmt.Fprintln(a.stdout, line)
	}
}

// writeTaskRows prints the rows of a ps command: IDs only with quiet,
// through fmtr with --format, else as the table. It says whether it
// printed the table.
func (a *app) writeTaskRows(rows []taskRow, quiet bool, fmtr *rowFormatter) (bool, error) {
	switch {
	case quiet:
		for _, r := range rows {
			fmt.Fprintln(a.stdout, escapeText(r.ID))
		}
		return false, nil
	case fmtr != nil:
		anyRows := make([]any, len(rows))
		for i := range rows {
			anyRows[i] = rows[i]
		}
		return false, fmtr.writeRows(a.stdout, anyRows, taskFields)
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tNODE\tDESIRED STATE\tCURRENT STATE\tERROR\tPORTS")
	for _, r := range rows {
		name := r.Name
		if r.child {
			name = ` \_ ` + name
		}
		writeCells(tw, r.ID, name, r.Image, r.Node, r.DesiredState, r.CurrentState, r.Error, r.Ports)
	}
	return true, tw.Flush()
}
