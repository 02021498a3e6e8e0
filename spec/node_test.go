package spec

import (
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestValidateHostname(t *testing.T) {
	ok := []string{"w1", "node-1.example.com", "café", "a b", strings.Repeat("x", MaxHostnameLen)}
	for _, h := range ok {
		if err := ValidateHostname(h); err != nil {
			t.Errorf("ValidateHostname(%q): %v", h, err)
		}
	}
	bad := map[string]string{
		"":                                    "empty",
		strings.Repeat("x", MaxHostnameLen+1): "at most",
		strings.Repeat("x", 3<<20):            "at most",
		"evil\nw2   Ready":                    "control",
		"\x1b[31mred":                         "control",
		"tab\there":                           "control",
		"bad\xffutf8":                         "UTF-8",
		"rtl\u202eoverride":                   "non-printable",
		" lead":                               "space",
		"trail ":                              "space",
	}
	for h, want := range bad {
		err := ValidateHostname(h)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateHostname(%.20q) = %v, want an error mentioning %q", h, err, want)
			continue
		}
		if len(err.Error()) > 200 || strings.ContainsAny(err.Error(), "\n\x1b") {
			t.Errorf("ValidateHostname(%.20q): error not one short line: %q", h, err)
		}
	}
}

func TestValidateNodeDescription(t *testing.T) {
	good := func() *swarmpb.NodeDescription {
		return &swarmpb.NodeDescription{Hostname: "w1", Os: "linux", Arch: "amd64", EngineVersion: "24.0.7",
			Resources: &swarmpb.Resources{NanoCpus: 8e9, MemoryBytes: 16 << 30}}
	}
	if err := ValidateNodeDescription(good()); err != nil {
		t.Fatal(err)
	}
	if err := ValidateNodeDescription(nil); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(d *swarmpb.NodeDescription){
		"huge hostname":    func(d *swarmpb.NodeDescription) { d.Hostname = strings.Repeat("h", 3<<20) },
		"control hostname": func(d *swarmpb.NodeDescription) { d.Hostname = "w1\n" },
		"long os":          func(d *swarmpb.NodeDescription) { d.Os = strings.Repeat("o", MaxPlatformLen+1) },
		"long arch":        func(d *swarmpb.NodeDescription) { d.Arch = strings.Repeat("a", MaxPlatformLen+1) },
		"long version":     func(d *swarmpb.NodeDescription) { d.EngineVersion = strings.Repeat("v", MaxEngineVersionLen+1) },
		"control version":  func(d *swarmpb.NodeDescription) { d.EngineVersion = "1\x1b[2J" },
		"long error":       func(d *swarmpb.NodeDescription) { d.EngineError = strings.Repeat("e", MaxEngineErrorLen+1) },
		"negative cpus":    func(d *swarmpb.NodeDescription) { d.Resources.NanoCpus = -1 },
		"absurd cpus":      func(d *swarmpb.NodeDescription) { d.Resources.NanoCpus = MaxNodeNanoCPUs + 1 },
		"negative memory":  func(d *swarmpb.NodeDescription) { d.Resources.MemoryBytes = -1 },
		"absurd memory":    func(d *swarmpb.NodeDescription) { d.Resources.MemoryBytes = 1 << 62 },
	}
	for name, mutate := range cases {
		d := good()
		mutate(d)
		if err := ValidateNodeDescription(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestClipNodeDescriptionMakesItValid(t *testing.T) {
	d := &swarmpb.NodeDescription{Hostname: "w1", Os: strings.Repeat("o", 100),
		EngineVersion: "1.0\n", EngineError: strings.Repeat("é", MaxEngineErrorLen) + "\x00",
		Resources: &swarmpb.Resources{NanoCpus: -5, MemoryBytes: 1 << 62}}
	ClipNodeDescription(d)
	if err := ValidateNodeDescription(d); err != nil {
		t.Fatalf("clipped description still invalid: %v", err)
	}
	if !utf8.ValidString(d.EngineError) || d.EngineVersion != "1.0 " {
		t.Fatalf("clip: %q %q", d.EngineVersion, d.EngineError[:10])
	}
}

func TestValidatePortBinding(t *testing.T) {
	own := net.ParseIP("10.0.0.5")
	b := func(ip string, host, target uint32) *swarmpb.PortBinding {
		return &swarmpb.PortBinding{Protocol: "tcp", TargetPort: target, HostIp: ip, HostPort: host, PublishMode: "ingress"}
	}
	for _, ok := range []*swarmpb.PortBinding{b("", 30000, 80), b("0.0.0.0", 1, 65535), b("::", 30000, 80), b("10.0.0.5", 30000, 80), b("::ffff:10.0.0.5", 30000, 80)} {
		if err := ValidatePortBinding(ok, own); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range []*swarmpb.PortBinding{b("10.0.0.6", 30000, 80), b("127.0.0.1", 30000, 80), b("example.com", 30000, 80),
		b("", 0, 80), b("", 70000, 80), b("", 30000, 0), b("", 30000, 65536),
		{Protocol: "icmp", TargetPort: 80, HostPort: 1}, {PublishMode: "weird", TargetPort: 80, HostPort: 1}} {
		if err := ValidatePortBinding(bad, own); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// FuzzValidateNodeDescription: validation never panics, and whatever
// ClipNodeDescription makes of a description (with a valid hostname) is
// valid.
func FuzzValidateNodeDescription(f *testing.F) {
	f.Add("w1", "linux", "amd64", "24.0.7", "", int64(8e9), int64(16<<30))
	f.Add("evil\n\x1b[31m", "linux\r", "\xff", strings.Repeat("9", 200), "err\x00", int64(-1), int64(1<<62))
	f.Fuzz(func(t *testing.T, host, os, arch, version, engineErr string, cpus, mem int64) {
		d := &swarmpb.NodeDescription{Hostname: host, Os: os, Arch: arch, EngineVersion: version, EngineError: engineErr,
			Resources: &swarmpb.Resources{NanoCpus: cpus, MemoryBytes: mem}}
		_ = ValidateNodeDescription(d)
		if ValidateHostname(host) != nil {
			return
		}
		ClipNodeDescription(d)
		if err := ValidateNodeDescription(d); err != nil {
			t.Fatalf("clipped description invalid: %v", err)
		}
	})
}
