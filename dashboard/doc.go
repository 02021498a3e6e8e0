// Package dashboard serves a manager's read-only web dashboard: nodes (status,
// role, availability, resources), services (replicas running/desired, update
// state and progress) and the visualizer's grid of tasks per node, kept live
// with server-sent events.
//
// The page reads the local manager's store, leader or follower: one
// ViewAndWatch per store feeds a model (hub.go) that every open page shares.
// A page gets the whole model once, then diffs: the hub collects the IDs
// that store events touched and sends them at most every Coalesce interval,
// so a burst of 10,000 task writes costs the browser a handful of messages,
// not 10,000. A slow page whose queue fills is dropped and reconnects to a
// fresh snapshot, never holding the hub back.
//
// Bound to a loopback address the dashboard is plain HTTP without login. On
// any other address it is HTTPS with this manager's certificate (signed by
// the cluster's CA) and every request, assets included, needs the login
// token 'swarmctl dashboard-token' prints (Cluster.dashboard_token, in
// Raft): as a Bearer header or the cookie the login form sets. The hub
// watches the token, so a rotation ends open streams at once.
//
// Everything the page shows comes from users or workers (names, labels,
// hostnames): the page builds its DOM with textContent only, and all assets
// are embedded; no CDN, no build step.
package dashboard
