package layers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/raftswarm/raftswarm"

// layers lists raftswarm's packages from the lowest layer to the highest.
// A package may import packages of its own layer or of lower ones, never of
// a higher one. Paths are relative to the module; an entry also covers the
// directories below it unless they are listed themselves.
var layers = [][]string{
	// Wire types and leaf helpers: the standard library and outside
	// modules only.
	{"proto", "internal/identity", "internal/retry", "internal/testutil", "internal/listing", "internal/layers", "internal/testdocker", "internal/metrics", "internal/version", "internal/clock", "internal/nft"},
	// The placement engine is pure (no store, no Raft); spec reuses its
	// constraint parser.
	{"scheduler"},
	{"spec"},
	{"state"},
	{"ca", "internal/dial"},
	{"raft"},
	// Leader-only work over the store (reconciliation, and the scheduling
	// loop that drives the pure scheduler); it must not know the control API.
	{"orchestrator", "scheduler/loop"},
	// What runs tasks and routes traffic on a node.
	{"agent/exec", "agent/worker", "mesh", "netplane"},
	// The control API served by managers.
	{"api"},
	// The node agent: heartbeats, task sessions, mesh and log wiring.
	{"agent"},
	{"manager", "dashboard"},
	// The daemon: local API, init/join, role changes.
	{"node"},
	{"cli", "stack"},
	// Mains, test harnesses and benchmarks: they may import anything.
	{"cmd", "internal/testcluster", "bench", "e2e", "integration", "deploy", "chaos"},
}

// onlyImportedBy names packages that, beyond the layer order, only the
// listed directories may import.
var onlyImportedBy = map[string][]string{
	"cli": {"cmd"},
	// Tests import it from _test.go files, which this check does not read.
	"internal/testcluster": {"bench"},
}

// pendingViolations are imports that break the table today and that work in
// flight removes (issue 8). Each key is "importer -> imported". Empty this
// once that work has landed; the test fails on an entry that no longer
// occurs, so it cannot go stale.
var pendingViolations = map[string]string{}

// layerOf returns the layer index of pkg (module-relative) and the table
// entry that placed it, or -1.
func layerOf(pkg string) (int, string) {
	best, bestEntry := -1, ""
	for i, l := range layers {
		for _, e := range l {
			if (pkg == e || strings.HasPrefix(pkg, e+"/")) && len(e) > len(bestEntry) {
				best, bestEntry = i, e
			}
		}
	}
	return best, bestEntry
}

func under(pkg string, dirs []string) bool {
	for _, d := range dirs {
		if pkg == d || strings.HasPrefix(pkg, d+"/") {
			return true
		}
	}
	return false
}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// packages lists the module's packages and their (non-test) imports,
// module-relative, through the go command.
func packages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		q := goPackage{ImportPath: rel}
		for _, imp := range p.Imports {
			if r, ok := strings.CutPrefix(imp, module+"/"); ok {
				q.Imports = append(q.Imports, r)
			}
		}
		pkgs = append(pkgs, q)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// violations returns every import that breaks the table, as
// "importer -> imported" keys with an explanation.
func violations(pkgs []goPackage) (map[string]string, []string) {
	bad := map[string]string{}
	var unplaced []string
	for _, p := range pkgs {
		from, _ := layerOf(p.ImportPath)
		if from < 0 {
			unplaced = append(unplaced, p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			to, _ := layerOf(imp)
			if to > from {
				bad[p.ImportPath+" -> "+imp] = fmt.Sprintf("layer %d imports layer %d", from, to)
			}
			for target, allowed := range onlyImportedBy {
				if (imp == target || strings.HasPrefix(imp, target+"/")) && !under(p.ImportPath, allowed) && !under(p.ImportPath, []string{target}) {
					bad[p.ImportPath+" -> "+imp] = fmt.Sprintf("only %v may import %s", allowed, target)
				}
			}
		}
	}
	return bad, unplaced
}

func TestNoLowerLayerImportsAHigherOne(t *testing.T) {
	bad, unplaced := violations(packages(t))
	for _, p := range unplaced {
		t.Errorf("package %s is in no layer: add it (or its directory) to the table in internal/layers/layers_test.go", p)
	}
	keys := make([]string, 0, len(bad))
	for k := range bad {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := pendingViolations[k]; ok {
			t.Logf("pending (allowlisted): %s: %s", k, bad[k])
			continue
		}
		t.Errorf("%s: %s; move the code down a layer or depend on an interface the lower package owns", k, bad[k])
	}
	for k, why := range pendingViolations {
		if _, ok := bad[k]; !ok {
			t.Errorf("pendingViolations lists %q (%s) but it no longer occurs: remove the entry", k, why)
		}
	}
}

// The rules issue 8 names, checked against the table itself so that an edit
// of the table cannot quietly drop them.
func TestTableKeepsTheNamedRules(t *testing.T) {
	never := []struct {
		from []string
		to   []string
	}{
		{[]string{"state", "raft", "scheduler", "orchestrator", "spec"}, []string{"api", "manager", "node", "cli"}},
		{[]string{"orchestrator"}, []string{"api"}},
		{[]string{"agent"}, []string{"node", "manager"}},
	}
	for _, r := range never {
		for _, f := range r.from {
			for _, to := range r.to {
				lf, ef := layerOf(f)
				lt, et := layerOf(to)
				if lf < 0 || lt < 0 || ef != f || et != to {
					t.Errorf("%s or %s is not listed in the table", f, to)
					continue
				}
				if lt <= lf {
					t.Errorf("the table lets %s (layer %d) import %s (layer %d)", f, lf, to, lt)
				}
			}
		}
	}
	if got := onlyImportedBy["cli"]; len(got) != 1 || got[0] != "cmd" {
		t.Errorf(`onlyImportedBy["cli"] = %v, want [cmd]`, got)
	}
}

// The check itself: a downward import passes, an upward one fails, and an
// unplaced package is reported.
func TestViolationsDetectsUpwardImports(t *testing.T) {
	bad, unplaced := violations([]goPackage{
		{ImportPath: "state", Imports: []string{"proto"}},
		{ImportPath: "state", Imports: []string{"api"}},
		{ImportPath: "manager/dispatcher", Imports: []string{"node"}},
		{ImportPath: "bench/x", Imports: []string{"cli"}},
		{ImportPath: "cmd/swarmctl", Imports: []string{"cli"}},
		{ImportPath: "nowhere", Imports: nil},
	})
	want := []string{"state -> api", "manager/dispatcher -> node", "bench/x -> cli"}
	for _, k := range want {
		if _, ok := bad[k]; !ok {
			t.Errorf("%s not reported; got %v", k, bad)
		}
	}
	if len(bad) != len(want) {
		t.Errorf("got %d violations, want %d: %v", len(bad), len(want), bad)
	}
	if len(unplaced) != 1 || unplaced[0] != "nowhere" {
		t.Errorf("unplaced = %v, want [nowhere]", unplaced)
	}
}
