// Package wellknown is what the mail app serves over HTTP for other
// programs to find: the MTA-STS policy of its domains (RFC 8461, at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt) and client
// autoconfiguration, so that typing an address and a password sets a mail
// client up: Thunderbird's config-v1.1.xml (autoconfig.DOMAIN/mail/ and
// DOMAIN/.well-known/autoconfig/mail/), Microsoft's autodiscover POST
// (autodiscover.DOMAIN/autodiscover/autodiscover.xml) and an Apple
// configuration profile (/mail.mobileconfig?emailaddress=ADDR). Each is a
// plain http.Handler; Mount puts them on a mailsvc.Web-like mux.
//
// No answer says whether a user exists: autoconfiguration describes the
// servers for any address of a local domain.
package wellknown

import (
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"

	"github.com/nymote/nymote/apps/mail/msgauth"
)

// Config describes the servers.
type Config struct {
	// Domains are the local mail domains.
	Domains []string
	// Hostname is the name clients and MTAs connect to (the MX).
	Hostname string
	// STSMode is the MTA-STS policy's mode; "" is "enforce".
	STSMode string
}

func (c Config) local(domain string) (string, bool) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range c.Domains {
		if strings.EqualFold(d, domain) {
			return strings.ToLower(d), true
		}
	}
	return "", false
}

// hostOf is r's host name without a port, lower case.
func hostOf(r *http.Request) string {
	h := r.Host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// STS serves the MTA-STS policy at /.well-known/mta-sts.txt for requests
// to mta-sts.DOMAIN of a local domain (RFC 8461 3.3: text/plain, HTTPS
// only: mount it on HTTPS alone).
func (c Config) STS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := strings.CutPrefix(hostOf(r), "mta-sts.")
		if _, local := c.local(d); !ok || !local {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, msgauth.STSPolicy(c.STSMode, c.Hostname))
	})
}

// address parses an e-mail address of a local domain.
func (c Config) address(s string) (addr, local, domain string, err error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", "", "", fmt.Errorf("bad address %q", s)
	}
	at := strings.LastIndexByte(a.Address, '@')
	domain, ok := c.local(a.Address[at+1:])
	if !ok {
		return "", "", "", fmt.Errorf("%s is not a domain of this server", a.Address[at+1:])
	}
	return strings.ToLower(a.Address[:at]) + "@" + domain, strings.ToLower(a.Address[:at]), domain, nil
}

// Thunderbird's autoconfig (clientConfig version 1.1).
type clientConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider provider `xml:"emailProvider"`
}

type provider struct {
	ID       string   `xml:"id,attr"`
	Domain   []string `xml:"domain"`
	Display  string   `xml:"displayName"`
	Short    string   `xml:"displayShortName"`
	Incoming []server `xml:"incomingServer"`
	Outgoing []server `xml:"outgoingServer"`
}

type server struct {
	Type       string `xml:"type,attr"`
	Hostname   string `xml:"hostname"`
	Port       int    `xml:"port"`
	SocketType string `xml:"socketType"`
	Auth       string `xml:"authentication"`
	Username   string `xml:"username"`
}

// Autoconfig serves Thunderbird's config-v1.1.xml for a local domain: the
// domain is the request's host without "autoconfig.", or the
// emailaddress parameter's. Implicit TLS first (RFC 8314), STARTTLS
// after.
func (c Config) Autoconfig() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain, ok := c.local(strings.TrimPrefix(hostOf(r), "autoconfig."))
		if e := r.URL.Query().Get("emailaddress"); e != "" {
			_, _, d, err := c.address(e)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			domain, ok = d, true
		}
		if !ok {
			http.Error(w, "no mail domain of this server named", http.StatusNotFound)
			return
		}
		u := "%EMAILADDRESS%"
		cc := clientConfig{Version: "1.1", Provider: provider{ID: domain, Domain: c.Domains,
			Display: domain + " mail (Nymote)", Short: domain,
			Incoming: []server{
				{"imap", c.Hostname, 993, "SSL", "password-cleartext", u},
				{"imap", c.Hostname, 143, "STARTTLS", "password-cleartext", u},
			},
			Outgoing: []server{
				{"smtp", c.Hostname, 465, "SSL", "password-cleartext", u},
				{"smtp", c.Hostname, 587, "STARTTLS", "password-cleartext", u},
			}}}
		writeXML(w, "application/xml", cc)
	})
}

func writeXML(w http.ResponseWriter, ctype string, v any) {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype+"; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(b)
	io.WriteString(w, "\n")
}

