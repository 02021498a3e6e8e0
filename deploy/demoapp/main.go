// Command demoapp is the demo service image used by raftswarm's end-to-end
// tests and examples. GET / answers with one line naming the task, node and
// version that served it, so tests can see load balancing and rolling
// updates; /healthz answers 200 for health checks.
//
// Environment: PORT (default 80), TASK_ID (default: hostname), NODE_ID,
// VERSION (default: the value baked in with -ldflags "-X main.version=..."),
// CRASH=1 to exit with status 1 shortly after starting (a broken release;
// also settable at build time with -X main.crash=1), CRASH_AFTER (a Go
// duration, default 1s).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Set at build time with -ldflags "-X main.version=v2 -X main.crash=1".
var (
	version = "dev"
	crash   = ""
)

type identity struct{ task, node, version string }

func identityFromEnv() identity {
	id := identity{task: os.Getenv("TASK_ID"), node: os.Getenv("NODE_ID"), version: os.Getenv("VERSION")}
	if id.task == "" {
		id.task, _ = os.Hostname()
	}
	if id.version == "" {
		id.version = version
	}
	return id
}

func handler(id identity) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "task=%s node=%s version=%s\n", id.task, id.node, id.version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func main() {
	log.SetFlags(0)
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	id := identityFromEnv()
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatalf("demoapp: %v", err)
	}
	srv := &http.Server{Handler: handler(id), ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("demoapp: task=%s node=%s version=%s listening on :%s", id.task, id.node, id.version, port)

	// A crashing build still starts (so it passes "started"), then dies:
	// what a rolling update's monitor period must catch.
	var crashC <-chan time.Time
	if os.Getenv("CRASH") == "1" || crash == "1" {
		after, err := time.ParseDuration(os.Getenv("CRASH_AFTER"))
		if err != nil {
			after = time.Second
		}
		crashC = time.After(after)
	}

	select {
	case <-ctx.Done():
		// SIGTERM: finish in-flight requests, then exit 0.
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			log.Printf("demoapp: shutdown: %v", err)
		}
		log.Printf("demoapp: stopped")
	case <-crashC:
		log.Printf("demoapp: crashing on purpose")
		os.Exit(1)
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("demoapp: %v", err)
		}
	}
}
