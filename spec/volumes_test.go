package spec

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestValidateVolumesTmpfsAndImageID(t *testing.T) {
	okID := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name  string
		edit  func(c *swarmpb.ContainerSpec)
		error string // "" = valid
	}{
		{"image ID", func(c *swarmpb.ContainerSpec) { c.ImageId = okID }, ""},
		{"short image ID", func(c *swarmpb.ContainerSpec) { c.ImageId = okID[:20] }, "image ID"},
		{"upper-case image ID", func(c *swarmpb.ContainerSpec) { c.ImageId = strings.ToUpper(okID) }, "image ID"},
		{"volume with options", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_VOLUME, Source: "st_db", Target: "/db", VolumeDriver: "local",
				VolumeOptions: map[string]string{"type": "tmpfs"}, VolumeLabels: map[string]string{"a": "b"}, VolumeNocopy: true}}
		}, ""},
		{"volume option with newline", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_VOLUME, Source: "v", Target: "/db", VolumeOptions: map[string]string{"o": "a\nb"}}}
		}, "volume option"},
		{"too many volume options", func(c *swarmpb.ContainerSpec) {
			opts := map[string]string{}
			for i := 0; i <= MaxVolumeOptions; i++ {
				opts[strings.Repeat("k", i+1)] = "v"
			}
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_VOLUME, Source: "v", Target: "/db", VolumeOptions: opts}}
		}, "volume options"},
		{"tmpfs", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_TMPFS, Target: "/tmp", TmpfsSizeBytes: 64 << 20}}
		}, ""},
		{"tmpfs with source", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_TMPFS, Source: "x", Target: "/tmp"}}
		}, "tmpfs mount"},
		{"negative tmpfs size", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_TMPFS, Target: "/tmp", TmpfsSizeBytes: -1}}
		}, "tmpfs size"},
		{"tmpfs size on a volume", func(c *swarmpb.ContainerSpec) {
			c.Mounts = []*swarmpb.Mount{{Type: swarmpb.Mount_TYPE_VOLUME, Source: "v", Target: "/tmp", TmpfsSizeBytes: 1}}
		}, "tmpfs size is only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.edit(s.Container)
			err := ValidateServiceSpec(s, 0)
			switch {
			case tc.error == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)):
				t.Fatalf("error %v, want one about %q", err, tc.error)
			}
		})
	}
}

func TestValidateVolumeNames(t *testing.T) {
	if err := ValidateVolumeNames([]string{"st_db", "a.b-c"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{nil, {""}, {"-x"}, {"a/b"}, make([]string, MaxVolumeRemovals+1)} {
		if err := ValidateVolumeNames(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
