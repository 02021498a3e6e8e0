package cli

import (
	"context"
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/spf13/cobra"
)

func (a *app) dashboardTokenCommand() *cobra.Command {
	var rotate bool
	cmd := &cobra.Command{
		Use:   "dashboard-token [--rotate]",
		Short: "Print the login token of the managers' web dashboard (--dashboard-addr on a non-loopback address)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.GetDashboardTokenResponse
			if err := a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.GetDashboardToken(ctx, &swarmpb.GetDashboardTokenRequest{Rotate: rotate})
				return err
			}); err != nil {
				return err
			}
			// The token is ours (base64url), but print it through the same
			// escaping as everything that comes from the cluster.
			fmt.Fprintln(a.stdout, escapeText(resp.GetToken()))
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token: every open dashboard session ends at once")
	return cmd
}
