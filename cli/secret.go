package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
)

// `secret` and `config` are one set of commands over two kinds of object
// (dataAPI says which RPCs). The cluster never returns a content: inspect
// shows versions, digests and times only.

// dataInfo is a secret or config as the commands print it.
type dataInfo struct {
	id, name string
	meta     *swarmpb.Meta
	labels   map[string]string
	version  uint64
	versions []*swarmpb.DataVersion
}

func secretInfo(s *swarmpb.Secret) *dataInfo {
	return &dataInfo{id: s.GetId(), name: s.GetName(), meta: s.GetMeta(), labels: s.GetLabels(), version: s.GetVersion(), versions: s.GetVersions()}
}

// dataAPI is the Control calls of one kind.
type dataAPI struct {
	noun   string // "secret" or "config"
	create func(ctx context.Context, ctl swarmpb.ControlClient, name string, labels map[string]string, data []byte) (*dataInfo, error)
	get    func(ctx context.Context, ctl swarmpb.ControlClient, ref string) (*dataInfo, []string, error)
	list   func(ctx context.Context, ctl swarmpb.ControlClient, token string) ([]*dataInfo, string, error)
	update func(ctx context.Context, ctl swarmpb.ControlClient, ref string, data []byte) (*dataInfo, []string, error)
	remove func(ctx context.Context, ctl swarmpb.ControlClient, ref string) error
}

var secretAPI = &dataAPI{
	noun: "secret",
	create: func(ctx context.Context, ctl swarmpb.ControlClient, name string, labels map[string]string, data []byte) (*dataInfo, error) {
		r, err := ctl.CreateSecret(ctx, &swarmpb.CreateSecretRequest{Name: name, Labels: labels, Data: data})
		return secretInfo(r.GetSecret()), err
	},
	get: func(ctx context.Context, ctl swarmpb.ControlClient, ref string) (*dataInfo, []string, error) {
		r, err := ctl.GetSecret(ctx, &swarmpb.GetSecretRequest{Secret: ref})
		return secretInfo(r.GetSecret()), r.GetServices(), err
	},
	list: func(ctx context.Context, ctl swarmpb.ControlClient, token string) ([]*dataInfo, string, error) {
		r, err := ctl.ListSecrets(ctx, &swarmpb.ListSecretsRequest{PageToken: token})
		var out []*dataInfo
		for _, s := range r.GetSecrets() {
			out = append(out, secretInfo(s))
		}
		return out, r.GetNextPageToken(), err
	},
	update: func(ctx context.Context, ctl swarmpb.ControlClient, ref string, data []byte) (*dataInfo, []string, error) {
		r, err := ctl.UpdateSecret(ctx, &swarmpb.UpdateSecretRequest{Secret: ref, Data: data})
		return secretInfo(r.GetSecret()), r.GetServices(), err
	},
	remove: func(ctx context.Context, ctl swarmpb.ControlClient, ref string) error {
		_, err := ctl.RemoveSecret(ctx, &swarmpb.RemoveSecretRequest{Secret: ref})
		return err
	},
}

func (a *app) secretCommand() *cobra.Command { return a.dataCommand(secretAPI, "Manage secrets") }

func (a *app) dataCommand(api *dataAPI, short string) *cobra.Command {
	cmd := groupCommand(api.noun, short)
	cmd.AddCommand(
		a.dataCreateCommand(api),
		a.dataLsCommand(api),
		a.dataInspectCommand(api),
		a.dataUpdateCommand(api),
		a.dataRmCommand(api),
	)
	return cmd
}

// readData reads a content from FILE, or stdin for "-", and checks its
// size without ever quoting it.
func (a *app) readData(noun, file string) ([]byte, error) {
	var r io.Reader
	what := file
	if file == "-" {
		r, what = a.opts.stdin, "stdin"
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read %s file: %v", noun, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, spec.MaxDataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from %s: %v", noun, what, err)
	}
	if err := spec.ValidateData(noun, data); err != nil {
		return nil, fmt.Errorf("%s from %s: %v", noun, what, err)
	}
	return data, nil
}

func (a *app) dataCreateCommand(api *dataAPI) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [--label K=V]... NAME FILE|-",
		Short: "Create a " + api.noun + " from a file or stdin (-)",
		Args:  exactArgs(2, "NAME and FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			lm := labelMap(labels, nil)
			if err := spec.ValidateDataName(api.noun, name); err != nil {
				return err
			}
			if err := spec.ValidateLabels(api.noun+" label", lm); err != nil {
				return err
			}
			data, err := a.readData(api.noun, args[1])
			if err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var info *dataInfo
			if err := a.call(0, func(ctx context.Context) (err error) {
				info, err = api.create(ctx, ctl, name, lm, data)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, escapeText(info.id))
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, api.noun+" label (KEY=VALUE)")
	return cmd
}

// dataRow is one line of `ls`, and what --format templates see.
type dataRow struct {
	ID      string
	Name    string
	Version uint64
	Created string
	Updated string
}

