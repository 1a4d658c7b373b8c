// Package browsertest drives Debian's chromium (headless, through
// chromedp) for the web console's tests, on a phone-sized window, and keeps
// the screenshots they take.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Hung bounds each browser step: generous, so that only a hung browser
// reaches it, never a slow (loaded) machine.
const Hung = 2 * time.Minute

// New starts a headless chromium for the test and returns its context;
// the test is skipped when chromium is not installed (apt-get install
// chromium). The browser trusts any certificate (the appliances' are
// self-signed) and stops when the test ends.
func New(t *testing.T) context.Context {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium not installed (apt-get install -y chromium); skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0), // root has no user namespace sandbox
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(412, 860), // a phone
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelA()
	})
	// Start the browser now: with ctx itself, since the browser lives as
	// long as the context of the first run (a hang is bounded by the
	// test's own timeout).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	return ctx
}

// Do runs actions with the Hung bound.
func Do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, Hung)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Text returns the text of the first node sel matches, once visible.
func Text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	Do(t, ctx, "wait for "+sel, chromedp.WaitVisible(sel))
	sctx, cancel := context.WithTimeout(ctx, Hung)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Login signs in on the console at base (https://HOST:PORT).
func Login(t *testing.T, ctx context.Context, base, user, password string) {
	t.Helper()
	Do(t, ctx, "sign in",
		chromedp.Navigate(base+"/console/login"),
		chromedp.WaitVisible(`input[name=user]`),
		chromedp.SendKeys(`input[name=user]`, user),
		chromedp.SendKeys(`input[name=password]`, password),
		chromedp.Click(`form button[type=submit]`),
		chromedp.WaitVisible(`ol.timeline`))
}

// Screenshot saves the viewport as NAME.png in $NYMOTE_SCREENSHOTS (the
// artefacts folder of a test run; the README's pictures come from there),
// or in the test's temporary folder.
func Screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("NYMOTE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, Hung)
	defer cancel()
	buf, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(buf))
}
