package state

import (
	"errors"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

func svcVIPs(id, name string, vips ...string) *swarmpb.Service {
	s := svc(id, name)
	for i := 0; i+1 < len(vips); i += 2 {
		s.VirtualIps = append(s.VirtualIps, &swarmpb.VirtualIP{NetworkId: vips[i], Addr: vips[i+1]})
	}
	return s
}

func wantVIPConflict(t *testing.T, err error, owner string) {
	t.Helper()
	var vce *VIPConflictError
	if !errors.As(err, &vce) || !errors.Is(err, ErrVIPConflict) || vce.OwnerName != owner {
		t.Fatalf("err = %v, want a VIP conflict with %s", err, owner)
	}
}

// Two services never hold one VIP on a network, whatever the API checked
// before writing; the same address on another network is no conflict.
func TestVIPsUniqueInStore(t *testing.T) {
	s := New()
	mustApply(t, s, create(svcVIPs("a", "web", "n1", "10.96.0.2")))
	_, err := s.ApplyBatch(s.Index()+1, 1, create(svcVIPs("b", "api", "n1", "10.96.0.2")))
	wantVIPConflict(t, err, "web")
	_, err = s.ApplyBatch(s.Index()+1, 1, create(svcVIPs("b", "api", "n1", "10.96.0.3"), svcVIPs("c", "db", "n1", "10.96.0.3")))
	wantVIPConflict(t, err, "api")
	mustApply(t, s, create(svcVIPs("b", "api", "n2", "10.96.0.2", "n1", "10.96.0.3")))

	// An update keeps its own VIPs; taking another's is refused.
	var b *swarmpb.Service
	s.View(func(tx ReadTx) { b = proto.Clone(tx.GetService("b")).(*swarmpb.Service) })
	b.Spec.Labels = map[string]string{"x": "y"}
	mustApply(t, s, update(b))
	s.View(func(tx ReadTx) { b = proto.Clone(tx.GetService("b")).(*swarmpb.Service) })
	b.VirtualIps = append(b.VirtualIps[:1], &swarmpb.VirtualIP{NetworkId: "n1", Addr: "10.96.0.2"})
	_, err = s.ApplyBatch(s.Index()+1, 1, update(b))
	wantVIPConflict(t, err, "web")

	// Deleting the holder frees its VIP; a snapshot keeps the index.
	var a *swarmpb.Service
	s.View(func(tx ReadTx) { a = tx.GetService("a") })
	mustApply(t, s, del(a))
	r := New()
	if err := r.Restore(s.Index(), s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	_, err = r.ApplyBatch(r.Index()+1, 1, create(svcVIPs("d", "d", "n1", "10.96.0.3")))
	wantVIPConflict(t, err, "api")
	mustApply(t, r, create(svcVIPs("e", "e", "n1", "10.96.0.2")))
}

// A network a service's spec attaches cannot be deleted, and a service
// cannot newly attach a network the store lacks, in one batch or across
// batches.
func TestNetworkReferencesInStore(t *testing.T) {
	s := New()
	n1 := &swarmpb.Network{Id: "n1", Spec: &swarmpb.NetworkSpec{Name: "appnet"}}
	web := svc("a", "web")
	web.Spec.Networks = []*swarmpb.NetworkAttachmentConfig{{Target: "n1"}}
	_, err := s.ApplyBatch(s.Index()+1, 1, create(web))
	if !errors.Is(err, ErrNoSuchNetwork) {
		t.Fatalf("service on a missing network: %v", err)
	}
	mustApply(t, s, create(n1, web))
	redis := svc("b", "redis")
	redis.Spec.Networks = web.Spec.Networks
	mustApply(t, s, create(redis))
	_, err = s.ApplyBatch(s.Index()+1, 1, del(n1))
	var inUse *NetworkInUseError
	if !errors.As(err, &inUse) || inUse.Error() != "network appnet is in use by services redis, web" {
		t.Fatalf("delete in use: %v", err)
	}
	// Detaching every service in the batch that deletes the network is fine.
	var a, b *swarmpb.Service
	s.View(func(tx ReadTx) {
		a = proto.Clone(tx.GetService("a")).(*swarmpb.Service)
		b = tx.GetService("b")
	})
	a.Spec.Networks = nil
	mustApply(t, s, join(update(a), del(b), del(n1)))
}