func (a *app) dataLsCommand(api *dataAPI) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [-q] [--format TEMPLATE|json]",
		Aliases: []string{"list"},
		Short:   "List " + api.noun + "s",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			var all []*dataInfo
			if err := a.call(0, func(ctx context.Context) error {
				token := ""
				for range 100_000 {
					page, next, err := api.list(ctx, ctl, token)
					if err != nil {
						return err
					}
					all = append(all, page...)
					if next == "" || next == token {
						return nil
					}
					token = next
				}
				return fmt.Errorf("listing %ss did not end", api.noun)
			}); err != nil {
				return err
			}
			sort.SliceStable(all, func(i, j int) bool {
				if all[i].name != all[j].name {
					return all[i].name < all[j].name
				}
				return all[i].id < all[j].id
			})
			rows := make([]any, 0, len(all))
			for _, d := range all {
				rows = append(rows, dataRow{ID: d.id, Name: d.name, Version: d.version,
					Created: formatTime(d.meta.GetCreatedAt()), Updated: formatTime(d.meta.GetUpdatedAt())})
			}
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(a.stdout, escapeText(r.(dataRow).ID))
				}
			case fmtr != nil:
				return fmtr.writeRows(a.stdout, rows, []string{".ID", ".Name", ".Version", ".Created", ".Updated"})
			default:
				tw := newTable(a.stdout)
				fmt.Fprintln(tw, "ID\tNAME\tCREATED\tUPDATED")
				for _, r := range rows {
					r := r.(dataRow)
					writeCells(tw, r.ID, r.Name, r.Created, r.Updated)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template or json")
	return cmd
}

// dataInspect is what `inspect` prints as JSON, and what --format
// templates see: metadata only, there being no content to show.
type dataInspect struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Version  uint64            `json:"version"`
	Versions []dataVersionInfo `json:"versions"`
	Created  string            `json:"createdAt"`
	Updated  string            `json:"updatedAt"`
	Services []string          `json:"services"`
}

// dataVersionInfo is one content version: its number, digest and time.
type dataVersionInfo struct {
	Version uint64 `json:"version"`
	SHA256  string `json:"sha256"`
	Created string `json:"createdAt"`
}

func (a *app) dataInspectCommand(api *dataAPI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [--format TEMPLATE] " + strings.ToUpper(api.noun) + "...",
		Short: "Display a " + api.noun + "'s metadata (never its content)",
		Args:  minArgs(1, strings.ToUpper(api.noun)),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmtr, ctl, err := a.listPrelude(format)
			if err != nil {
				return err
			}
			var objs []json.RawMessage
			var rows []any
			var failed []error
			for _, ref := range args {
				var info *dataInfo
				var services []string
				if err := a.call(0, func(ctx context.Context) (err error) {
					info, services, err = api.get(ctx, ctl, ref)
					return err
				}); err != nil {
					failed = append(failed, err)
					continue
				}
				if services == nil {
					services = []string{}
				}
				ins := dataInspect{ID: info.id, Name: info.name, Labels: info.labels, Version: info.version, Services: services,
					Versions: []dataVersionInfo{},
					Created:  formatTime(info.meta.GetCreatedAt()), Updated: formatTime(info.meta.GetUpdatedAt())}
				if ins.Labels == nil {
					ins.Labels = map[string]string{}
				}
				for _, v := range info.versions {
					ins.Versions = append(ins.Versions, dataVersionInfo{Version: v.GetVersion(), SHA256: v.GetSha256(), Created: formatTime(v.GetCreatedAt())})
				}
				if fmtr != nil {
					rows = append(rows, ins)
					continue
				}
				obj, err := json.Marshal(ins)
				if err != nil {
					return err
				}
				objs = append(objs, obj)
			}
			if fmtr != nil {
				if err := fmtr.writeRows(a.stdout, rows, []string{".ID", ".Name", ".Labels", ".Version", ".Versions", ".Created", ".Updated", ".Services"}); err != nil {
					return err
				}
			} else if err := writeJSONArray(a.stdout, objs); err != nil {
				return err
			}
			return a.reportErrors(failed)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format the output with a Go template (default: JSON)")
	return cmd
}

func (a *app) dataUpdateCommand(api *dataAPI) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update " + strings.ToUpper(api.noun) + " FILE|-",
		Short: "Replace a " + api.noun + "'s content; the services using it roll to it with their update settings",
		Args:  exactArgs(2, strings.ToUpper(api.noun)+" and FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := a.readData(api.noun, args[1])
			if err != nil {
				return err
			}
			ctl, err := a.control()
			if err != nil {
				return err
			}
			var rolled []string
			if err := a.call(0, func(ctx context.Context) (err error) {
				_, rolled, err = api.update(ctx, ctl, args[0], data)
				return err
			}); err != nil {
				return err
			}
			for _, s := range rolled {
				fmt.Fprintln(a.stdout, escapeText(s))
			}
			return nil
		},
	}
	return cmd
}

func (a *app) dataRmCommand(api *dataAPI) *cobra.Command {
	return &cobra.Command{
		Use:     "rm " + strings.ToUpper(api.noun) + "...",
		Aliases: []string{"remove"},
		Short:   "Remove " + api.noun + "s no service uses",
		Args:    minArgs(1, strings.ToUpper(api.noun)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := a.control()
			if err != nil {
				return err
			}
			return a.forEach(args, func(ref string) error {
				if err := a.call(0, func(ctx context.Context) error { return api.remove(ctx, ctl, ref) }); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, escapeText(ref))
				return nil
			})
		},
	}
}
