package dashboard

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"go.uber.org/goleak"
)

func listen(t *testing.T, addr string, cfg Config) *Server {
	t.Helper()
	s, err := Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func get(t *testing.T, c *http.Client, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp
}

// A page gets the whole state, then only what changed, and ended tasks
// leave the grid.
func TestEventsSnapshotThenDiffs(t *testing.T) {
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) }) // after the server's Close
	f := newFixture(t)
	f.create(testNode("n1", "alpha"), testService("s1", "web", 1), testTask("t1", "s1", "n1", 1))
	s := listen(t, "127.0.0.1:0", Config{Coalesce: 10 * time.Millisecond})
	s.SetSource(&Source{Store: f.store, NodeID: "n1", IsLeader: func() bool { return true }})

	resp := get(t, http.DefaultClient, s.URL()+"events", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs := stream(resp)
	// The stream may be dropped once if it opened before the first load:
	// wait for a snapshot with the node in it.
	var snap snapshotMsg
	for {
		ev, ok := next(t, evs)
		if !ok {
			resp = get(t, http.DefaultClient, s.URL()+"events", nil)
			evs = stream(resp)
			continue
		}
		if ev.name != "snapshot" {
			t.Fatalf("first event %q, want snapshot", ev.name)
		}
		snap = decode[snapshotMsg](t, ev)
		if len(snap.Nodes) > 0 {
			break
		}
	}
	if !snap.Meta.Available || !snap.Meta.Leader || snap.Meta.NodeID != "n1" || snap.Meta.Cluster != "cluster1" {
		t.Errorf("meta = %+v", snap.Meta)
	}
	if got := ids(snap.Tasks, func(v *taskView) string { return v.ID + "@" + v.Node + ":" + v.State }); got != "[t1@n1:running]" {
		t.Errorf("snapshot tasks = %s", got)
	}
	if snap.Nodes[0].Host != "alpha" || snap.Nodes[0].Status != "ready" || snap.Nodes[0].CPUs != 2 {
		t.Errorf("snapshot node = %+v", snap.Nodes[0])
	}

	f.create(testTask("t2", "s1", "n1", 2))
	update(f, func(tx state.ReadTx) *swarmpb.Task { return tx.GetTask("t1") }, func(tk *swarmpb.Task) {
		tk.Status.State = swarmpb.TaskState_TASK_STATE_FAILED
	})
	update(f, func(tx state.ReadTx) *swarmpb.Node { return tx.GetNode("n1") }, func(n *swarmpb.Node) {
		n.Status = swarmpb.NodeStatus_NODE_STATUS_DOWN
	})
	// Collect diffs until all three changes arrived.
	var added, removed, down bool
	for !(added && removed && down) {
		ev, ok := next(t, evs)
		if !ok {
			t.Fatal("stream ended")
		}
		d := decode[diffMsg](t, ev)
		for _, tk := range d.Tasks {
			added = added || tk.ID == "t2"
		}
		for _, id := range d.DelTasks {
			removed = removed || id == "t1"
		}
		for _, n := range d.Nodes {
			down = down || (n.ID == "n1" && n.Status == "down")
		}
	}
	resp.Body.Close()
}

// A burst of writes reaches the page as a few coalesced messages.
func TestEventsCoalesceBursts(t *testing.T) {
	f := newFixture(t)
	f.create(testNode("n1", "alpha"), testService("s1", "web", 2000))
	s := listen(t, "127.0.0.1:0", Config{Coalesce: 500 * time.Millisecond})
	s.SetSource(&Source{Store: f.store, NodeID: "n1"})
	var evs <-chan sseEvent
	for evs == nil {
		evs = stream(get(t, http.DefaultClient, s.URL()+"events", nil))
		if ev, ok := next(t, evs); !ok || len(decode[snapshotMsg](t, ev).Nodes) == 0 {
			evs = nil
		}
	}
	const n = 2000
	for i := 1; i <= n; i++ {
		f.create(testTask(fmt.Sprintf("t%05d", i), "s1", "n1", uint64(i)))
	}
	seen, msgs := map[string]bool{}, 0
	for len(seen) < n {
		ev, ok := next(t, evs)
		if !ok {
			t.Fatal("stream ended")
		}
		msgs++
		for _, tk := range decode[diffMsg](t, ev).Tasks {
			seen[tk.ID] = true
		}
	}
	if msgs >= n/10 {
		t.Errorf("%d writes reached the page in %d messages: not coalesced", n, msgs)
	}
}

// Without a manager the page says so; it follows the manager that starts.
func TestNoManager(t *testing.T) {
	s := listen(t, "127.0.0.1:0", Config{})
	resp := get(t, http.DefaultClient, s.URL()+"events", nil)
	evs := stream(resp)
	ev, _ := next(t, evs)
	if m := decode[snapshotMsg](t, ev).Meta; m.Available || !strings.Contains(m.Message, "no manager") {
		t.Errorf("meta without a manager = %+v", m)
	}
	f := newFixture(t)
	s.SetSource(&Source{Store: f.store, NodeID: "n1"})
	if _, ok := next(t, evs); ok {
		t.Error("stream not ended when the source changed")
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.6.3": true, "::1": true, "localhost": true,
		"0.0.0.0": false, "10.1.2.3": false, "": false, "example.com": false, "::": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestListenBadAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for addr, want := range map[string]string{
		"nonsense":           "want HOST:PORT",
		"127.0.0.1:99999":    "cannot listen on 127.0.0.1:99999",
		busy.Addr().String(): "cannot listen on " + busy.Addr().String(),
		"192.0.2.1:8080":     "cannot listen on 192.0.2.1:8080", // TEST-NET: not on this host
	} {
		cfg := Config{Certificate: func() (*tls.Certificate, error) { return nil, nil }}
		if _, err := Listen(addr, cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Listen(%q) = %v, want an error containing %q", addr, err, want)
		}
	}
	if _, err := Listen("0.0.0.0:0", Config{}); err == nil || !strings.Contains(err.Error(), "needs HTTPS") {
		t.Errorf("non-loopback without a certificate: %v", err)
	}
}

// secureFixture serves on a non-loopback address (all addresses, port 0)
// and returns a client trusting its certificate, not following redirects.
func secureFixture(t *testing.T) (*fixture, *Server, *http.Client, string) {
	f := newFixture(t)
	f.create(testNode("n1", "alpha"))
	cert, pool := selfSigned(t)
	s := listen(t, "0.0.0.0:0", Config{Coalesce: 10 * time.Millisecond,
		Certificate: func() (*tls.Certificate, error) { return cert, nil }})
	if !s.Secure() || !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("a non-loopback dashboard is not HTTPS: %s", s.URL())
	}
	s.SetSource(&Source{Store: f.store, NodeID: "n1"})
	c := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dashboard-test"}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	t.Cleanup(c.CloseIdleConnections)
	_, port, _ := net.SplitHostPort(s.Addr().String())
	return f, s, c, "https://127.0.0.1:" + port + "/"
}

