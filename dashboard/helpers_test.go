package dashboard

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
)

// fixture is a store fed without Raft.
type fixture struct {
	t     *testing.T
	store *state.Store
	app   *statetest.Applier
}

func newFixture(t *testing.T) *fixture {
	st := state.New()
	f := &fixture{t: t, store: st, app: statetest.NewApplier(st)}
	f.create(&swarmpb.Cluster{Id: "cluster1", Name: "default"})
	return f
}

func (f *fixture) apply(acts ...*swarmpb.StoreAction) {
	f.t.Helper()
	if _, err := f.app.Apply(context.Background(), state.Batch(acts...)); err != nil {
		f.t.Fatalf("apply: %v", err)
	}
}

func (f *fixture) create(objs ...proto.Message) {
	f.t.Helper()
	var acts []*swarmpb.StoreAction
	for _, o := range objs {
		acts = append(acts, state.Create(o))
	}
	f.apply(acts...)
}

// update writes fn's change to a copy of the stored object with id.
func update[T interface {
	proto.Message
	GetMeta() *swarmpb.Meta
}](f *fixture, get func(tx state.ReadTx) T, fn func(T)) {
	f.t.Helper()
	var cur T
	f.store.View(func(tx state.ReadTx) { cur = get(tx) })
	c := proto.Clone(cur).(T)
	fn(c)
	f.apply(state.Update(c))
}

func (f *fixture) setToken(tok string) {
	update(f, func(tx state.ReadTx) *swarmpb.Cluster { return tx.Cluster() }, func(c *swarmpb.Cluster) { c.DashboardToken = tok })
}

func testNode(id, host string) *swarmpb.Node {
	return &swarmpb.Node{Id: id, Status: swarmpb.NodeStatus_NODE_STATUS_READY,
		Description: &swarmpb.NodeDescription{Hostname: host, Resources: &swarmpb.Resources{NanoCpus: 2e9, MemoryBytes: 4 << 30}}}
}

func testService(id, name string, replicas uint64) *swarmpb.Service {
	return &swarmpb.Service{Id: id, SpecVersion: 1, Spec: &swarmpb.ServiceSpec{Name: name, Replicas: replicas,
		Container: &swarmpb.ContainerSpec{Image: "demo:v1"}}}
}

func testTask(id, svc, nodeID string, slot uint64) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceId: svc, NodeId: nodeID, Slot: slot, SpecVersion: 1,
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data []byte
}

// stream reads server-sent events from resp into a channel, closed at the
// end of the stream.
func stream(resp *http.Response) <-chan sseEvent {
	out := make(chan sseEvent, 1024)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return out
}

// next returns the next event, failing after a bounded wait.
func next(t *testing.T, ch <-chan sseEvent) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no server-sent event within 10s")
		return sseEvent{}, false
	}
}

func decode[T any](t *testing.T, ev sseEvent) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.data, &v); err != nil {
		t.Fatalf("decode %s: %v (%.200s)", ev.name, err, ev.data)
	}
	return v
}

// selfSigned is a certificate for HTTPS tests, and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dashboard-test"},
		DNSNames:  []string{"dashboard-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func ids[T any](vs []T, id func(T) string) string {
	var s []string
	for _, v := range vs {
		s = append(s, id(v))
	}
	return fmt.Sprint(s)
}
