package spec

import (
	"fmt"
	"regexp"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Limits of named volumes, tmpfs mounts and image IDs.
const (
	MaxVolumeDriverLen  = 255
	MaxVolumeOptions    = 64
	MaxTmpfsSizeBytes   = 1 << 40 // 1 TiB
	MaxVolumeRemovals   = 1000    // names in one RemoveVolumes call
	maxVolumeOptionSize = 4096
)

// imageIDRE is the form of an image ID: the sha256 digest of its config.
var imageIDRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidateImageID checks an image ID ("sha256:" and 64 hex digits); empty
// is valid (no ID pinned).
func ValidateImageID(id string) error {
	if id != "" && !imageIDRE.MatchString(id) {
		return fieldErr("image ID", "%s is invalid: use sha256: and 64 lower-case hex digits", quote(id))
	}
	return nil
}

// ValidateVolumeName checks a named volume's name with Docker's rule.
func ValidateVolumeName(name string) error {
	if name == "" || len(name) > MaxVolumeLen || !volumeNameRE.MatchString(name) {
		return fieldErr("volume name", "%s is invalid: use 1-%d letters, digits, '_', '.' or '-', starting with a letter or digit", quote(name), MaxVolumeLen)
	}
	return nil
}

// ValidateVolumeNames checks the names of a RemoveVolumes call.
func ValidateVolumeNames(names []string) error {
	if len(names) == 0 {
		return fieldErr("volumes", "name at least one volume")
	}
	if len(names) > MaxVolumeRemovals {
		return fieldErr("volumes", "%d names: at most %d allowed", len(names), MaxVolumeRemovals)
	}
	for _, n := range names {
		if err := ValidateVolumeName(n); err != nil {
			return err
		}
	}
	return nil
}

// validateVolumeMount checks a named volume's driver, options and labels,
// and that a volume mount carries no tmpfs size.
func validateVolumeMount(m *swarmpb.Mount) error {
	if err := checkText("volume driver", m.VolumeDriver, false, MaxVolumeDriverLen, wordText); err != nil {
		return err
	}
	if len(m.VolumeOptions) > MaxVolumeOptions {
		return fieldErr("volume options", "%d options: at most %d allowed", len(m.VolumeOptions), MaxVolumeOptions)
	}
	for k, v := range m.VolumeOptions {
		if err := checkText("volume option key", k, true, MaxLabelKeyLen, wordText); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("volume option %s", quote(k)), v, false, maxVolumeOptionSize, lineText); err != nil {
			return err
		}
	}
	if err := ValidateLabels("volume label", m.VolumeLabels); err != nil {
		return err
	}
	if m.TmpfsSizeBytes != 0 {
		return fieldErr("mount", "tmpfs size is only for tmpfs mounts (target %s)", quote(m.Target))
	}
	return nil
}

// validateTmpfsMount checks a tmpfs mount: no source, no volume settings,
// a size between 0 (the engine's default) and MaxTmpfsSizeBytes.
func validateTmpfsMount(m *swarmpb.Mount) error {
	if m.Source != "" {
		return fieldErr("tmpfs mount", "takes no source (got %s)", quote(m.Source))
	}
	if m.VolumeDriver != "" || len(m.VolumeOptions) > 0 || len(m.VolumeLabels) > 0 || m.VolumeNocopy {
		return fieldErr("tmpfs mount", "takes no volume driver, options, labels or nocopy (target %s)", quote(m.Target))
	}
	if m.TmpfsSizeBytes < 0 || m.TmpfsSizeBytes > MaxTmpfsSizeBytes {
		return fieldErr("tmpfs size", "%d is out of range: use 0 (the engine's default) to %d bytes", m.TmpfsSizeBytes, int64(MaxTmpfsSizeBytes))
	}
	return nil
}