// Microsoft's autodiscover (POX, the Outlook schemas of 2006).
const (
	adRequestNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	adResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	adOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

type adResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	NS       string   `xml:"xmlns,attr"`
	Response struct {
		NS      string `xml:"xmlns,attr"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocol    []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

type adProtocol struct {
	Type         string `xml:"Type"`
	Server       string `xml:"Server"`
	Port         int    `xml:"Port"`
	LoginName    string `xml:"LoginName"`
	DomainReq    string `xml:"DomainRequired"`
	SPA          string `xml:"SPA"`
	SSL          string `xml:"SSL"`
	AuthRequired string `xml:"AuthRequired"`
}

// maxRequest bounds the request bodies read.
const maxRequest = 64 << 10

// Autodiscover answers Outlook's autodiscover POST for an address of a
// local domain with the IMAP and SMTP settings.
func (c Config) Autodiscover() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an autodiscover request", http.StatusMethodNotAllowed)
			return
		}
		var req adRequest
		if err := xml.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(&req); err != nil {
			http.Error(w, "bad autodiscover request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if s := req.Request.AcceptableResponseSchema; s != "" && s != adOutlookNS {
			http.Error(w, "only the outlook response schema is offered", http.StatusBadRequest)
			return
		}
		addr, _, _, err := c.address(req.Request.EMailAddress)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		var resp adResponse
		resp.NS, resp.Response.NS = adResponseNS, adOutlookNS
		a := &resp.Response.Account
		a.AccountType, a.Action = "email", "settings"
		a.Protocol = []adProtocol{
			{Type: "IMAP", Server: c.Hostname, Port: 993, LoginName: addr, DomainReq: "off", SPA: "off", SSL: "on", AuthRequired: "on"},
			{Type: "SMTP", Server: c.Hostname, Port: 465, LoginName: addr, DomainReq: "off", SPA: "off", SSL: "on", AuthRequired: "on"},
		}
		writeXML(w, "application/xml", resp)
	})
}

// plistEscape escapes text for a plist <string>.
func plistEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// uuidOf is a stable UUID (version 4 layout) for name, so that a profile
// installed again replaces the one before.
func uuidOf(name string) string {
	h := sha256.Sum256([]byte("nymote mobileconfig " + name))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// MobileConfig serves an Apple configuration profile (an unsigned
// com.apple.mail.managed payload, without the password) for the address
// in the emailaddress parameter.
func (c Config) MobileConfig() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, _, domain, err := c.address(r.URL.Query().Get("emailaddress"))
		if err != nil {
			http.Error(w, "give ?emailaddress=ADDRESS of this server: "+err.Error(), http.StatusNotFound)
			return
		}
		rev := strings.Split(domain, ".")
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		id := strings.Join(rev, ".") + ".nymote.mail." + strings.NewReplacer("@", ".", "+", "-").Replace(addr)
		e, h := plistEscape(addr), plistEscape(c.Hostname)
		w.Header().Set("Content-Type", "application/x-apple-aspen-config; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+domain+`.mobileconfig"`)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>EmailAccountDescription</key>
			<string>%[1]s</string>
			<key>EmailAccountType</key>
			<string>EmailTypeIMAP</string>
			<key>EmailAddress</key>
			<string>%[1]s</string>
			<key>IncomingMailServerAuthentication</key>
			<string>EmailAuthPassword</string>
			<key>IncomingMailServerHostName</key>
			<string>%[2]s</string>
			<key>IncomingMailServerPortNumber</key>
			<integer>993</integer>
			<key>IncomingMailServerUseSSL</key>
			<true/>
			<key>IncomingMailServerUsername</key>
			<string>%[1]s</string>
			<key>OutgoingMailServerAuthentication</key>
			<string>EmailAuthPassword</string>
			<key>OutgoingMailServerHostName</key>
			<string>%[2]s</string>
			<key>OutgoingMailServerPortNumber</key>
			<integer>465</integer>
			<key>OutgoingMailServerUseSSL</key>
			<true/>
			<key>OutgoingMailServerUsername</key>
			<string>%[1]s</string>
			<key>OutgoingPasswordSameAsIncomingPassword</key>
			<true/>
			<key>PayloadDisplayName</key>
			<string>Mail: %[1]s</string>
			<key>PayloadIdentifier</key>
			<string>%[3]s.email</string>
			<key>PayloadType</key>
			<string>com.apple.mail.managed</string>
			<key>PayloadUUID</key>
			<string>%[4]s</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
	</array>
	<key>PayloadDisplayName</key>
	<string>%[1]s (Nymote mail)</string>
	<key>PayloadIdentifier</key>
	<string>%[3]s</string>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>%[5]s</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
`, e, h, plistEscape(id), uuidOf(addr+" email"), uuidOf(addr))
	})
}

// Mounter is what Mount mounts on (mailsvc.Web).
type Mounter interface {
	Mount(pattern string, h http.Handler)
	MountPlain(pattern, prefix string, h http.Handler)
}

// Mount puts the handlers on m: the MTA-STS policy on HTTPS only, the
// autoconfiguration on HTTP too (Thunderbird falls back to plain HTTP,
// and it holds no secret).
func (c Config) Mount(m Mounter) {
	m.Mount("/.well-known/mta-sts.txt", c.STS())
	m.MountPlain("/mail/config-v1.1.xml", "/mail/config-v1.1.xml", c.Autoconfig())
	m.MountPlain("/.well-known/autoconfig/mail/config-v1.1.xml", "/.well-known/autoconfig/", c.Autoconfig())
	m.Mount("/autodiscover/autodiscover.xml", c.Autodiscover())
	m.Mount("/Autodiscover/Autodiscover.xml", c.Autodiscover())
	m.Mount("/mail.mobileconfig", c.MobileConfig())
}
