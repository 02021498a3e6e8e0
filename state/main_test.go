package state

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func create(objs ...any) *swarmpb.StoreBatch { return batch(swarmpb.StoreAction_KIND_CREATE, objs...) }
func update(objs ...any) *swarmpb.StoreBatch { return batch(swarmpb.StoreAction_KIND_UPDATE, objs...) }
func del(objs ...any) *swarmpb.StoreBatch    { return batch(swarmpb.StoreAction_KIND_DELETE, objs...) }

func join(bs ...*swarmpb.StoreBatch) *swarmpb.StoreBatch {
	out := &swarmpb.StoreBatch{}
	for _, b := range bs {
		out.Actions = append(out.Actions, b.Actions...)
	}
	return out
}

// batch builds a batch of one kind of action with the package's builders.
func batch(k swarmpb.StoreAction_Kind, objs ...any) *swarmpb.StoreBatch {
	b := &swarmpb.StoreBatch{}
	for _, o := range objs {
		b.Actions = append(b.Actions, action(k, o))
	}
	return b
}

func svc(id, name string) *swarmpb.Service {
	return &swarmpb.Service{Id: id, Spec: &swarmpb.ServiceSpec{Name: name}}
}

func task(id, service, node string) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceId: service, NodeId: node}
}

func mustApply(t testing.TB, s *Store, b *swarmpb.StoreBatch) []Event {
	t.Helper()
	evs, err := s.ApplyBatch(s.Index()+1, int64(s.Index()+1)*1000, b)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return evs
}

func ids[T object](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetId())
	}
	return out
}
func protoValue(m proto.Message) protoreflect.Value {
	return protoreflect.ValueOfMessage(m.ProtoReflect())
}
