package cli

import (
	"context"

	"github.com/spf13/cobra"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// `config` is the commands of secret.go over configs.

func (a *app) configCommand() *cobra.Command { return a.dataCommand(configAPI, "Manage configs") }

func configInfo(c *swarmpb.Config) *dataInfo {
	return &dataInfo{id: c.GetId(), name: c.GetName(), meta: c.GetMeta(), labels: c.GetLabels(), version: c.GetVersion(), versions: c.GetVersions()}
}

var configAPI = &dataAPI{
	noun: "config",
	create: func(ctx context.Context, ctl swarmpb.ControlClient, name string, labels map[string]string, data []byte) (*dataInfo, error) {
		r, err := ctl.CreateConfig(ctx, &swarmpb.CreateConfigRequest{Name: name, Labels: labels, Data: data})
		return configInfo(r.GetConfig()), err
	},
	get: func(ctx context.Context, ctl swarmpb.ControlClient, ref string) (*dataInfo, []string, error) {
		r, err := ctl.GetConfig(ctx, &swarmpb.GetConfigRequest{Config: ref})
		return configInfo(r.GetConfig()), r.GetServices(), err
	},
	list: func(ctx context.Context, ctl swarmpb.ControlClient, token string) ([]*dataInfo, string, error) {
		r, err := ctl.ListConfigs(ctx, &swarmpb.ListConfigsRequest{PageToken: token})
		var out []*dataInfo
		for _, c := range r.GetConfigs() {
			out = append(out, configInfo(c))
		}
		return out, r.GetNextPageToken(), err
	},
	update: func(ctx context.Context, ctl swarmpb.ControlClient, ref string, data []byte) (*dataInfo, []string, error) {
		r, err := ctl.UpdateConfig(ctx, &swarmpb.UpdateConfigRequest{Config: ref, Data: data})
		return configInfo(r.GetConfig()), r.GetServices(), err
	},
	remove: func(ctx context.Context, ctl swarmpb.ControlClient, ref string) error {
		_, err := ctl.RemoveConfig(ctx, &swarmpb.RemoveConfigRequest{Config: ref})
		return err
	},
}
