package docker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/spec"
)

// Secrets and configs reach a container as read-only bind mounts of files
// the executor writes for its task:
//
//   - secrets under <DataDir>/secrets/<task>/, a tmpfs the executor mounts
//     (mode 0700, noexec, nosuid, nodev), so their contents are never on
//     the node's disk; mounted at /run/secrets/<target>;
//   - configs under <DataDir>/configs/<task>/, on disk; mounted at their
//     target.
//
// Files carry the reference's uid, gid and mode. A task's files go with
// its container (Remove); the tmpfs is detached when the executor closes
// (running containers keep their own mounts of it).

// secretsTmpfsSize bounds the secrets tmpfs: every secret of every task of
// the node at Docker's 500 KiB limit would need far less.
const secretsTmpfsSize = "64m"

// dataMounts is the executor's state for secrets and configs.
type dataMounts struct {
	mu      sync.Mutex
	source  exec.DataSource
	mounted bool // the executor mounted the secrets tmpfs
}

var _ exec.DataUser = (*Executor)(nil)

// SetDataSource implements exec.DataUser: where the executor reads the
// contents its tasks' references name.
func (e *Executor) SetDataSource(s exec.DataSource) {
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	e.data.source = s
}

func (e *Executor) secretsDir() string { return filepath.Join(e.opts.DataDir, "secrets") }
func (e *Executor) configsDir() string { return filepath.Join(e.opts.DataDir, "configs") }

// SecretsDir is the tmpfs that holds the node's task secrets (one
// directory per task), "" without Options.DataDir.
func (e *Executor) SecretsDir() string {
	if e.opts.DataDir == "" {
		return ""
	}
	return e.secretsDir()
}

// isTmpfs reports whether dir is (on) a tmpfs.
func isTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// isMountPoint reports whether dir is a mount of its own (its device
// differs from its parent's): a tmpfs the secrets directory merely sits on
// (a tmpfs /tmp) is shared with other programs, so it does not count.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// ensureSecretsTmpfs mounts the secrets tmpfs unless it is there already
// (a previous run of the node mounted it and did not close). e.data.mu is
// held.
func (e *Executor) ensureSecretsTmpfs() error {
	dir := e.secretsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secrets: create %s: %w", dir, err)
	}
	if isTmpfs(dir) && isMountPoint(dir) {
		e.data.mounted = true // a previous run's; detached on Close
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("secrets need a tmpfs at %s so that they never touch the disk, and mounting one needs root: run the node as root", dir)
	}
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size="+secretsTmpfsSize)
	if err != nil {
		return fmt.Errorf("secrets: mount a tmpfs at %s: %w", dir, err)
	}
	if !isTmpfs(dir) || !isMountPoint(dir) {
		return fmt.Errorf("secrets: %s is not a tmpfs after mounting one", dir)
	}
	e.data.mounted = true
	return nil
}

// closeData detaches the secrets tmpfs the executor mounted. Containers
// still running keep their own mounts of its files; their task
// directories disappear from the host.
func (e *Executor) closeData() error {
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	if !e.data.mounted {
		return nil
	}
	e.data.mounted = false
	if err := unix.Unmount(e.secretsDir(), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("secrets: unmount %s: %w", e.secretsDir(), err)
	}
	return nil
}

// mountData writes the task's secrets and configs and adds their
// read-only bind mounts to hostCfg. A task without references needs
// nothing; one with references fails when the executor has no DataDir, no
// source, or a content did not arrive.
func (c *controller) mountData(hostCfg *container.HostConfig) error {
	cs := c.task.GetSpec().GetContainer()
	if len(cs.GetSecrets()) == 0 && len(cs.GetConfigs()) == 0 {
		return nil
	}
	e := c.e
	if !safeTaskDir(c.task.GetId()) {
		return fmt.Errorf("task ID %q cannot name a directory", c.task.GetId())
	}
	e.data.mu.Lock()
	defer e.data.mu.Unlock()
	if e.opts.DataDir == "" || e.data.source == nil {
		return errors.New("this node cannot mount secrets or configs: its executor has no data directory")
	}
	if len(cs.GetSecrets()) > 0 {
		if err := e.ensureSecretsTmpfs(); err != nil {
			return err
		}
		dir := filepath.Join(e.secretsDir(), c.task.GetId())
		for i, r := range cs.GetSecrets() {
			data, ok := e.data.source.Secret(r.GetSecretId(), r.GetVersion())
			if !ok {
				return fmt.Errorf("secret %s (version %d) has not reached this node", r.GetSecretName(), r.GetVersion())
			}
			file := filepath.Join(dir, "s"+strconv.Itoa(i))
			if err := writeDataFile(dir, file, data, r.GetUid(), r.GetGid(), spec.DataMode(r.GetMode())); err != nil {
				return fmt.Errorf("secret %s: %w", r.GetSecretName(), err)
			}
			hostCfg.Mounts = append(hostCfg.Mounts, mount.Mount{
				Type: mount.TypeBind, Source: file, Target: "/run/secrets/" + spec.SecretTarget(r), ReadOnly: true,
			})
		}
	}
	if len(cs.GetConfigs()) > 0 {
		dir := filepath.Join(e.configsDir(), c.task.GetId())
		for i, r := range cs.GetConfigs() {
			data, ok := e.data.source.Config(r.GetConfigId(), r.GetVersion())
			if !ok {
				return fmt.Errorf("config %s (version %d) has not reached this node", r.GetConfigName(), r.GetVersion())
			}
			file := filepath.Join(dir, "c"+strconv.Itoa(i))
			if err := writeDataFile(dir, file, data, r.GetUid(), r.GetGid(), spec.DataMode(r.GetMode())); err != nil {
				return fmt.Errorf("config %s: %w", r.GetConfigName(), err)
			}
			hostCfg.Mounts = append(hostCfg.Mounts, mount.Mount{
				Type: mount.TypeBind, Source: file, Target: spec.ConfigTarget(r), ReadOnly: true,
			})
		}
	}
	return nil
}

// writeDataFile writes one file of a task's directory (created 0700:
// only the bind mounts expose the files) with its owner and mode.
func writeDataFile(dir, file string, data []byte, uid, gid, mode uint32) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Chown(tmp, int(uid), int(gid)); err != nil && os.Geteuid() == 0 {
		os.Remove(tmp)
		return fmt.Errorf("chown %s: %w", file, err)
	}
	if err := os.Chmod(tmp, os.FileMode(mode&0o777)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// removeData deletes the task's secret and config files.
func (c *controller) removeData() error {
	if c.e.opts.DataDir == "" || !safeTaskDir(c.task.GetId()) {
		return nil
	}
	var errs []error
	for _, d := range []string{c.e.secretsDir(), c.e.configsDir()} {
		if err := os.RemoveAll(filepath.Join(d, c.task.GetId())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// safeTaskDir reports whether a task ID can name a directory of its own.
func safeTaskDir(id string) bool {
	return id != "" && id != "." && id != ".." && filepath.Base(id) == id
}
