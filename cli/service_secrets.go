package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	specrules "github.com/raftswarm/raftswarm/spec"
)

// The service flags that mount secrets and configs: --secret and --config
// on create, --secret-add/-rm and --config-add/-rm on update. A reference
// is NAME or source=NAME,target=T,uid=U,gid=G,mode=0400; the managers
// resolve the name and pin the current content version.

// dataCreateFlags are `service create`'s --secret and --config.
type dataCreateFlags struct {
	secrets, configs []string
}

func (o *dataCreateFlags) register(f *pflag.FlagSet) {
	f.StringArrayVar(&o.secrets, "secret", nil, "mount a secret at /run/secrets/TARGET (NAME or source=NAME,target=T,uid=0,gid=0,mode=0444)")
	f.StringArrayVar(&o.configs, "config", nil, "mount a config (NAME or source=NAME,target=/PATH,uid=0,gid=0,mode=0444)")
}

// apply adds the references to a new service's spec.
func (o *dataCreateFlags) apply(spec *swarmpb.ServiceSpec) error {
	for _, s := range o.secrets {
		r, err := parseSecretRef("--secret", s)
		if err != nil {
			return err
		}
		spec.Container.Secrets = append(spec.Container.Secrets, r)
	}
	for _, s := range o.configs {
		r, err := parseConfigRef("--config", s)
		if err != nil {
			return err
		}
		spec.Container.Configs = append(spec.Container.Configs, r)
	}
	return nil
}

// dataUpdateFlags are `service update`'s --secret-add/-rm and
// --config-add/-rm.
type dataUpdateFlags struct {
	secretAdd, secretRm, configAdd, configRm []string
}

func (o *dataUpdateFlags) register(f *pflag.FlagSet) {
	f.StringArrayVar(&o.secretAdd, "secret-add", nil, "add or replace (by target) a secret")
	f.StringArrayVar(&o.secretRm, "secret-rm", nil, "remove a secret by name")
	f.StringArrayVar(&o.configAdd, "config-add", nil, "add or replace (by target) a config")
	f.StringArrayVar(&o.configRm, "config-rm", nil, "remove a config by name")
}

// modify applies the flags to a copy of the current spec. References kept
// keep their pinned version; added ones get the current content.
func (o *dataUpdateFlags) modify(spec *swarmpb.ServiceSpec) error {
	c := spec.Container
	for _, name := range o.secretRm {
		c.Secrets = removeWhere(c.Secrets, func(r *swarmpb.SecretReference) bool {
			return r.SecretName == name || r.SecretId == name
		})
	}
	for _, s := range o.secretAdd {
		add, err := parseSecretRef("--secret-add", s)
		if err != nil {
			return err
		}
		c.Secrets = removeWhere(c.Secrets, func(r *swarmpb.SecretReference) bool {
			return specrules.SecretTarget(r) == specrules.SecretTarget(add)
		})
		c.Secrets = append(c.Secrets, add)
	}
	for _, name := range o.configRm {
		c.Configs = removeWhere(c.Configs, func(r *swarmpb.ConfigReference) bool {
			return r.ConfigName == name || r.ConfigId == name
		})
	}
	for _, s := range o.configAdd {
		add, err := parseConfigRef("--config-add", s)
		if err != nil {
			return err
		}
		c.Configs = removeWhere(c.Configs, func(r *swarmpb.ConfigReference) bool {
			return specrules.ConfigTarget(r) == specrules.ConfigTarget(add)
		})
		c.Configs = append(c.Configs, add)
	}
	return nil
}

// dataRef is the fields of one --secret or --config value.
type dataRef struct {
	source, target string
	uid, gid, mode uint32
}

func parseDataRef(flag, s string) (dataRef, error) {
	var r dataRef
	if !strings.Contains(s, "=") {
		r.source = strings.TrimSpace(s)
		if r.source == "" {
			return r, fmt.Errorf("invalid %s %s: expected NAME or source=NAME,target=...", flag, echo(s))
		}
		return r, nil
	}
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok {
			return r, fmt.Errorf("invalid %s %s: field %s must be KEY=VALUE", flag, echo(s), echo(field))
		}
		var err error
		switch strings.ToLower(k) {
		case "source", "src":
			r.source = v
		case "target", "destination", "dst":
			r.target = v
		case "uid":
			r.uid, err = parseID(v)
		case "gid":
			r.gid, err = parseID(v)
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(v, 8, 32)
			if err == nil && m > specrules.MaxDataMode {
				err = fmt.Errorf("at most 0777")
			}
			r.mode = uint32(m)
		default:
			return r, fmt.Errorf("invalid %s %s: unknown field %s (use source, target, uid, gid, mode)", flag, echo(s), echo(k))
		}
		if err != nil {
			return r, fmt.Errorf("invalid %s %s: bad %s %s: %v", flag, echo(s), k, echo(v), err)
		}
	}
	if r.source == "" {
		return r, fmt.Errorf("invalid %s %s: source=NAME is required", flag, echo(s))
	}
	return r, nil
}

func parseID(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("a numeric ID is required")
	}
	return uint32(n), nil
}

func parseSecretRef(flag, s string) (*swarmpb.SecretReference, error) {
	d, err := parseDataRef(flag, s)
	if err != nil {
		return nil, err
	}
	r := &swarmpb.SecretReference{SecretName: d.source, Target: d.target, Uid: d.uid, Gid: d.gid, Mode: d.mode}
	if err := specrules.ValidateSecretReferences([]*swarmpb.SecretReference{r}); err != nil {
		return nil, fmt.Errorf("invalid %s %s: %v", flag, echo(s), err)
	}
	return r, nil
}

func parseConfigRef(flag, s string) (*swarmpb.ConfigReference, error) {
	d, err := parseDataRef(flag, s)
	if err != nil {
		return nil, err
	}
	r := &swarmpb.ConfigReference{ConfigName: d.source, Target: d.target, Uid: d.uid, Gid: d.gid, Mode: d.mode}
	if err := specrules.ValidateConfigReferences([]*swarmpb.ConfigReference{r}); err != nil {
		return nil, fmt.Errorf("invalid %s %s: %v", flag, echo(s), err)
	}
	return r, nil
}

// printDataRefs adds a service's secret and config references (never
// their contents, which a spec does not hold) to `service inspect
// --pretty`.
func printDataRefs(k kv, c *swarmpb.ContainerSpec) {
	if len(c.GetSecrets()) > 0 {
		k.head(0, "Secrets")
		for _, r := range c.GetSecrets() {
			k.line(1, "Target", "/run/secrets/%s", specrules.SecretTarget(r))
			k.line(2, "Source", "%s (version %d)", r.GetSecretName(), r.GetVersion())
			k.line(2, "Owner", "%d:%d, mode %#o", r.GetUid(), r.GetGid(), specrules.DataMode(r.GetMode()))
		}
	}
	if len(c.GetConfigs()) > 0 {
		k.head(0, "Configs")
		for _, r := range c.GetConfigs() {
			k.line(1, "Target", "%s", specrules.ConfigTarget(r))
			k.line(2, "Source", "%s (version %d)", r.GetConfigName(), r.GetVersion())
			k.line(2, "Owner", "%d:%d, mode %#o", r.GetUid(), r.GetGid(), specrules.DataMode(r.GetMode()))
		}
	}
}
