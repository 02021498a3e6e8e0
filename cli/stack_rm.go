package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/raftswarm/raftswarm/internal/listing"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/stack"
)

// stackRmWait bounds how long stack rm waits for a stack's tasks to stop
// before removing its networks and volumes, which are in use until then.
const stackRmWait = 2 * time.Minute

func (a *app) stackRmCommand() *cobra.Command {
	var volumes bool
	cmd := &cobra.Command{
		Use:     "rm [--volumes] STACK [STACK...]",
		Aliases: []string{"remove", "down"},
		Short:   "Remove stacks: their services, networks, secrets and configs",
		Long: `Remove stacks: their services, networks, secrets and configs.

Named volumes are kept, as Docker does, unless --volumes is given: then they
are removed on every node that has them, once the stack's tasks stopped.`,
		Args: minArgs(1, "STACK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return a.removeStack(ctl, args[0], volumes)
			}
			var failed []string
			for _, name := range args {
				if err := a.removeStack(ctl, name, volumes); err != nil {
					fmt.Fprintf(a.stderr, "Error: %s\n", oneLine(err))
					failed = append(failed, name)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("could not remove every part of stack(s) %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also remove the stack's named volumes on every node")
	return cmd
}

func inStack(labels map[string]string, name string) bool {
	return labels[stack.NamespaceLabel] == name
}

func (a *app) removeStack(ctl swarmpb.ControlClient, name string, withVolumes bool) error {
	infos, err := a.stackServices(ctl, name)
	if err != nil {
		return err
	}
	networks, err := a.stackNetworks(ctl, name)
	if err != nil && !stackHasCode(err, codes.Unimplemented) {
		return err
	}
	secrets, configs, err := a.stackData(ctl, name)
	if err != nil && !stackHasCode(err, codes.Unimplemented) {
		return err
	}
	if len(infos)+len(networks)+len(secrets)+len(configs) == 0 {
		return fmt.Errorf("nothing found in stack: %s", name)
	}
	// The stack's named volumes, as its services mount them.
	volSet := map[string]bool{}
	ids := map[string]bool{}
	for _, si := range infos {
		s := si.GetService()
		ids[s.GetId()] = true
		for _, m := range s.GetSpec().GetContainer().GetMounts() {
			if m.GetType() == swarmpb.Mount_TYPE_VOLUME && m.GetSource() != "" && inStack(m.GetVolumeLabels(), name) {
				volSet[m.GetSource()] = true
			}
		}
	}
	var problems []string
	for _, si := range infos {
		s := si.GetService()
		fmt.Fprintf(a.stdout, "Removing service %s\n", escapeText(s.GetSpec().GetName()))
		if err := a.stackCall(func(ctx context.Context) error {
			_, err := ctl.RemoveService(ctx, &swarmpb.RemoveServiceRequest{Service: s.GetId()})
			return err
		}); err != nil && !stackNotFound(err) {
			problems = append(problems, fmt.Sprintf("service %s: %v", s.GetSpec().GetName(), err))
		}
	}
	// Secrets, configs, networks and volumes are in use until the tasks
	// have stopped: the managers refuse to remove them before.
	if len(ids) > 0 && (len(networks)+len(secrets)+len(configs) > 0 || (withVolumes && len(volSet) > 0)) {
		if err := a.waitTasksGone(ctl, ids); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, s := range secrets {
		fmt.Fprintf(a.stdout, "Removing secret %s\n", escapeText(s))
		if err := a.stackCall(func(ctx context.Context) error {
			_, err := ctl.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: s})
			return err
		}); err != nil && !stackNotFound(err) {
			problems = append(problems, fmt.Sprintf("secret %s: %v", s, err))
		}
	}
	for _, c := range configs {
		fmt.Fprintf(a.stdout, "Removing config %s\n", escapeText(c))
		if err := a.stackCall(func(ctx context.Context) error {
			_, err := ctl.RemoveConfig(ctx, &swarmpb.RemoveConfigRequest{Config: c})
			return err
		}); err != nil && !stackNotFound(err) {
			problems = append(problems, fmt.Sprintf("config %s: %v", c, err))
		}
	}
	for _, n := range networks {
		fmt.Fprintf(a.stdout, "Removing network %s\n", escapeText(n))
		if err := a.stackCall(func(ctx context.Context) error {
			_, err := ctl.RemoveNetwork(ctx, &swarmpb.RemoveNetworkRequest{Network: n})
			return err
		}); err != nil && !stackNotFound(err) {
			problems = append(problems, fmt.Sprintf("network %s: %v", n, err))
		}
	}
	vols := make([]string, 0, len(volSet))
	for v := range volSet {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	if len(vols) > 0 && !withVolumes {
		fmt.Fprintf(a.stdout, "Volumes are kept: %s (swarmctl stack rm --volumes %s removes them)\n",
			escapeText(strings.Join(vols, ", ")), escapeText(name))
	}
	if len(vols) > 0 && withVolumes {
		fmt.Fprintf(a.stdout, "Removing volumes %s on every node\n", escapeText(strings.Join(vols, ", ")))
		var resp *swarmpb.RemoveVolumesResponse
		if err := a.call(lifecycleTimeout, func(ctx context.Context) (err error) {
			resp, err = ctl.RemoveVolumes(ctx, &swarmpb.RemoveVolumesRequest{Names: vols})
			return err
		}); err != nil {
			problems = append(problems, fmt.Sprintf("volumes: %v", err))
		}
		for _, r := range resp.GetResults() {
			node := r.GetHostname()
			if node == "" {
				node = r.GetNodeId()
			}
			switch {
			case r.GetError() != "":
				problems = append(problems, fmt.Sprintf("volume %s on node %s: %s", r.GetName(), node, r.GetError()))
			case r.GetRemoved():
				fmt.Fprintf(a.stdout, "  removed volume %s on node %s\n", escapeText(r.GetName()), escapeText(node))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("stack %s: %s", name, strings.Join(problems, "; "))
	}
	return nil
}

// waitTasksGone waits until no task of the given services is left.
func (a *app) waitTasksGone(ctl swarmpb.ControlClient, services map[string]bool) error {
	deadline := time.Now().Add(stackRmWait)
	ticker := time.NewTicker(a.opts.pollInterval)
	defer ticker.Stop()
	for {
		var tasks []*swarmpb.Task
		if err := a.stackCall(func(ctx context.Context) (err error) {
			tasks, _, err = listing.Tasks(ctx, ctl, &swarmpb.ListTasksRequest{})
			return err
		}); err != nil {
			return err
		}
		left := 0
		for _, t := range tasks {
			if services[t.GetServiceId()] {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%d tasks of the stack were still stopping after %s", left, stackRmWait)
		}
		<-ticker.C
	}
}

// stackNetworks names the networks of a stack.
func (a *app) stackNetworks(ctl swarmpb.ControlClient, name string) ([]string, error) {
	var out []string
	token := ""
	for page := 0; page < 10000; page++ {
		var resp *swarmpb.ListNetworksResponse
		if err := a.stackCall(func(ctx context.Context) (err error) {
			resp, err = ctl.ListNetworks(ctx, &swarmpb.ListNetworksRequest{PageToken: token})
			return err
		}); err != nil {
			return nil, err
		}
		for _, n := range resp.GetNetworks() {
			if inStack(n.GetNetwork().GetSpec().GetLabels(), name) {
				out = append(out, n.GetNetwork().GetSpec().GetName())
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	sort.Strings(out)
	return out, nil
}

// stackData names the secrets and configs of a stack.
func (a *app) stackData(ctl swarmpb.ControlClient, name string) (secrets, configs []string, err error) {
	token := ""
	for page := 0; page < 10000; page++ {
		var resp *swarmpb.ListSecretsResponse
		if err := a.stackCall(func(ctx context.Context) (err error) {
			resp, err = ctl.ListSecrets(ctx, &swarmpb.ListSecretsRequest{PageToken: token})
			return err
		}); err != nil {
			return nil, nil, err
		}
		for _, s := range resp.GetSecrets() {
			if inStack(s.GetLabels(), name) {
				secrets = append(secrets, s.GetName())
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	token = ""
	for page := 0; page < 10000; page++ {
		var resp *swarmpb.ListConfigsResponse
		if err := a.stackCall(func(ctx context.Context) (err error) {
			resp, err = ctl.ListConfigs(ctx, &swarmpb.ListConfigsRequest{PageToken: token})
			return err
		}); err != nil {
			return secrets, nil, err
		}
		for _, c := range resp.GetConfigs() {
			if inStack(c.GetLabels(), name) {
				configs = append(configs, c.GetName())
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	sort.Strings(secrets)
	sort.Strings(configs)
	return secrets, configs, nil
}
