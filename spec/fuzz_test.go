package spec

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// FuzzValidateServiceSpec decodes arbitrary bytes as a service spec (as a
// gRPC request would) and validates it: it must never panic, and what it
// accepts must fit in an object and have a one-line, short refusal otherwise.
// The same bytes are tried as a node spec.
func FuzzValidateServiceSpec(f *testing.F) {
	seed := func(s *swarmpb.ServiceSpec) {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(validSpec())
	seed(&swarmpb.ServiceSpec{})
	seed(&swarmpb.ServiceSpec{Name: "a", Container: &swarmpb.ContainerSpec{Image: "i"}, Replicas: 1 << 62})
	s := validSpec()
	s.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL
	s.Placement.Constraints = []string{"node.labels.a!=b==c", "engine.labels.x==\x00"}
	seed(s)
	s = validSpec()
	s.Container.Healthcheck.Test = []string{"CMD"}
	s.Container.Mounts[0].Type = 42
	s.Resources.Limits.NanoCpus = -1 << 63
	seed(s)
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0xff}) // a label with an invalid UTF-8 key
	f.Add([]byte("\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s swarmpb.ServiceSpec
		if err := proto.Unmarshal(data, &s); err == nil {
			for _, cap := range []uint64{0, 10, DefaultMaxReplicas} {
				err := ValidateServiceSpec(&s, cap)
				if err == nil {
					if proto.Size(&s) > MaxObjectSize {
						t.Fatalf("accepted a spec of %d bytes", proto.Size(&s))
					}
					if cap > 0 && s.Replicas > cap {
						t.Fatalf("accepted %d replicas over a cap of %d", s.Replicas, cap)
					}
					continue
				}
				checkMessage(t, err)
			}
		}
		var n swarmpb.NodeSpec
		if err := proto.Unmarshal(data, &n); err == nil {
			if err := ValidateNodeSpec(&n); err != nil {
				checkMessage(t, err)
			}
		}
	})
}

func checkMessage(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") || len(msg) > 1024 {
		t.Fatalf("refusal is not one short line (%d bytes): %q", len(msg), msg)
	}
	for _, c := range msg {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("refusal holds a control character: %q", msg)
		}
	}
}
