package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
)

// LoadOptions says which Compose files to read and how.
type LoadOptions struct {
	// Files are the Compose files, merged in order (-c may repeat).
	Files []string
	// WorkDir is the project directory: relative paths (bind mounts, build
	// contexts, env_file, secret and config files) resolve against it and
	// its .env file is read. Empty: the directory of the first file.
	WorkDir string
	// Env is the environment for ${VAR} interpolation (KEY=VALUE), usually
	// os.Environ(); the project's .env adds what it does not set.
	Env []string
	// Profiles are the active profiles; services of other profiles are
	// left out.
	Profiles []string
	// Name is the stack name (the project name): names of networks,
	// volumes, secrets and configs derive from it. Empty: the loader
	// derives one from the directory (stack config).
	Name string
}

// Project is a loaded Compose project and the warnings loading it raised.
type Project struct {
	*types.Project
	// Warnings name, one per line, each key the cluster does not support.
	Warnings []string
}

// Load reads, merges, interpolates and validates Compose files with
// compose-go, the reference implementation. A bad file is a one-line error
// naming the files and the key.
func Load(ctx context.Context, o LoadOptions) (*Project, error) {
	if len(o.Files) == 0 {
		return nil, errors.New("no Compose file given: use -c FILE")
	}
	where := strings.Join(o.Files, ", ")
	fail := func(err error) error {
		return fmt.Errorf("compose file %s: %s", where, oneLine(err.Error()))
	}
	if o.Name != "" {
		if err := ValidateName(o.Name); err != nil {
			return nil, err
		}
	}
	var findings []loader.UnsupportedAttribute
	opts := []composecli.ProjectOptionsFn{
		composecli.WithEnv(o.Env),
		composecli.WithProfiles(o.Profiles),
		composecli.WithResolvedPaths(true),
		composecli.WithLoadOptions(loader.WithSupportedAttributes(supportedPaths(), func(f []loader.UnsupportedAttribute) {
			findings = append(findings, f...)
		})),
	}
	if o.WorkDir != "" {
		opts = append(opts, composecli.WithWorkingDirectory(o.WorkDir))
	}
	opts = append(opts, composecli.WithEnvFiles(), composecli.WithDotEnv)
	if o.Name != "" {
		opts = append(opts, composecli.WithName(o.Name))
	}
	po, err := composecli.NewProjectOptions(o.Files, opts...)
	if err != nil {
		return nil, fail(err)
	}
	logged := captureLog()
	p, err := po.LoadProject(ctx)
	warnings := logged()
	if err != nil {
		return nil, fail(err)
	}
	return &Project{Project: p, Warnings: append(warnings, unsupportedWarnings(p, findings)...)}, nil
}

// logMu serializes captureLog: compose-go warns through logrus's
// standard logger, which is global.
var logMu sync.Mutex

type logHook struct{ lines *[]string }

func (logHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }

func (h logHook) Fire(e *logrus.Entry) error {
	*h.lines = append(*h.lines, oneLine(e.Message))
	return nil
}

// captureLog turns what compose-go logs (the obsolete version key, a yes
// meant as a boolean) into warning lines until the returned function is
// called, which returns them.
func captureLog() func() []string {
	logMu.Lock()
	std := logrus.StandardLogger()
	var lines []string
	oldOut, oldHooks := std.Out, std.ReplaceHooks(logrus.LevelHooks{})
	std.SetOutput(io.Discard)
	std.AddHook(logHook{&lines})
	return func() []string {
		std.ReplaceHooks(oldHooks)
		std.SetOutput(oldOut)
		logMu.Unlock()
		return lines
	}
}

