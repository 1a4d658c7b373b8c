package davapp

import (
	"net/http"

	"github.com/nymote/nymote/apps/internal/dav"
	"github.com/nymote/nymote/signpost/capability"
)

// shareTokens puts capability tokens in front of the DAV handler: a
// request carrying a token minted by this node (`nymote share`) is served
// as the collection's owner within the token's collection and rights; any
// other request goes on to the handler's own password check.
func shareTokens(dir string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler { return capability.Handler(dir, h, dav.WithUser) }
}
