package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

// CookieName is the cookie the login form sets.
const CookieName = "raftswarm_dashboard"

// DefaultCoalesce is how long the hub gathers changes before sending them.
const DefaultCoalesce = 100 * time.Millisecond

// Config configures a dashboard server.
type Config struct {
	// Certificate returns the certificate served over HTTPS (this manager's,
	// signed by the cluster's CA). Needed unless the address is loopback.
	Certificate func() (*tls.Certificate, error)
	Logger      *slog.Logger
	// Coalesce is the longest a change waits before it is sent; DefaultCoalesce if 0.
	Coalesce time.Duration
}

// Server is a running dashboard.
type Server struct {
	ln     net.Listener
	host   string // as configured: the listener may report 0.0.0.0 as [::]
	secure bool   // HTTPS and login token: the address is not loopback
	hub    *hub
	http   *http.Server
	log    *slog.Logger
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

// Listen binds addr (HOST:PORT). It fails when the address cannot be bound,
// or when HTTPS is needed (a non-loopback address) and cfg has no certificate.
func Listen(addr string, cfg Config) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid address %q: want HOST:PORT, e.g. 127.0.0.1:8080", addr)
	}
	secure := !isLoopback(host)
	if secure && cfg.Certificate == nil {
		return nil, errors.New("a non-loopback address needs HTTPS, and this node has no certificate source")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	s := &Server{ln: ln, host: host, secure: secure, hub: newHub(cfg.Coalesce), log: cfg.Logger, done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Failed TLS handshakes (browsers that do not trust the cluster's
		// CA yet) are routine: debug, not stderr.
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return s.ctx },
	}
	serveLn := ln
	if secure {
		serveLn = tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return cfg.Certificate()
			},
			NextProtos: []string{"http/1.1"},
		})
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("dashboard server stopped", "err", err)
		}
	}()
	return s, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is where the dashboard is reached.
func (s *Server) URL() string {
	_, port, _ := net.SplitHostPort(s.ln.Addr().String())
	scheme := "http://"
	if s.secure {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(s.host, port) + "/"
}

// Secure reports whether the dashboard uses HTTPS and a login token.
func (s *Server) Secure() bool { return s.secure }

// SetSource points the dashboard at a manager's store (nil when this node
// stops being a manager). Open pages reconnect to the new source.
func (s *Server) SetSource(src *Source) { s.hub.setSource(src) }

// Close stops serving and ends every stream.
func (s *Server) Close() error {
	s.hub.close()
	s.cancel() // ends the streams, which Shutdown would wait for
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}

// Handler serves the dashboard (exported for tests through httptest).
func (s *Server) Handler() http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServer(http.FS(static))
	mux := http.NewServeMux()
	mux.Handle("GET /events", s.authed(http.HandlerFunc(s.serveEvents)))
	mux.HandleFunc("POST /login", s.serveLogin)
	mux.HandleFunc("POST /logout", s.serveLogout)
	mux.Handle("GET /", s.authed(files))
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// tokenOK compares in constant time (of the hashes, so length leaks nothing).
func tokenOK(got, want string) bool {
	if want == "" || got == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

func requestToken(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if t, ok := strings.CutPrefix(a, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

// authed lets a request through on loopback, or with the current token.
// Anything else gets 401 and the login form: no asset, no data.
func (s *Server) authed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.secure || tokenOK(requestToken(r), s.hub.currentToken()) {
			h.ServeHTTP(w, r)
			return
		}
		s.unauthorized(w, r, "")
	})
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raftswarm dashboard: log in</title></head>
<body>
<h1>raftswarm dashboard</h1>
<p>Log in with the token that <code>swarmctl dashboard-token</code> prints on a manager.</p>
{{if .}}<p role="alert"><strong>{{.}}</strong></p>{{end}}
<form method="post" action="/login">
<label>Token <input type="password" name="token" autocomplete="off" autofocus></label>
<button type="submit">Log in</button>
</form>
</body></html>
`))

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="raftswarm dashboard"`)
	if r.URL.Path == "/events" || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Error(w, "401 unauthorized: log in with the token 'swarmctl dashboard-token' prints", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_ = loginPage.Execute(w, msg)
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !s.secure {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if !tokenOK(tok, s.hub.currentToken()) {
		r.Header.Set("Accept", "text/html")
		s.unauthorized(w, r, "Wrong or rotated token.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: tok, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// keepAlive keeps idle streams' connections from being cut by proxies, and
// finds pages that went away.
const keepAlive = 15 * time.Second

// serveEvents is the server-sent event stream: a snapshot, then diffs.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	snap, sb, token, err := s.hub.subscribe()
	if err != nil {
		http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer s.hub.unsubscribe(sb)
	// The token may have been rotated between the check and the subscribe.
	if s.secure && !tokenOK(requestToken(r), token) {
		s.unauthorized(w, r, "")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how soon the browser reconnects after the hub drops a stream.
	if _, err := fmt.Fprintf(w, "retry: 500\nevent: snapshot\ndata: %s\n\n", snap); err != nil {
		return
	}
	fl.Flush()
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ka.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case b, ok := <-sb.ch:
			if !ok {
				return // dropped: rotated token, new source or too slow
			}
			if _, err := fmt.Fprintf(w, "event: diff\ndata: %s\n\n", b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