// unsupportedWarnings turns compose-go's findings into one line each,
// leaving out services that no active profile enables.
func unsupportedWarnings(p *types.Project, findings []loader.UnsupportedAttribute) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range findings {
		parts := strings.Split(f.Path.String(), ".")
		var line string
		switch {
		case len(parts) >= 3 && parts[0] == "services":
			if _, ok := p.Services[parts[1]]; !ok {
				continue
			}
			line = fmt.Sprintf("service %s: key %s is not supported by the cluster and is ignored", parts[1], keyPath(parts[2:]))
		case len(parts) >= 3 && (parts[0] == "networks" || parts[0] == "volumes" || parts[0] == "secrets" || parts[0] == "configs"):
			line = fmt.Sprintf("%s %s: key %s is not supported by the cluster and is ignored", strings.TrimSuffix(parts[0], "s"), parts[1], keyPath(parts[2:]))
		default:
			line = fmt.Sprintf("key %s is not supported by the cluster and is ignored", keyPath(parts))
		}
		if !seen[line] {
			seen[line] = true
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

// keyPath prints a finding's path as a user wrote it: ports[].host_ip.
func keyPath(parts []string) string {
	s := strings.Join(parts, ".")
	return strings.ReplaceAll(s, ".[]", "[]")
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// supportedPaths are the Compose attributes the cluster honours; every
// other one present in a file is reported as a warning.
func supportedPaths() []tree.Path {
	svc := []string{
		"image", "command", "entrypoint", "environment", "environment.*", "env_file",
		"env_file.[].path", "env_file.[].required", "env_file.[].format",
		"ports", "ports.[].target", "ports.[].published", "ports.[].protocol", "ports.[].mode", "ports.[].name",
		"deploy", "deploy.mode", "deploy.replicas", "deploy.labels", "deploy.labels.*",
		"deploy.placement", "deploy.placement.constraints", "deploy.placement.preferences",
		"deploy.placement.preferences.[].spread", "deploy.placement.max_replicas_per_node",
		"deploy.resources", "deploy.resources.limits", "deploy.resources.limits.cpus", "deploy.resources.limits.memory",
		"deploy.resources.reservations", "deploy.resources.reservations.cpus", "deploy.resources.reservations.memory",
		"deploy.restart_policy", "deploy.restart_policy.condition", "deploy.restart_policy.delay",
		"deploy.restart_policy.max_attempts", "deploy.restart_policy.window",
		"deploy.endpoint_mode",
		"restart", "healthcheck", "healthcheck.test", "healthcheck.interval", "healthcheck.timeout",
		"healthcheck.retries", "healthcheck.start_period", "healthcheck.disable",
		"stop_grace_period", "user", "working_dir", "hostname", "labels", "labels.*",
		"volumes", "volumes.[].type", "volumes.[].source", "volumes.[].target", "volumes.[].read_only",
		"volumes.[].volume", "volumes.[].volume.nocopy",
		"volumes.[].bind", "volumes.[].bind.create_host_path", "volumes.[].bind.propagation", "volumes.[].bind.selinux", "volumes.[].tmpfs", "volumes.[].tmpfs.size",
		"secrets", "secrets.[].source", "secrets.[].target", "secrets.[].uid", "secrets.[].gid", "secrets.[].mode",
		"configs", "configs.[].source", "configs.[].target", "configs.[].uid", "configs.[].gid", "configs.[].mode",
		"networks", "networks.*", "networks.*.aliases",
		"depends_on", "depends_on.*", "depends_on.*.condition", "depends_on.*.required",
		"build", "build.context", "build.dockerfile", "build.args", "build.args.*", "build.target", "build.labels", "build.labels.*",
		"profiles", "scale",
		"tty", "stdin_open", "init", "read_only", "stop_signal", "cap_add", "cap_drop",
		"sysctls", "sysctls.*", "group_add", "ulimits", "ulimits.*", "ulimits.*.soft", "ulimits.*.hard",
		"extra_hosts", "extra_hosts.*", "tmpfs",
	}
	for _, k := range []string{"update_config", "rollback_config"} {
		svc = append(svc, "deploy."+k)
		for _, f := range []string{"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"} {
			svc = append(svc, "deploy."+k+"."+f)
		}
	}
	// include and extends are resolved by compose-go itself.
	paths := []tree.Path{"version", "name", "services", "services.*",
		"include", "include.[].path", "include.[].env_file", "include.[].project_directory",
		"services.*.extends", "services.*.extends.file", "services.*.extends.service",
		"networks", "networks.*", "networks.*.name", "networks.*.driver", "networks.*.external",
		"networks.*.internal", "networks.*.labels", "networks.*.labels.*", "networks.*.attachable",
		"networks.*.ipam", "networks.*.ipam.config", "networks.*.ipam.config.[].subnet",
		"volumes", "volumes.*", "volumes.*.name", "volumes.*.driver", "volumes.*.driver_opts",
		"volumes.*.driver_opts.*", "volumes.*.external", "volumes.*.labels", "volumes.*.labels.*",
	}
	for _, k := range []string{"secrets", "configs"} {
		for _, f := range []string{"", ".*", ".*.name", ".*.file", ".*.content", ".*.environment", ".*.external", ".*.labels", ".*.labels.*"} {
			paths = append(paths, tree.Path(k+f))
		}
	}
	for _, s := range svc {
		paths = append(paths, tree.Path("services.*."+s))
	}
	return paths
}

// absUnder resolves p against dir when it is relative.
func absUnder(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
