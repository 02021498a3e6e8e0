package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// nodeCtx is a call context from a node with a verified certificate.
func nodeCtx(nodeID string) context.Context {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: nodeID, Organization: []string{"cluster"}, OrganizationalUnit: []string{ca.WorkerRole}}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}})
}

// A node's answer to a volume removal is a claim: only nodes asked may
// answer, once, about the names asked; the leader waits for every node
// asked and no longer.
func TestVolumeRemovalAnswersChecked(t *testing.T) {
	st := state.New()
	d := &Dispatcher{Store: st, Raft: &storeRaft{store: st}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var s *sessions
	testutil.Eventually(t, 5*time.Second, func() error {
		if s, _ = d.term(); s == nil {
			return errors.New("dispatcher term not started")
		}
		return nil
	})
	n1, _ := s.register("n1")
	n2, _ := s.register("n2")

	type answer struct {
		res   map[string][]*swarmpb.VolumeRemoval
		asked map[string]bool
		err   error
	}
	got := make(chan answer, 1)
	go func() {
		res, asked, err := d.RemoveVolumesOnNodes(context.Background(), []string{"a", "b"})
		got <- answer{res, asked, err}
	}()
	reqID := func(sess *session) string {
		select {
		case <-sess.notify:
		case <-time.After(5 * time.Second):
			t.Fatal("no removal request reached the session")
		}
		m := sess.takeOOB()
		if len(m) != 1 || len(m[0].VolumeRemovals) != 1 || m[0].Kind != swarmpb.SessionMessage_KIND_UPDATE {
			t.Fatalf("session got %v", m)
		}
		return m[0].VolumeRemovals[0].Id
	}
	id := reqID(n1)
	if reqID(n2) != id {
		t.Fatal("the nodes got different requests")
	}

	report := func(node string, res ...*swarmpb.VolumeRemoval) error {
		_, err := d.ReportVolumeRemoval(nodeCtx(node), &swarmpb.ReportVolumeRemovalRequest{Id: id, Results: res})
		return err
	}
	if err := report("n3", &swarmpb.VolumeRemoval{Name: "a", Removed: true}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a node not asked: %v", err)
	}
	if err := report("n1", &swarmpb.VolumeRemoval{Name: "etc", Removed: true}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a name not asked: %v", err)
	}
	if err := report("n1", &swarmpb.VolumeRemoval{Name: "a"}, &swarmpb.VolumeRemoval{Name: "a"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a name twice: %v", err)
	}
	long := strings.Repeat("x", 10000)
	if err := report("n1", &swarmpb.VolumeRemoval{Name: "a", Removed: true, NodeId: "forged"}, &swarmpb.VolumeRemoval{Name: "b", Error: long}); err != nil {
		t.Fatal(err)
	}
	if err := report("n1", &swarmpb.VolumeRemoval{Name: "a", Removed: true}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a second answer: %v", err)
	}
	select {
	case a := <-got:
		t.Fatalf("answered before n2 did: %+v", a)
	default:
	}
	if err := report("n2"); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer once every node asked had answered")
	}
	if a.err != nil || !a.asked["n1"] || !a.asked["n2"] || len(a.asked) != 2 {
		t.Fatalf("answer %+v", a)
	}
	r := a.res["n1"]
	if len(r) != 2 || r[0].NodeId != "n1" || !r[0].Removed || len(r[1].Error) > 2048+8 || r[1].Removed {
		t.Errorf("n1's results as kept: %v", r)
	}
	if res, ok := a.res["n2"]; !ok || len(res) != 0 {
		t.Errorf("n2 answered with nothing: %v %v", res, ok)
	}
	if err := report("n2"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("an answer after the call ended: %v", err)
	}
}
