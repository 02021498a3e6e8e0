package docker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// fakeEngine is a Docker Engine API server that never answers requests
// whose path ends with hang, answers container inspects with "no such
// container" and image inspects with an image. No Docker needed.
func fakeEngine(t *testing.T, hang string) *client.Client {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client hanging up
		w.Header().Set("Content-Type", "application/json")
		switch p := r.URL.Path; {
		case strings.HasSuffix(p, hang):
			select {
			case <-r.Context().Done(): // the client gave up
			case <-release:
			}
		case strings.HasPrefix(p, "/v1.41/containers/") && strings.HasSuffix(p, "/json"):
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"No such container"}`))
		case strings.HasPrefix(p, "/v1.41/images/") && strings.HasSuffix(p, "/json"):
			w.Write([]byte(`{"Id":"sha256:0123"}`))
		default:
			w.WriteHeader(http.StatusNotImplemented)
			w.Write([]byte(`{"message":"not in the fake"}`))
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// A hung engine call returns within its deadline with an error naming the
// call and the timeout (issue 9 item 9: a task stayed PREPARING for 90 s).
func TestPrepareHungEngineCallTimesOut(t *testing.T) {
	const d = 300 * time.Millisecond
	for _, tc := range []struct{ hang, call string }{
		{"/containers/web.1.t1/json", "ContainerInspect"},
		{"/images/busybox/json", "ImageInspect"},
		{"/containers/create", "ContainerCreate"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			e := newWithEngine(fakeEngine(t, tc.hang), "n1", callTimeouts{inspect: d, list: d, create: d, stop: d})
			ctl, err := e.Controller(&swarmpb.Task{Id: "t1", ServiceName: "web", Slot: 1,
				Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "busybox"}}})
			if err != nil {
				t.Fatal(err)
			}
			// The caller's own bound only keeps a broken build from
			// hanging the test; the call's deadline must come first.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err = ctl.Prepare(ctx)
			took := time.Since(start)
			if err == nil {
				t.Fatal("Prepare succeeded on a hung engine")
			}
			if ctx.Err() != nil {
				t.Fatalf("Prepare returned only when the caller gave up (%v): %v", took, err)
			}
			if !errors.Is(err, ErrEngineTimeout) || !strings.Contains(err.Error(), tc.call) || !strings.Contains(err.Error(), d.String()) {
				t.Fatalf("error %q does not name the call %s and its timeout %s", err, tc.call, d)
			}
		})
	}
}
