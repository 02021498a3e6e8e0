package spec

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Secret and config limits.
const (
	// MaxDataNameLen bounds a secret's or config's name.
	MaxDataNameLen = 64
	// MaxDataSize is the largest content of a secret or config (Docker's
	// limit); the smallest is one byte.
	MaxDataSize = 500 << 10
	// MaxDataRefs bounds the secrets, and separately the configs, one
	// container spec references.
	MaxDataRefs = 100
	// MaxDataMode is the widest file mode a reference may ask for.
	MaxDataMode = 0o777
	// DefaultDataMode is the file mode of a reference that sets none.
	DefaultDataMode = 0o444
)

var dataNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// ValidateDataName checks the name of a secret or config; kind is "secret"
// or "config".
func ValidateDataName(kind, name string) error {
	if name == "" {
		return fieldErr(kind+" name", "is required")
	}
	if len(name) > MaxDataNameLen || !dataNameRE.MatchString(name) {
		return fieldErr(kind+" name", "%s is invalid: use 1-%d letters, digits, '_', '.' or '-', starting with a letter or digit", quote(name), MaxDataNameLen)
	}
	return nil
}

// ValidateData checks the content of a secret or config: 1 byte to
// MaxDataSize. The error never quotes the content.
func ValidateData(kind string, data []byte) error {
	if len(data) == 0 {
		return fieldErr(kind+" data", "is empty: a %s needs at least 1 byte", kind)
	}
	if len(data) > MaxDataSize {
		return fieldErr(kind+" data", "is %d bytes: at most %d (500 KiB) allowed", len(data), MaxDataSize)
	}
	return nil
}

// ValidateDataObject checks what a user hands over when creating or
// updating a secret or config: its name, labels and content.
func ValidateDataObject(kind, name string, labels map[string]string, data []byte) error {
	if err := ValidateDataName(kind, name); err != nil {
		return err
	}
	if err := ValidateLabels(kind+" label", labels); err != nil {
		return err
	}
	return ValidateData(kind, data)
}

// SecretTarget is the file name a secret reference mounts under
// /run/secrets: its target, or the secret's name.
func SecretTarget(r *swarmpb.SecretReference) string {
	if r.GetTarget() != "" {
		return r.GetTarget()
	}
	return r.GetSecretName()
}

// ConfigTarget is the absolute path a config reference mounts at: its
// target, or /<config name>.
func ConfigTarget(r *swarmpb.ConfigReference) string {
	if r.GetTarget() != "" {
		return r.GetTarget()
	}
	return "/" + r.GetConfigName()
}

// DataMode is a reference's file mode: its mode, or DefaultDataMode.
func DataMode(mode uint32) uint32 {
	if mode == 0 {
		return DefaultDataMode
	}
	return mode
}

// ValidateSecretReferences checks a container's secret references: each
// names a secret (by name or ID), mounts it at a plain file name (no '/',
// not "." or "..") under /run/secrets, with a mode of at most 0777; no two
// share a target.
func ValidateSecretReferences(refs []*swarmpb.SecretReference) error {
	if len(refs) > MaxDataRefs {
		return fieldErr("secrets", "count %d exceeds the limit of %d", len(refs), MaxDataRefs)
	}
	seen := make(map[string]bool, len(refs))
	for i, r := range refs {
		field := fmt.Sprintf("secret[%d]", i)
		if r == nil {
			return fieldErr(field, "is empty")
		}
		if err := checkRefSource("secret", field, r.GetSecretName(), r.GetSecretId()); err != nil {
			return err
		}
		t := SecretTarget(r)
		if err := checkText(field+" target", t, true, MaxDataNameLen*4, wordText); err != nil {
			return err
		}
		if strings.Contains(t, "/") || t == "." || t == ".." {
			return fieldErr(field+" target", "%s is invalid: a secret's target is a file name under /run/secrets, without '/', '.' or '..'", quote(t))
		}
		if err := checkMode(field, r.GetMode()); err != nil {
			return err
		}
		if seen[t] {
			return fieldErr(field+" target", "%s is used by another secret of the service: give each a distinct target", quote(t))
		}
		seen[t] = true
	}
	return nil
}

// ValidateConfigReferences checks a container's config references: each
// names a config, mounts it at an absolute, clean path other than "/", with
// a mode of at most 0777; no two share a target.
func ValidateConfigReferences(refs []*swarmpb.ConfigReference) error {
	if len(refs) > MaxDataRefs {
		return fieldErr("configs", "count %d exceeds the limit of %d", len(refs), MaxDataRefs)
	}
	seen := make(map[string]bool, len(refs))
	for i, r := range refs {
		field := fmt.Sprintf("config[%d]", i)
		if r == nil {
			return fieldErr(field, "is empty")
		}
		if err := checkRefSource("config", field, r.GetConfigName(), r.GetConfigId()); err != nil {
			return err
		}
		t := ConfigTarget(r)
		if err := checkText(field+" target", t, true, MaxPathLen, lineText); err != nil {
			return err
		}
		if !path.IsAbs(t) || path.Clean(t) != t || t == "/" {
			return fieldErr(field+" target", "%s is invalid: use an absolute, clean path to a file, like /etc/app/app.conf", quote(t))
		}
		if err := checkMode(field, r.GetMode()); err != nil {
			return err
		}
		if seen[t] {
			return fieldErr(field+" target", "%s is used by another config of the service: give each a distinct target", quote(t))
		}
		seen[t] = true
	}
	return nil
}

func checkRefSource(kind, field, name, id string) error {
	if name == "" && id == "" {
		return fieldErr(field, "names no %s: set source=NAME", kind)
	}
	if name != "" {
		if err := ValidateDataName(kind, name); err != nil {
			return err
		}
	}
	return checkText(field+" "+kind+" ID", id, false, MaxDataNameLen, wordText)
}

func checkMode(field string, mode uint32) error {
	if mode > MaxDataMode {
		return fieldErr(field+" mode", "%#o is invalid: use at most 0777", mode)
	}
	return nil
}

// validateDataRefs checks a container's secret and config references.
func validateDataRefs(c *swarmpb.ContainerSpec) error {
	if err := ValidateSecretReferences(c.GetSecrets()); err != nil {
		return err
	}
	return ValidateConfigReferences(c.GetConfigs())
}
