package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state/events"
)

// eventResumeWindow bounds how long 'events' keeps trying to resume a
// stream its daemon dropped (the manager restarting or stopping): every
// wait has a deadline.
const eventResumeWindow = 30 * time.Second

// eventRow is what --format sees of an event.
type eventRow struct {
	Time       string
	TimeNano   int64
	Index      uint64
	Seq        uint32
	Type       string
	Action     string
	ID         string
	Name       string
	Attributes map[string]string
}

var eventFields = []string{".Time", ".TimeNano", ".Index", ".Seq", ".Type", ".Action", ".ID", ".Name", ".Attributes"}

func (a *app) eventsCommand() *cobra.Command {
	var since, until, format string
	var filters []string
	var afterIndex uint64
	cmd := &cobra.Command{
		Use:   "events [--since T] [--until T] [--filter K=V]... [--format TEMPLATE|json]",
		Short: "Stream cluster events",
		Long: "Stream changes to the cluster (objects created, updated and removed; task and node state changes) as the\n" +
			"manager applies them, like 'docker events' for swarm objects. Each event carries the Raft index of the change.\n\n" +
			"--since and --until take an RFC 3339 time, Unix seconds, or a duration back from now (10m). Without --since,\n" +
			"only new events are shown; without --until, the stream runs until interrupted. A manager keeps its last\n" +
			strconv.Itoa(events.DefaultSize) + " events: asking for older ones is an error. If the manager goes away, the stream resumes\n" +
			"from the last event received, on this node's daemon, for up to " + eventResumeWindow.String() + ".\n\n" +
			"Filters (same key: any value; different keys: all): type=" + strings.Join(events.Types, "|") + ",\n" +
			"event=" + strings.Join(events.Actions, "|") + ", id=ID, name=NAME, service=NAME|ID (the service and its tasks),\n" +
			"node=NAME|ID (the node and its tasks).",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := events.ParseFilter(filters); err != nil {
				return err
			}
			req := &swarmpb.WatchEventsRequest{Filters: filters}
			now := a.opts.now()
			var err error
			if since != "" {
				if req.Since, err = parseEventTime("since", since, now); err != nil {
					return err
				}
			}
			if until != "" {
				if req.Until, err = parseEventTime("until", until, now); err != nil {
					return err
				}
				if req.Since != 0 && req.Until < req.Since {
					return fmt.Errorf("invalid --until %s: it is before --since", until)
				}
			}
			if cmd.Flags().Changed("after-index") {
				if since != "" {
					return errors.New("--since and --after-index cannot be used together")
				}
				req.AfterIndex = &afterIndex
				req.AfterSeq = ^uint32(0) // every event of that index was seen
			}
			var fmtr *rowFormatter
			if format != "" {
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			c, err := a.control()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			return a.streamEvents(ctx, c, req, fmtr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "show events from this time (RFC 3339, Unix seconds, or a duration back from now)")
	f.StringVar(&until, "until", "", "stop at this time (same forms as --since)")
	f.Uint64Var(&afterIndex, "after-index", 0, "show the events after this Raft index (resume a previous stream)")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter events (key=value; repeatable)")
	f.StringVar(&format, "format", "", "print each event with a Go template, or as json; fields: "+strings.Join(eventFields, " "))
	return cmd
}

// streamEvents prints the stream until it ends, resuming after the last
// position seen when the daemon drops it.
func (a *app) streamEvents(ctx context.Context, c swarmpb.ControlClient, req *swarmpb.WatchEventsRequest, fmtr *rowFormatter) error {
	var failingSince time.Time
	delay := 100 * time.Millisecond
	for {
		progressed, err := a.eventsOnce(ctx, c, req, fmtr)
		if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
			return nil
		}
		if !resumable(err) {
			return a.rpcError(ctx, 0, err)
		}
		if progressed {
			failingSince, delay = time.Time{}, 100*time.Millisecond
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(failingSince) > eventResumeWindow {
			return fmt.Errorf("the event stream ended and could not be resumed within %s: %v", eventResumeWindow, a.rpcError(ctx, 0, err))
		}
		if req.AfterIndex != nil {
			fmt.Fprintf(a.stderr, "Warning: event stream interrupted (%s); resuming after index %d\n", oneLine(errors.New(status.Convert(err).Message())), req.GetAfterIndex())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// resumable reports a stream end that another try may get past: the
// manager went away or the client fell behind (it resumes from the ring).
func resumable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}

// eventsOnce runs one stream, advancing req to resume after what it printed.
func (a *app) eventsOnce(ctx context.Context, c swarmpb.ControlClient, req *swarmpb.WatchEventsRequest, fmtr *rowFormatter) (progressed bool, err error) {
	stream, err := c.WatchEvents(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return progressed, err
		}
		if msg.GetStart() && req.AfterIndex == nil {
			idx, seq := msg.GetIndex(), msg.GetSeq()
			req.AfterIndex, req.AfterSeq, req.Since = &idx, seq, 0
		}
		for _, ev := range msg.GetEvents() {
			if err := a.printEvent(ev, fmtr); err != nil {
				return progressed, err
			}
			idx := ev.GetIndex()
			req.AfterIndex, req.AfterSeq, req.Since = &idx, ev.GetSeq(), 0
			progressed = true
		}
	}
}

// printEvent prints one event: Docker's layout, with the index, or --format.
func (a *app) printEvent(ev *swarmpb.ClusterEvent, fmtr *rowFormatter) error {
	ts := time.Unix(0, ev.GetTime()).UTC().Format(time.RFC3339Nano)
	if fmtr != nil {
		row := eventRow{Time: ts, TimeNano: ev.GetTime(), Index: ev.GetIndex(), Seq: ev.GetSeq(), Type: ev.GetType(),
			Action: ev.GetAction(), ID: ev.GetId(), Name: ev.GetName(), Attributes: map[string]string{}}
		for k, v := range ev.GetAttributes() {
			if fmtr.json {
				row.Attributes[k] = v
			} else {
				row.Attributes[escapeText(k)] = escapeText(v)
			}
		}
		return fmtr.write(a.stdout, row, eventFields)
	}
	attrs := []string{}
	if ev.GetName() != "" {
		attrs = append(attrs, "name="+ev.GetName())
	}
	keys := make([]string, 0, len(ev.GetAttributes()))
	for k := range ev.GetAttributes() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k+"="+ev.GetAttributes()[k])
	}
	line := fmt.Sprintf("%s %s %s %s (%s) index=%d", ts, ev.GetType(), ev.GetAction(), ev.GetId(), strings.Join(attrs, ", "), ev.GetIndex())
	_, err := fmt.Fprintln(a.stdout, escapeText(line))
	return err
}

// parseEventTime reads --since/--until: RFC 3339, Unix seconds (with an
// optional fraction), or a Go duration back from now.
func parseEventTime(flag, s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UnixNano(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UnixNano(), nil
	}
	return 0, fmt.Errorf("invalid --%s %q: use an RFC 3339 time (2006-01-02T15:04:05Z), Unix seconds, or a duration such as 10m", flag, s)
}
