package wellknown

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var testConfig = Config{Domains: []string{"example.org", "example.net"}, Hostname: "mx.example.org"}

func do(t *testing.T, h http.Handler, method, url, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, url, r))
	return rec
}

// TestSTS: the policy is served for mta-sts.DOMAIN of a local domain
// only, as text/plain, naming the MX and enforce.
func TestSTS(t *testing.T) {
	h := testConfig.STS()
	rec := do(t, h, "GET", "https://mta-sts.example.net/.well-known/mta-sts.txt", "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/plain" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 604800\r\n"
	if rec.Body.String() != want {
		t.Errorf("policy %q, want %q", rec.Body.String(), want)
	}
	for _, url := range []string{"https://mta-sts.other.test/.well-known/mta-sts.txt", "https://example.org/.well-known/mta-sts.txt"} {
		if rec := do(t, h, "GET", url, ""); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", url, rec.Code)
		}
	}
}

// TestAutoconfig: Thunderbird's file has the schema's elements (version
// 1.1, emailProvider with domain, incomingServer and outgoingServer with
// hostname, port, socketType, authentication, username) and names the
// server's ports, implicit TLS first; other domains get 404.
func TestAutoconfig(t *testing.T) {
	h := testConfig.Autoconfig()
	for _, url := range []string{"http://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=alice%40example.org",
		"https://example.net/.well-known/autoconfig/mail/config-v1.1.xml", "http://autoconfig.example.org/mail/config-v1.1.xml"} {
		rec := do(t, h, "GET", url, "")
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/xml") {
			t.Fatalf("%s: %d %s", url, rec.Code, rec.Body.String())
		}
		var cc struct {
			XMLName  xml.Name `xml:"clientConfig"`
			Version  string   `xml:"version,attr"`
			Provider struct {
				ID      string   `xml:"id,attr"`
				Domains []string `xml:"domain"`
				Display string   `xml:"displayName"`
				In      []server `xml:"incomingServer"`
				Out     []server `xml:"outgoingServer"`
			} `xml:"emailProvider"`
		}
		if err := xml.Unmarshal(rec.Body.Bytes(), &cc); err != nil {
			t.Fatalf("%s: %v\n%s", url, err, rec.Body.String())
		}
		p := cc.Provider
		if cc.Version != "1.1" || p.ID == "" || len(p.Domains) != 2 || p.Display == "" || len(p.In) != 2 || len(p.Out) != 2 {
			t.Fatalf("%s: %+v", url, cc)
		}
		want := []server{{"imap", "mx.example.org", 993, "SSL", "password-cleartext", "%EMAILADDRESS%"},
			{"imap", "mx.example.org", 143, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"},
			{"smtp", "mx.example.org", 465, "SSL", "password-cleartext", "%EMAILADDRESS%"},
			{"smtp", "mx.example.org", 587, "STARTTLS", "password-cleartext", "%EMAILADDRESS%"}}
		for i, s := range append(p.In, p.Out...) {
			if s != want[i] {
				t.Errorf("%s: server %d %+v, want %+v", url, i, s, want[i])
			}
		}
	}
	for _, url := range []string{"http://autoconfig.other.test/mail/config-v1.1.xml", "http://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=x%40other.test",
		"http://autoconfig.example.org/mail/config-v1.1.xml?emailaddress=%3C%3C%3C"} {
		if rec := do(t, h, "GET", url, ""); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", url, rec.Code)
		}
	}
}

// TestAutodiscover: the POST of Outlook's request schema gets IMAP and
// SMTP settings over implicit TLS with the address as login; a GET, junk
// XML, or another domain's address do not.
func TestAutodiscover(t *testing.T) {
	h := testConfig.Autodiscover()
	req := `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>Alice@Example.org</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>
</Autodiscover>`
	rec := do(t, h, "POST", "https://autodiscover.example.org/autodiscover/autodiscover.xml", req)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	var resp struct {
		XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
		Response struct {
			XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
			Account struct {
				AccountType, Action string
				Protocol            []adProtocol
			}
		}
	}
	if err := xml.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%v\n%s", err, rec.Body.String())
	}
	a := resp.Response.Account
	if a.AccountType != "email" || a.Action != "settings" || len(a.Protocol) != 2 {
		t.Fatalf("%+v", a)
	}
	for i, want := range []struct {
		typ  string
		port int
	}{{"IMAP", 993}, {"SMTP", 465}} {
		p := a.Protocol[i]
		if p.Type != want.typ || p.Port != want.port || p.Server != "mx.example.org" || p.SSL != "on" || p.LoginName != "alice@example.org" {
			t.Errorf("protocol %d: %+v", i, p)
		}
	}
	for _, tc := range []struct{ method, body string }{{"GET", ""}, {"POST", "<Autodiscover><Request>"}, {"POST", strings.Replace(req, "Example.org", "other.test", 1)}} {
		if rec := do(t, h, tc.method, "https://autodiscover.example.org/autodiscover/autodiscover.xml", tc.body); rec.Code == 200 {
			t.Errorf("%s %q: 200", tc.method, tc.body)
		}
	}
}

// TestMobileConfig: the Apple profile is a well-formed plist (Go's XML
// parser; Python's plistlib reads it and finds the payload) naming the
// address and the server; a stable UUID per address.
func TestMobileConfig(t *testing.T) {
	h := testConfig.MobileConfig()
	rec := do(t, h, "GET", "https://mx.example.org/mail.mobileconfig?emailaddress=bob%2Btag%40example.net", "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/x-apple-aspen-config; charset=utf-8" {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	body := rec.Body.String()
	d := xml.NewDecoder(strings.NewReader(body))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, body)
		}
	}
	if again := do(t, h, "GET", "https://mx.example.org/mail.mobileconfig?emailaddress=bob%2Btag%40example.net", "").Body.String(); again != body {
		t.Error("a second profile for the same address differs")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: plistlib not run")
	}
	f := filepath.Join(t.TempDir(), "p.mobileconfig")
	os.WriteFile(f, rec.Body.Bytes(), 0o600)
	script := `import plistlib,sys
p=plistlib.load(open(sys.argv[1],'rb'))
e=p['PayloadContent'][0]
assert p['PayloadType']=='Configuration' and p['PayloadVersion']==1, p
assert e['PayloadType']=='com.apple.mail.managed', e
assert e['EmailAddress']=='bob+tag@example.net' and e['IncomingMailServerHostName']=='mx.example.org', e
assert e['IncomingMailServerPortNumber']==993 and e['OutgoingMailServerPortNumber']==465 and e['IncomingMailServerUseSSL'] is True, e
print('ok')
`
	if out, err := exec.Command(py, "-c", script, f).CombinedOutput(); err != nil {
		t.Errorf("plistlib: %v\n%s\n%s", err, out, body)
	}
	if rec := do(t, h, "GET", "https://mx.example.org/mail.mobileconfig?emailaddress=x%40other.test", ""); rec.Code != 404 {
		t.Errorf("another domain: %d", rec.Code)
	}
}
