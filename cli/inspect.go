package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/spf13/cobra"
)

// inspectFetch looks one object up and returns how to print it: as text
// (--pretty) or as a JSON object.
type inspectFetch func(ctl swarmpb.ControlClient, ref string) (pretty func(io.Writer), asJSON func() (json.RawMessage, error), err error)

// inspectCommand builds `node inspect` and `service inspect`: a JSON array
// of every object found (or --pretty text), then an error for each that
// was not, with exit status 1.
func (a *app) inspectCommand(what, short string, fetch inspectFetch) *cobra.Command {
	var pretty bool
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--pretty | --format TEMPLATE|json] " + what + "...",
		Short: short,
		Long: short + ".\nWithout options: a JSON array. --format json prints one JSON object per line; a --format template\n" +
			"sees the JSON object, keys as printed (for example {{.id}} or {{.spec.name}}).",
		Args: minArgs(1, what),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fmtr *rowFormatter
			if format != "" {
				if pretty {
					return fmt.Errorf("--pretty and --format cannot be combined")
				}
				var err error
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var objs []json.RawMessage
			var failed []error
			printed := 0
			for _, ref := range args {
				text, asJSON, err := fetch(ctl, ref)
				if err != nil {
					failed = append(failed, err)
					continue
				}
				if pretty {
					if printed > 0 {
						fmt.Fprintln(a.stdout)
					}
					text(a.stdout)
					printed++
					continue
				}
				obj, err := asJSON()
				if err != nil {
					return err
				}
				objs = append(objs, obj)
			}
			switch {
			case fmtr != nil:
				if err := writeInspectFormat(a.stdout, fmtr, objs); err != nil {
					return err
				}
			case !pretty:
				if err := writeJSONArray(a.stdout, objs); err != nil {
					return err
				}
			}
			return a.reportErrors(failed)
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "print the information in a human friendly format")
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output with a Go template over the JSON object, or json")
	return cmd
}

// writeInspectFormat prints each object with --format: "json" as one
// line each, or a template over the decoded JSON (strings escaped).
func writeInspectFormat(w io.Writer, fmtr *rowFormatter, objs []json.RawMessage) error {
	var buf bytes.Buffer
	for _, obj := range objs {
		if fmtr.json {
			buf.Write(obj)
			buf.WriteByte('\n')
			continue
		}
		var v any
		if err := json.Unmarshal(obj, &v); err != nil {
			return err
		}
		if err := fmtr.tmpl.Execute(&buf, escapeJSONValue(v)); err != nil {
			return fmt.Errorf("invalid --format template: %v (fields are the JSON keys, e.g. .id, .spec)", oneLine(err))
		}
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// escapeJSONValue escapes every string of a decoded JSON value.
func escapeJSONValue(v any) any {
	switch x := v.(type) {
	case string:
		return escapeText(x)
	case []any:
		for i := range x {
			x[i] = escapeJSONValue(x[i])
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[escapeText(k)] = escapeJSONValue(e)
		}
		return out
	}
	return v
}