// Off loopback: HTTPS, and nothing without the current token.
func TestTokenRequired(t *testing.T) {
	f, _, c, base := secureFixture(t)
	// Plain HTTP is not served.
	if resp, err := http.Get("http" + strings.TrimPrefix(base, "https") + "app.js"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "EventSource") {
			t.Errorf("plain HTTP served %d", resp.StatusCode)
		}
	}
	paths := []string{"", "index.html", "app.js", "style.css", "events"}
	check401 := func(name string, hdr map[string]string) {
		t.Helper()
		for _, p := range paths {
			resp := get(t, c, base+p, hdr)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: GET /%s = %d, want 401", name, p, resp.StatusCode)
			}
			if strings.Contains(string(body), "EventSource") || strings.Contains(string(body), "alpha") || strings.Contains(string(body), "--bg") {
				t.Errorf("%s: GET /%s leaked content: %.200s", name, p, body)
			}
		}
	}
	check401("no token yet, none sent", nil)
	check401("no token yet, one sent", map[string]string{"Authorization": "Bearer x"})
	f.setToken("SWDASH-1-good")
	check401("no token", nil)
	check401("wrong bearer", map[string]string{"Authorization": "Bearer SWDASH-1-bad"})
	check401("wrong cookie", map[string]string{"Cookie": CookieName + "=SWDASH-1-bad"})
	check401("token in basic auth", map[string]string{"Authorization": "Basic U1dEQVNILTEtZ29vZA=="})

	// The login form is what a browser sees.
	resp := get(t, c, base, map[string]string{"Accept": "text/html"})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), `<form method="post" action="/login">`) {
		t.Errorf("browser without token: %d %.300s", resp.StatusCode, body)
	}

	good := map[string]string{"Authorization": "Bearer SWDASH-1-good"}
	for _, p := range []string{"", "app.js", "style.css"} {
		resp := get(t, c, base+p, good)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("bearer: GET /%s = %d", p, resp.StatusCode)
		}
	}
}

// The login form sets a strict cookie, and rotation logs every session
// out at once, open streams included.
func TestLoginCookieAndRotation(t *testing.T) {
	f, _, c, base := secureFixture(t)
	f.setToken("SWDASH-1-old")

	resp, err := c.PostForm(base+"login", url.Values{"token": {"SWDASH-1-wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("wrong login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp, err = c.PostForm(base+"login", url.Values{"token": {"SWDASH-1-old"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	ck := resp.Cookies()[0]
	if ck.Name != CookieName || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict", ck)
	}
	withCookie := map[string]string{"Cookie": ck.Name + "=" + ck.Value}
	resp = get(t, c, base+"app.js", withCookie)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with cookie: %d", resp.StatusCode)
	}
	streamResp := get(t, c, base+"events", withCookie)
	if streamResp.StatusCode != 200 {
		t.Fatalf("events with cookie: %d", streamResp.StatusCode)
	}
	evs := stream(streamResp)
	if ev, ok := next(t, evs); !ok || ev.name != "snapshot" {
		t.Fatalf("first event %q %v", ev.name, ok)
	}

	f.setToken("SWDASH-1-new")
	for {
		ev, ok := next(t, evs)
		if !ok {
			break // ended by the rotation
		}
		if ev.name != "diff" {
			t.Fatalf("event %q after rotation", ev.name)
		}
	}
	for name, hdr := range map[string]map[string]string{
		"old cookie": withCookie, "old bearer": {"Authorization": "Bearer SWDASH-1-old"},
	} {
		for _, p := range []string{"", "app.js", "events"} {
			resp := get(t, c, base+p, hdr)
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("%s after rotation: GET /%s = %d, want 401", name, p, resp.StatusCode)
			}
		}
	}
	resp = get(t, c, base+"events", map[string]string{"Authorization": "Bearer SWDASH-1-new"})
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("new token: %d", resp.StatusCode)
	}
}

// The loopback dashboard serves its embedded assets with a strict policy.
func TestAssetsLoopback(t *testing.T) {
	s := listen(t, "127.0.0.1:0", Config{})
	for p, want := range map[string]string{"": "<title>raftswarm dashboard</title>", "app.js": "EventSource", "style.css": "#grid"} {
		resp := get(t, http.DefaultClient, s.URL()+p, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET /%s: %d %.100s", p, resp.StatusCode, body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET /%s: CSP %q", p, csp)
		}
	}
	// No innerHTML anywhere: data only ever reaches the DOM as text.
	b, err := assets.ReadFile("assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "http://", "https://"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
