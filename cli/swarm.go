package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// validateAddr checks HOST[:PORT] (portRequired: HOST:PORT). An empty host is
// allowed only when allowEmptyHost (listen addresses such as ":2377").
func validateAddr(flag, addr string, portRequired, allowEmptyHost bool) error {
	host, port := addr, ""
	switch {
	case strings.HasPrefix(addr, "["):
		end := strings.Index(addr, "]")
		if end < 0 {
			return fmt.Errorf("invalid %s %q: missing ']'", flag, addr)
		}
		host = addr[1:end]
		rest := addr[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return fmt.Errorf("invalid %s %q: expected HOST[:PORT]", flag, addr)
			}
			port = rest[1:]
			if port == "" {
				return fmt.Errorf("invalid %s %q: empty port", flag, addr)
			}
		}
	case strings.Count(addr, ":") == 1:
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("invalid %s %q: %v", flag, addr, err)
		}
		host, port = h, p
		if port == "" {
			return fmt.Errorf("invalid %s %q: empty port", flag, addr)
		}
	}
	if host == "" && !allowEmptyHost {
		return fmt.Errorf("invalid %s %q: the host part is empty", flag, addr)
	}
	if strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("invalid %s %q: bad host %q", flag, addr, host)
	}
	if port == "" {
		if portRequired {
			return fmt.Errorf("invalid %s %q: expected HOST:PORT", flag, addr)
		}
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid %s %q: port must be a number between 1 and 65535", flag, addr)
	}
	return nil
}

func (a *app) initCommand() *cobra.Command {
	var req swarmpb.InitRequest
	cmd := &cobra.Command{
		Use:   "init --advertise-addr HOST[:PORT]",
		Short: "Initialize a swarm with this node as its first manager",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.AdvertiseAddr == "" {
				return fmt.Errorf("--advertise-addr is required")
			}
			if err := validateAddr("--advertise-addr", req.AdvertiseAddr, false, false); err != nil {
				return err
			}
			if req.ListenAddr != "" {
				if err := validateAddr("--listen-addr", req.ListenAddr, true, true); err != nil {
					return err
				}
			}
			local, err := a.local()
			if err != nil {
				return err
			}
			var resp *swarmpb.InitResponse
			err = a.call(lifecycleTimeout, func(ctx context.Context) (err error) {
				resp, err = local.Init(ctx, &req)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Swarm initialized: current node (%s) is now a manager.\n\n", resp.GetNodeId())
			fmt.Fprintf(a.stdout, "To add a worker to this swarm, run the following command:\n\n")
			fmt.Fprintf(a.stdout, "    swarmctl join --token %s %s\n\n", resp.GetWorkerToken(), resp.GetManagerAddr())
			fmt.Fprintf(a.stdout, "To add a manager to this swarm, run 'swarmctl join-token manager' and follow the instructions.\n")
			if k := resp.GetUnlockKey(); k != "" {
				fmt.Fprintln(a.stdout)
				a.printUnlockKey(k)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.AdvertiseAddr, "advertise-addr", "", "address advertised to other nodes (HOST[:PORT], default port 2377)")
	f.StringVar(&req.ListenAddr, "listen-addr", "", "address to listen on (HOST:PORT)")
	f.BoolVar(&req.ForceNewCluster, "force-new-cluster", false, "force a new cluster from the current state")
	f.BoolVar(&req.Autolock, "autolock", false, "lock managers after a restart until 'swarmctl swarm unlock' is given the unlock key")
	return cmd
}

func (a *app) joinCommand() *cobra.Command {
	var req swarmpb.JoinRequest
	cmd := &cobra.Command{
		Use:   "join --token TOKEN HOST:PORT",
		Short: "Join a swarm as a worker or a manager",
		Args:  exactArgs(1, "HOST:PORT of a manager"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Token == "" {
				return fmt.Errorf("--token is required")
			}
			if err := validateAddr("manager address", args[0], false, false); err != nil {
				return err
			}
			if req.AdvertiseAddr != "" {
				if err := validateAddr("--advertise-addr", req.AdvertiseAddr, false, false); err != nil {
					return err
				}
			}
			if req.ListenAddr != "" {
				if err := validateAddr("--listen-addr", req.ListenAddr, true, true); err != nil {
					return err
				}
			}
			req.RemoteAddr = args[0]
			local, err := a.local()
			if err != nil {
				return err
			}
			var resp *swarmpb.JoinResponse
			err = a.call(lifecycleTimeout, func(ctx context.Context) (err error) {
				resp, err = local.Join(ctx, &req)
				return err
			})
			if err != nil {
				return err
			}
			role := "worker"
			if resp.GetRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER {
				role = "manager"
			}
			fmt.Fprintf(a.stdout, "This node joined a swarm as a %s.\n", role)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Token, "token", "", "join token")
	f.StringVar(&req.AdvertiseAddr, "advertise-addr", "", "address advertised to other nodes (HOST[:PORT])")
	f.StringVar(&req.ListenAddr, "listen-addr", "", "address to listen on (HOST:PORT)")
	return cmd
}

func parseRole(s string) (swarmpb.NodeRole, error) {
	switch s {
	case "worker":
		return swarmpb.NodeRole_NODE_ROLE_WORKER, nil
	case "manager":
		return swarmpb.NodeRole_NODE_ROLE_MANAGER, nil
	}
	return 0, fmt.Errorf("invalid role %q: must be worker or manager", s)
}

func (a *app) joinTokenCommand() *cobra.Command {
	var quiet, rotate bool
	cmd := &cobra.Command{
		Use:   "join-token [-q] [--rotate] worker|manager",
		Short: "Show or rotate the join token of a role",
		Args:  exactArgs(1, "worker or manager"),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := parseRole(args[0])
			if err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var resp *swarmpb.GetJoinTokenResponse
			err = a.call(0, func(ctx context.Context) (err error) {
				resp, err = ctl.GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: role, Rotate: rotate})
				return err
			})
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(a.stdout, resp.GetToken())
				return nil
			}
			if rotate {
				fmt.Fprintf(a.stdout, "Successfully rotated %s join token.\n\n", args[0])
			}
			addr := "<manager-address>"
			if m := resp.GetManagers(); len(m) > 0 {
				addr = m[0]
			}
			fmt.Fprintf(a.stdout, "To add a %s to this swarm, run the following command:\n\n", args[0])
			fmt.Fprintf(a.stdout, "    swarmctl join --token %s %s\n", resp.GetToken(), addr)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display the token")
	cmd.Flags().BoolVar(&rotate, "rotate", false, "rotate the join token first")
	return cmd
}

func (a *app) leaveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "leave [--force]",
		Short: "Leave the swarm",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			local, err := a.local()
			if err != nil {
				return err
			}
			err = a.call(lifecycleTimeout, func(ctx context.Context) error {
				_, err := local.Leave(ctx, &swarmpb.LeaveRequest{Force: force})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Node left the swarm.")
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "leave even if this breaks the cluster's quorum")
	return cmd
}
