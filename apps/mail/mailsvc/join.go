package mailsvc

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/nymote/nymote/apps/internal/svc"
)

// While a new replica copies its store from a peer (replica.Join, which
// retries with a backoff until a peer answers), the service's ports are
// open and answer every connection with a temporary refusal that says why:
// IMAP with a BYE [UNAVAILABLE] greeting, SMTP (inbound and submission)
// with 421 (a sending server keeps the message and retries: nothing
// bounces), HTTP(S) and the git port with 503 and Retry-After. Serving the
// empty store instead would not be safe: it has no users yet, so logins
// would fail as if the password were wrong, and SMTP would refuse the
// recipients as unknown (a permanent error: mail bounced).
const (
	cloningIMAP = "* BYE [UNAVAILABLE] This node is copying its mail from its peer; try again in a minute"
	cloningSMTP = "421 4.3.2 This node is copying its mail from its peer; try again later"
	cloningHTTP = "This node is copying its store from its peer; try again in a minute."
)

// holdWhileCloning replaces ls's listeners with held ones that refuse
// (above) until the returned function releases them to the service.
func holdWhileCloning(ls *Listeners, tlsConfig *tls.Config, insecureGit bool, out io.Writer) (release func()) {
	gitTLS := tlsConfig
	if insecureGit {
		gitTLS = nil
	}
	var held []*svc.Held
	hold := func(ln *net.Listener, refuse func(net.Conn)) {
		if *ln == nil {
			return
		}
		h := svc.Hold(*ln, refuse)
		held = append(held, h)
		*ln = h
	}
	hold(&ls.IMAP, svc.RefuseLine(cloningIMAP, nil))
	hold(&ls.IMAPS, svc.RefuseLine(cloningIMAP, tlsConfig))
	hold(&ls.SMTP, svc.RefuseLine(cloningSMTP, nil))
	hold(&ls.Submission, svc.RefuseLine(cloningSMTP, nil))
	hold(&ls.Submissions, svc.RefuseLine(cloningSMTP, tlsConfig))
	hold(&ls.Git, svc.RefuseHTTP(cloningHTTP, 30*time.Second, gitTLS))
	hold(&ls.HTTP, svc.RefuseHTTP(cloningHTTP, 30*time.Second, nil))
	hold(&ls.HTTPS, svc.RefuseHTTP(cloningHTTP, 30*time.Second, tlsConfig))
	fmt.Fprintf(out, "nymote: mail: copying the store from a peer first; meanwhile IMAP, SMTP and HTTP(S) answer with a temporary refusal (BYE [UNAVAILABLE], 421, 503)\n")
	return func() {
		for _, h := range held {
			h.Release()
		}
		fmt.Fprintf(out, "nymote: mail: done copying the store; serving\n")
	}
}
