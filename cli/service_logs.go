package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// logStreamError is the LogLine stream on which the cluster reports a
// problem getting logs (api.LogStreamError; the CLI does not import api).
const logStreamError = "error"

func (a *app) serviceLogsCommand() *cobra.Command {
	var follow, timestamps bool
	var tail int64
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [-t] SERVICE|TASK",
		Short: "Show the logs of a service or task",
		Long: "Show the logs of a service's tasks, or of one task, read from the nodes that run them.\n" +
			"Each line is prefixed with service.slot.task@node. Lines a task wrote to stderr go to stderr.",
		Args: exactArgs(1, "SERVICE|TASK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < -1 {
				return fmt.Errorf("invalid --tail %d: use a number of lines, or -1 for all", tail)
			}
			c, err := a.control()
			if err != nil {
				return err
			}
			// Ctrl-C ends a follow: the stream is cancelled and the
			// command exits 0, like docker service logs -f.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			stream, err := c.ServiceLogs(ctx, &swarmpb.ServiceLogsRequest{
				Target: args[0], Follow: follow, Tail: tail, Timestamps: timestamps,
			})
			if err == nil {
				err = a.printLogs(stream, timestamps)
			}
			if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return a.rpcError(ctx, 0, err)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep streaming new lines")
	f.Int64Var(&tail, "tail", -1, "number of lines to show from the end of each task's log (-1: all)")
	f.BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	return cmd
}

// printLogs prints the stream until it ends: `[time ]name.slot.task@node | data`,
// one line each. The contexts arrive with the lines they describe.
func (a *app) printLogs(stream swarmpb.Control_ServiceLogsClient, timestamps bool) error {
	contexts := map[string]*swarmpb.LogContext{}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		for id, c := range msg.GetTasks() {
			contexts[id] = c
		}
		for _, l := range msg.GetLines() {
			data := bytes.TrimSuffix(l.GetData(), []byte("\n"))
			if l.GetStream() == logStreamError {
				fmt.Fprintf(a.stderr, "Warning: %s\n", escapeText(string(data)))
				continue
			}
			var prefix string
			if timestamps {
				prefix = time.Unix(0, l.GetTimestamp()).UTC().Format(time.RFC3339Nano) + " "
			}
			// The prefix names come from the cluster state; the data is the
			// container's own output, printed as it is (like docker logs).
			prefix += escapeText(logPrefix(l.GetTaskId(), contexts[l.GetTaskId()]))
			w := a.stdout
			if l.GetStream() == "stderr" {
				w = a.stderr
			}
			fmt.Fprintf(w, "%s | %s\n", prefix, data)
		}
	}
}

// logPrefix is Docker's name.slot.task@node; global tasks have the node
// ID where the slot would be.
func logPrefix(taskID string, c *swarmpb.LogContext) string {
	instance := strconv.FormatUint(c.GetSlot(), 10)
	if c.GetSlot() == 0 {
		instance = c.GetNodeId()
	}
	node := c.GetNodeName()
	if node == "" {
		node = c.GetNodeId()
	}
	return fmt.Sprintf("%s.%s.%s@%s", c.GetServiceName(), instance, shortID(taskID), node)
}
