package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/client"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// pullEngine is a Docker Engine API server whose image is missing until
// a pull of it ends, and whose /images/create behaves as mode says:
// "headers" never answers, "stall" sends one progress line then nothing,
// "repeat" sends the same line over and over, "progress" sends 20 lines
// of growing progress 20 ms apart and then ends.
func pullEngine(t *testing.T, mode string) *client.Client {
	t.Helper()
	var pulled atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/v1.41/images/") && strings.HasSuffix(p, "/json"):
			if !pulled.Load() {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"message":"No such image"}`))
				return
			}
			w.Write([]byte(`{"Id":"sha256:0123"}`))
		case p == "/v1.41/images/create":
			wait := func(d time.Duration) bool {
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-r.Context().Done():
					return false
				case <-release:
					return false
				case <-t.C:
					return true
				}
			}
			if mode == "headers" {
				wait(time.Hour)
				return
			}
			fl := w.(http.Flusher)
			line := func(cur int) {
				fmt.Fprintf(w, `{"status":"Downloading","id":"abc","progressDetail":{"current":%d,"total":100}}`+"\n", cur)
				fl.Flush()
			}
			line(1)
			switch mode {
			case "stall":
				wait(time.Hour)
			case "repeat":
				for wait(40 * time.Millisecond) {
					line(1)
				}
			case "progress":
				for i := 2; i <= 20; i++ {
					if !wait(20 * time.Millisecond) {
						return
					}
					line(i * 5)
				}
				pulled.Store(true)
				fmt.Fprintln(w, `{"status":"Download complete","id":"abc"}`)
			}
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

// TestImagePullStall: a pull that makes no progress for the stall timeout
// fails with the reason instead of keeping the task in PREPARING; a pull
// that makes progress runs past that timeout to its end.
func TestImagePullStall(t *testing.T) {
	const stall = 300 * time.Millisecond
	for _, tc := range []struct {
		mode    string
		stalled bool
	}{
		{"headers", true},
		{"stall", true},
		{"repeat", true},
		{"progress", false}, // 400 ms of progress, past the 300 ms timeout
	} {
		t.Run(tc.mode, func(t *testing.T) {
			e := NewWithEngine(pullEngine(t, tc.mode), "n1")
			e.opts.PullStallTimeout = stall
			ctl, err := e.Controller(&swarmpb.Task{Id: "t1", ServiceName: "web", Slot: 1,
				Spec: &swarmpb.ServiceSpec{Container: &swarmpb.ContainerSpec{Image: "busybox"}}})
			if err != nil {
				t.Fatal(err)
			}
			// Only keeps a broken build from hanging the test.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = ctl.(*controller).ensureImage(ctx, "busybox")
			if ctx.Err() != nil {
				t.Fatalf("the pull returned only when the caller gave up: %v", err)
			}
			if !tc.stalled {
				if err != nil {
					t.Fatalf("a pull making progress failed: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPullStalled) || !strings.Contains(err.Error(), "image pull stalled: no progress for 300ms") {
				t.Fatalf("got %v, want the stall named with its timeout", err)
			}
		})
	}
}

func TestPullStallOption(t *testing.T) {
	if _, err := NewWithOptions("tcp://127.0.0.1:1", "n1", Options{PullStallTimeout: -time.Second}); err == nil {
		t.Fatal("a negative stall timeout was accepted")
	}
}
