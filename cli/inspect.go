package cli

import (
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
	cmd := &cobra.Command{
		Use:   "inspect [--pretty] " + what + "...",
		Short: short,
		Args:  minArgs(1, what),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			if !pretty {
				if err := writeJSONArray(a.stdout, objs); err != nil {
					return err
				}
			}
			return a.reportErrors(failed)
		},
	}
	cmd.Flags().BoolVar(&pretty, "pretty", false, "print the information in a human friendly format")
	return cmd
}
