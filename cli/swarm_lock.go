package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

// swarm: cluster settings, autolock and the unlock key.

func (a *app) swarmCommand() *cobra.Command {
	cmd := groupCommand("swarm", "Manage the swarm: settings, autolock, unlock")
	cmd.AddCommand(a.swarmInspectCommand(), a.swarmUpdateCommand(), a.swarmUnlockKeyCommand(), a.swarmUnlockCommand())
	return cmd
}

// printUnlockKey prints the unlock key with the guidance docker gives.
func (a *app) printUnlockKey(key string) {
	fmt.Fprintf(a.stdout, "To unlock a swarm manager after it restarts, run the `swarmctl swarm unlock`\ncommand and provide the following key:\n\n    %s\n\n", key)
	fmt.Fprintf(a.stdout, "Remember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n")
}

func (a *app) swarmInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--format TEMPLATE|json]",
		Short: "Show the cluster's settings (never its keys)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fmtr *rowFormatter
			if format != "" {
				var err error
				if fmtr, err = parseFormat(format); err != nil {
					return err
				}
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.GetClusterResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.GetCluster(ctx, &swarmpb.GetClusterRequest{})
				return err
			}); err != nil {
				return err
			}
			obj, err := marshalObject(resp.GetCluster(), nil)
			if err != nil {
				return err
			}
			if fmtr != nil {
				return writeInspectFormat(a.stdout, fmtr, []json.RawMessage{obj})
			}
			return writeJSONArray(a.stdout, []json.RawMessage{obj})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output with a Go template over the JSON object, or json")
	return cmd
}

func (a *app) swarmUpdateCommand() *cobra.Command {
	var autolock bool
	var maxReplicas uint64
	cmd := &cobra.Command{
		Use:   "update [--autolock=true|false] [--max-replicas N]",
		Short: "Change the cluster's settings",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var req swarmpb.UpdateClusterRequest
			if cmd.Flags().Changed("autolock") {
				req.Autolock = &autolock
			}
			if cmd.Flags().Changed("max-replicas") {
				if err := spec.ValidateMaxReplicas(maxReplicas); err != nil {
					return err
				}
				req.MaxReplicas = &maxReplicas
			}
			if req.Autolock == nil && req.MaxReplicas == nil {
				return errors.New("nothing to update: give --autolock or --max-replicas")
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.UpdateClusterResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.UpdateCluster(ctx, &req)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Swarm updated.")
			if k := resp.GetUnlockKey(); k != "" {
				fmt.Fprintln(a.stdout)
				a.printUnlockKey(k)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&autolock, "autolock", false, "lock managers after a restart until 'swarmctl swarm unlock' (true or false)")
	cmd.Flags().Uint64Var(&maxReplicas, "max-replicas", 0, fmt.Sprintf("replicas a service may ask for (1 to %d)", spec.MaxReplicasLimit))
	return cmd
}

func (a *app) swarmUnlockKeyCommand() *cobra.Command {
	var quiet, rotate bool
	cmd := &cobra.Command{
		Use:   "unlock-key [-q] [--rotate]",
		Short: "Show or rotate the key that unlocks a restarted manager",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.GetUnlockKeyResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.GetUnlockKey(ctx, &swarmpb.GetUnlockKeyRequest{Rotate: rotate})
				return err
			}); err != nil {
				return err
			}
			key := resp.GetUnlockKey()
			if key == "" {
				return errors.New("no unlock key is set: autolock is off (turn it on with 'swarmctl swarm update --autolock=true')")
			}
			if quiet {
				fmt.Fprintln(a.stdout, key)
				return nil
			}
			if rotate {
				fmt.Fprintf(a.stdout, "Successfully rotated manager unlock key.\n\n")
			}
			a.printUnlockKey(key)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display the key")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the key first (managers that are down keep needing the old one)")
	return cmd
}

func (a *app) swarmUnlockCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unlock",
		Short: "Unlock a manager that restarted with autolock on (reads the key from stdin)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := a.readUnlockKey()
			if err != nil {
				return err
			}
			local, err := a.local()
			if err != nil {
				return err
			}
			if err := a.call(lifecycleTimeout, func(ctx context.Context) error {
				_, err := local.Unlock(ctx, &swarmpb.UnlockRequest{UnlockKey: key})
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Swarm manager unlocked.")
			return nil
		},
	}
}

// readUnlockKey reads one line from stdin, prompting on a terminal.
func (a *app) readUnlockKey() (string, error) {
	in := a.opts.stdin
	if in == nil {
		in = os.Stdin
	}
	if isTerminalFile(in) {
		fmt.Fprint(a.stdout, "Enter unlock key: ")
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the unlock key from stdin: %v", err)
	}
	key := strings.TrimSpace(line)
	if key == "" {
		return "", errors.New("no unlock key given: type it, or pipe it to stdin")
	}
	return key, nil
}

// isTerminalFile reports whether r is a terminal: a character device other
// than /dev/null.
func isTerminalFile(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
