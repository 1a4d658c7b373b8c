package nymote

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/internal/deptest"
)

const module = "github.com/nymote/nymote"

// linuxEnv lists packages as they build for an appliance's and the host
// tool's usual system.
var linuxEnv = []string{"GOOS=linux", "GOARCH=amd64"}

// TestHostToolDeps: the host tool (nymote), jitsu and the image builder do
// not link the PID 1 runtime: no appliance package, no netstack, no gVisor,
// no u-root libinit. They read what they need of it from appliance/app.
func TestHostToolDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	bad := []string{"gvisor.dev/...", "github.com/u-root/u-root/pkg/libinit/...",
		module + "/appliance", module + "/netstack/..."}
	for _, p := range deptest.List(t, ".", linuxEnv, false, "./cmd/nymote", "./jitsu/...", "./images") {
		if got := deptest.Matching(append(p.Deps, p.ImportPath), bad...); len(got) > 0 {
			t.Errorf("%s links %s: the host side must not link the appliance runtime (use appliance/app)", p.ImportPath, strings.Join(got, ", "))
		}
	}
}

// TestStoreDeps: store knows nothing of Nymote: it links no other package
// of this module (no app, no runtime), nor do its tests import one.
func TestStoreDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, p := range deptest.List(t, ".", linuxEnv, false, "./store/...") {
		var ours []string
		for _, d := range append(p.Deps, p.AllImports()...) {
			if deptest.Match(module+"/...", d) && !deptest.Match(module+"/store/...", d) {
				ours = append(ours, d)
			}
		}
		slices.Sort(ours)
		if ours = slices.Compact(ours); len(ours) > 0 {
			t.Errorf("%s imports %s: store imports no other package of this module", p.ImportPath, strings.Join(ours, ", "))
		}
	}
}

// TestAppsReachGitThroughStore: no package under apps/ (tests included)
// imports go-git or go-billy itself: apps reach git only through store
// (store.Hash, store.BlobHash, ...), so the store's model stays in one
// place.
func TestAppsReachGitThroughStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, p := range deptest.List(t, ".", linuxEnv, false, "./apps/...") {
		if got := deptest.Matching(p.AllImports(), "github.com/go-git/..."); len(got) > 0 {
			t.Errorf("%s imports %s: apps reach go-git only through store", p.ImportPath, strings.Join(got, ", "))
		}
	}
}

// TestLightPackagesDeps: appliance/app (read by the host side) links only
// the standard library, and netstack no other package of this module.
func TestLightPackagesDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, p := range deptest.List(t, ".", linuxEnv, true, "./appliance/app") {
		if !p.Standard && p.ImportPath != module+"/appliance/app" {
			t.Errorf("appliance/app links %s: it must link only the standard library", p.ImportPath)
		}
	}
	for _, p := range deptest.List(t, ".", linuxEnv, false, "./netstack") {
		for _, d := range p.Deps {
			if deptest.Match(module+"/...", d) {
				t.Errorf("netstack links %s: it must not depend on the rest of Nymote", d)
			}
		}
	}
}

// TestAppsLinkNoMetricsLibrary: the appliance programs (those of app.Apps)
// link neither the Prometheus client nor protocol buffers: /metrics is
// written by internal/metrics, and those libraries were about 1 MB of each
// program, code the page cache of a 64 MiB appliance has to hold. (Tests
// may use Prometheus's text parser to check the exposition.)
func TestAppsLinkNoMetricsLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	var mains []string
	for _, a := range app.Apps {
		mains = append(mains, a.Package)
	}
	for _, p := range deptest.List(t, ".", linuxEnv, false, mains...) {
		if got := deptest.Matching(p.Deps, "github.com/prometheus/...", "google.golang.org/protobuf/..."); len(got) > 0 {
			t.Errorf("%s links %s: the apps serve /metrics with internal/metrics", p.ImportPath, strings.Join(got, ", "))
		}
	}
}

// TestFrontDoor: every app's main function is one call of appliance.Main,
// so that the runtime, not the app, decides whether the process is PID 1,
// the poweroff helper or a host process. The apps are those of app.Apps.
func TestFrontDoor(t *testing.T) {
	for _, a := range app.Apps {
		dir := strings.TrimPrefix(a.Package, module+"/")
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, filepath.FromSlash(dir), nil, 0)
		if err != nil {
			t.Errorf("%s: %v", a.Name, err)
			continue
		}
		found := false
		for _, pkg := range pkgs {
			for name, f := range pkg.Files {
				if strings.HasSuffix(name, "_test.go") {
					continue
				}
				for _, d := range f.Decls {
					fn, ok := d.(*ast.FuncDecl)
					if !ok || fn.Name.Name != "main" || fn.Recv != nil {
						continue
					}
					found = true
					if !isApplianceMain(fn.Body) {
						t.Errorf("%s (%s): func main is not just appliance.Main(...)", a.Name, fset.Position(fn.Pos()))
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no func main in %s", a.Name, dir)
		}
	}
}

// isApplianceMain reports whether body is one statement, a call of
// appliance.Main.
func isApplianceMain(body *ast.BlockStmt) bool {
	if body == nil || len(body.List) != 1 {
		return false
	}
	es, ok := body.List[0].(*ast.ExprStmt)
	if !ok {
		return false
	}
	call, ok := es.X.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == "appliance" && sel.Sel.Name == "Main"
}
