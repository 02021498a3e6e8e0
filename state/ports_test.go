package state

import (
	"errors"
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

func svcPorts(id, name string, ports ...uint32) *swarmpb.Service {
	s := svc(id, name)
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, &swarmpb.PortConfig{PublishedPort: p, TargetPort: 80, Protocol: "tcp"})
	}
	return s
}

func wantPortConflict(t *testing.T, err error, owner string) {
	t.Helper()
	var pce *PortConflictError
	if !errors.As(err, &pce) || !errors.Is(err, ErrPortConflict) {
		t.Fatalf("err = %v, want a port conflict", err)
	}
	if pce.OwnerName != owner || !strings.Contains(pce.Error(), "is already published by service "+owner) {
		t.Fatalf("conflict %q names %q, want %q", pce.Error(), pce.OwnerName, owner)
	}
}

// Two creates that each checked the port before writing (as the API did)
// reach the store one after the other: the second must fail there.
func TestPublishedPortsUniqueInStore(t *testing.T) {
	s := New()
	mustApply(t, s, create(svcPorts("a", "web", 8080)))
	_, err := s.ApplyBatch(s.Index()+1, 1, create(svcPorts("b", "api", 9090, 8080)))
	wantPortConflict(t, err, "web")

	// Another protocol, or no published port, is no claim.
	other := svcPorts("c", "dns", 8080)
	other.Spec.Ports[0].Protocol = "udp"
	mustApply(t, s, create(other, svcPorts("d", "internal", 0)))

	// Update to a taken port is refused; keeping one's own port is fine.
	mustApply(t, s, create(svcPorts("b", "api", 9090)))
	var b *swarmpb.Service
	s.View(func(tx ReadTx) { b = proto.Clone(tx.GetService("b")).(*swarmpb.Service) })
	b.Spec.Ports = append(b.Spec.Ports, &swarmpb.PortConfig{PublishedPort: 8080, TargetPort: 80, Protocol: "tcp"})
	_, err = s.ApplyBatch(s.Index()+1, 1, update(b))
	wantPortConflict(t, err, "web")
	b.Spec.Labels = map[string]string{"x": "y"}
	b.Spec.Ports = b.Spec.Ports[:1]
	mustApply(t, s, update(b))

	// A batch may move a port: free it from one service, give it to another.
	var a *swarmpb.Service
	s.View(func(tx ReadTx) { a = proto.Clone(tx.GetService("a")).(*swarmpb.Service) })
	s.View(func(tx ReadTx) { b = proto.Clone(tx.GetService("b")).(*swarmpb.Service) })
	a.Spec.Ports = nil
	b.Spec.Ports[0].PublishedPort = 8080
	mustApply(t, s, join(update(a), update(b)))
	s.View(func(tx ReadTx) {
		if o := tx.PortOwner(PortKey{8080, "tcp"}); o.GetId() != "b" {
			t.Fatalf("8080/tcp owner %v, want b", o.GetId())
		}
		if o := tx.PortOwner(PortKey{9090, "tcp"}); o != nil {
			t.Fatalf("9090/tcp still owned by %s", o.GetId())
		}
	})

	// Deleting the owner frees the port.
	s.View(func(tx ReadTx) { b = tx.GetService("b") })
	mustApply(t, s, del(b))
	mustApply(t, s, create(svcPorts("e", "new", 8080)))
}

func TestRestoreRebuildsPortIndex(t *testing.T) {
	s := New()
	mustApply(t, s, create(svcPorts("a", "web", 8080), svcPorts("b", "api", 9090)))
	r := New()
	if err := r.Restore(s.Index(), s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	_, err := r.ApplyBatch(r.Index()+1, 1, create(svcPorts("c", "c", 9090)))
	wantPortConflict(t, err, "api")

	// A snapshot written before ports were enforced may hold two owners of
	// a port: it still loads, and neither keeps others out.
	snap := s.Snapshot()
	snap.Services = append(snap.Services, svcPorts("z", "dup", 8080))
	if err := r.Restore(10, snap); err != nil {
		t.Fatalf("restore with a duplicate port: %v", err)
	}
	_, err = r.ApplyBatch(r.Index()+1, 1, create(svcPorts("c", "c", 8080)))
	if !errors.Is(err, ErrPortConflict) {
		t.Fatalf("err = %v, want a port conflict", err)
	}
}
