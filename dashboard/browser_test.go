package dashboard_test

// Browser tests: the dashboard in headless Chromium (Debian's chromium
// package), driven by chromedp. They skip when no Chromium is installed.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// browser starts a headless Chromium for the test, or skips it. Every
// browser action is bounded by limit.
func browser(t testing.TB, limit time.Duration) context.Context {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path != "" {
			break
		}
		path, _ = exec.LookPath(name)
	}
	if path == "" {
		t.Skip("no Chromium installed (apt-get install -y --no-install-recommends chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 900),
	)
	lctx, lcancel := context.WithTimeout(context.Background(), limit)
	actx, acancel := chromedp.NewExecAllocator(lctx, opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel(); lcancel() }) // kills the browser, removes its profile dir
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

// waitJS polls a JavaScript condition in the page until it is true or the
// timeout ends; on failure it reports what the page shows.
func waitJS(t testing.TB, ctx context.Context, timeout time.Duration, what, cond string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := chromedp.Run(tctx, chromedp.Poll[bool]("(() => { try { return !!("+cond+"); } catch (e) { return false; } })()",
		chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil || !ok {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("page never showed %s within %v (%v); it shows:\n%.3000s", what, timeout, err, body)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func replicasCell(name string) string {
	return fmt.Sprintf(`document.querySelector('tr[data-service-name=%s] td[data-field=replicas]').textContent`, strconv.Quote(name))
}

func nodeStatus(id string) string {
	return fmt.Sprintf(`document.querySelector('tr[data-node-id=%s] td[data-field=status]').textContent`, strconv.Quote(id))
}

func scale(t *testing.T, ctx context.Context, ctl swarmpb.ControlClient, name string, replicas uint64) {
	t.Helper()
	got, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: name})
	if err != nil {
		t.Fatal(err)
	}
	sp := proto.Clone(got.Service.Spec).(*swarmpb.ServiceSpec)
	sp.Replicas = replicas
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: name, Spec: sp, Version: got.Service.Meta.Version}); err != nil {
		t.Fatalf("scale %s: %v", name, err)
	}
}

// The page shows an in-process cluster, follows a scale without a reload,
// turns a killed node Down, and shows hostile labels as text.
func TestBrowserLiveCluster(t *testing.T) {
	bctx := browser(t, 5*time.Minute)
	// Heartbeats every 500 ms (Down after 1.5 s): on a saturated machine
	// the 100 ms default lets live nodes flap Down, which the page would
	// rightly show.
	c := testcluster.New(t, 1, 3, testcluster.Options{HeartbeatPeriod: 500 * time.Millisecond, Configure: func(name string, cfg *node.Config) {
		if name == "m1" {
			cfg.DashboardAddr = "127.0.6.1:0"
		}
	}})
	ctx := ctxT(t, 4*time.Minute)
	ctl := c.Control()
	url := c.Get("m1").Node.DashboardURL()
	if url == "" {
		t.Fatal("m1 serves no dashboard")
	}
	mk := func(name string, replicas uint64, mode swarmpb.ServiceMode) {
		sp := &swarmpb.ServiceSpec{Name: name, Replicas: replicas, Mode: mode, Container: &swarmpb.ContainerSpec{Image: "raftswarm/demo:v1"}}
		if _, err := ctl.CreateService(ctx, &swarmpb.CreateServiceRequest{Spec: sp}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	mk("web", 2, swarmpb.ServiceMode_SERVICE_MODE_REPLICATED)
	mk("monitor", 0, swarmpb.ServiceMode_SERVICE_MODE_GLOBAL)
	const hostile = `<img src=x onerror="window.__pwned=1">`
	w1 := c.Get("w1").NodeID()
	if _, err := ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: w1, LabelAdd: map[string]string{"note": hostile}}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, bctx, 60*time.Second, "web at 2/2", replicasCell("web")+` === "2/2"`)
	waitJS(t, bctx, 60*time.Second, "monitor on all 4 nodes", replicasCell("monitor")+` === "4/4"`)
	waitJS(t, bctx, 10*time.Second, "the label as text", fmt.Sprintf(
		`document.querySelector('tr[data-node-id=%q] td.labels').textContent.includes(%q) && !document.querySelector('#nodes img') && !window.__pwned`, w1, hostile))
	// A marker a reload would lose.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.__noReload = 1`)); err != nil {
		t.Fatal(err)
	}

	scale(t, ctx, ctl, "web", 5)
	waitJS(t, bctx, 60*time.Second, "web scaled to 5/5 without a reload", replicasCell("web")+` === "5/5" && window.__noReload === 1`)

	w3 := c.Get("w3")
	id := w3.NodeID()
	waitJS(t, bctx, 10*time.Second, "w3 ready", nodeStatus(id)+` === "ready"`)
	w3.Stop()
	waitJS(t, bctx, 60*time.Second, "w3 down without a reload", nodeStatus(id)+` === "down" && window.__noReload === 1`)

	// A rolling update, one task a second: its progress shows as it goes.
	got, err := ctl.GetService(ctx, &swarmpb.GetServiceRequest{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	sp := proto.Clone(got.Service.Spec).(*swarmpb.ServiceSpec)
	sp.Container.Image = "raftswarm/demo:v2"
	sp.Update = &swarmpb.UpdateConfig{Parallelism: 1, DelayNs: int64(time.Second)}
	if _, err := ctl.UpdateService(ctx, &swarmpb.UpdateServiceRequest{Service: "web", Spec: sp}); err != nil {
		t.Fatal(err)
	}
	progress := `document.querySelector('tr[data-service-name="web"] td[data-field=progress]').textContent`
	waitJS(t, bctx, 60*time.Second, "the update in progress", fmt.Sprintf(
		`document.querySelector('tr[data-service-name="web"] td[data-field=update]').textContent.includes("updating") && /^[1-4]\/5 updated$/.test(%s)`, progress))
	// Task cells of the previous spec are hatched: as many as the progress leaves.
	waitJS(t, bctx, 60*time.Second, "stale cells matching the progress", fmt.Sprintf(
		`(() => { const m = /^(\d)\/5 updated$/.exec(%s); return m && document.querySelectorAll('#grid .task.stale').length === 5 - Number(m[1]); })()`, progress))
	shot := os.Getenv("DASHBOARD_SCREENSHOT")
	var png []byte
	if shot != "" {
		if png, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
			t.Fatal(err)
		}
	}
	waitJS(t, bctx, 60*time.Second, "the update completed", `document.querySelector('tr[data-service-name="web"] td[data-field=update]').textContent.includes("completed") && `+progress+` === ""`)

	if path := shot; path != "" {
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
