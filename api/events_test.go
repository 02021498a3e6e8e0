package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/events"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// localOnly is a router whose node runs a manager: WatchEvents must be
// served by it, never routed to the leader.
type localOnly struct{ srv swarmpb.ControlServer }

func (r localOnly) RouteControl(context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error) {
	return nil, nil, errors.New("WatchEvents must not be routed to the leader")
}
func (r localOnly) LocalControl() swarmpb.ControlServer { return r.srv }

func serveEvents(t *testing.T, size int) (*state.Store, swarmpb.ControlClient) {
	t.Helper()
	st := state.New()
	j := events.New(st, events.Config{Size: size})
	t.Cleanup(j.Close)
	proxy := &ControlProxy{Router: localOnly{&ControlServer{Store: st, Events: j}}}
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	swarmpb.RegisterControlServer(gs, proxy)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return st, swarmpb.NewControlClient(conn)
}

// applyAt writes one service at the store's next index, at time index*1s.
func applyAt(t *testing.T, st *state.Store, name string) uint64 {
	t.Helper()
	idx := st.Index() + 1
	svc := &swarmpb.Service{Id: "id-" + name, Spec: &swarmpb.ServiceSpec{Name: name, Replicas: 1, Container: &swarmpb.ContainerSpec{Image: "demo"}}}
	if _, err := st.ApplyBatch(idx, int64(idx)*int64(time.Second), state.Batch(state.Create(svc))); err != nil {
		t.Fatal(err)
	}
	return idx
}

// readAll reads a stream to its end.
func readAll(t *testing.T, ctx context.Context, c swarmpb.ControlClient, req *swarmpb.WatchEventsRequest) ([]string, error) {
	t.Helper()
	stream, err := c.WatchEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		for _, ev := range msg.GetEvents() {
			got = append(got, fmt.Sprintf("%d:%s", ev.Index, ev.Name))
		}
	}
}

func TestWatchEventsUntilFiltersAndErrors(t *testing.T) {
	st, c := serveEvents(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= 5; i++ {
		applyAt(t, st, fmt.Sprintf("s%d", i))
	}
	// The journal catches up asynchronously; a stream until index 5's time
	// ends once it has sent it.
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		after := uint64(2)
		got, err = readAll(t, ctx, c, &swarmpb.WatchEventsRequest{AfterIndex: &after, Until: int64(5 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 3 || time.Now().After(deadline) {
			break
		}
	}
	if strings.Join(got, " ") != "3:s3 4:s4 5:s5" {
		t.Fatalf("after 2 until 5s: %v", got)
	}
	got, err := readAll(t, ctx, c, &swarmpb.WatchEventsRequest{Since: int64(4 * time.Second), Until: int64(4 * time.Second), Filters: []string{"name=s4", "name=s5"}})
	if err != nil || strings.Join(got, " ") != "4:s4" {
		t.Fatalf("since = until = 4s, name filter: %v, %v", got, err)
	}

	// The ring holds 3 events: starting after index 1 would skip index 2.
	after := uint64(1)
	_, err = readAll(t, ctx, c, &swarmpb.WatchEventsRequest{AfterIndex: &after})
	if status.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "no longer kept by this manager: it keeps the events after index 2") {
		t.Fatalf("after 1 with a ring of 3: %v", err)
	}
	_, err = readAll(t, ctx, c, &swarmpb.WatchEventsRequest{Filters: []string{"type=volume"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "the type is one of") {
		t.Fatalf("bad filter: %v", err)
	}
	_, err = readAll(t, ctx, c, &swarmpb.WatchEventsRequest{Since: int64(5 * time.Second), Until: int64(4 * time.Second)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("until before since: %v", err)
	}
}

// A live stream starts with its position, then carries what follows.
func TestWatchEventsLiveStartsWithItsPosition(t *testing.T) {
	st, c := serveEvents(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.WatchEvents(ctx, &swarmpb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.GetStart() || first.GetIndex() != 0 || len(first.GetEvents()) != 0 {
		t.Fatalf("first message %v, %v", first, err)
	}
	applyAt(t, st, "web")
	msg, err := stream.Recv()
	if err != nil || len(msg.GetEvents()) != 1 || msg.GetEvents()[0].Name != "web" || msg.GetEvents()[0].Action != "create" {
		t.Fatalf("live event %v, %v", msg, err)
	}
}
