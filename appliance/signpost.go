package appliance

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/nymote/nymote/netstack"
	"github.com/nymote/nymote/signpost"
	"github.com/nymote/nymote/signpost/tunnel"
)

// signpostOption is the runtime option (nymote.signpost=..., on a host
// --set signpost=...) that runs the node's Signpost tunnel: "on" (on
// signpost.DefaultPort), a port number, or "off". Without it the tunnel
// runs when the node is paired: it has peers, or it has invited a node
// (it has a public endpoint).
const signpostOption = "signpost"

// startSignpost starts the Signpost tunnel on nw (a netstack) when the
// node runs one (see signpostOption), and says whether it did: services
// then listen on every address of the stack, the tunnel's too. It removes
// the option from config.
func startSignpost(nw Network, dataDir string, config map[string]string, log *slog.Logger) (io.Closer, error) {
	opt, given := config[signpostOption]
	delete(config, signpostOption)
	port := 0
	switch {
	case opt == "off":
		return nil, nil
	case opt == "on" || !given:
	default:
		p, err := strconv.Atoi(opt)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s=%q: want on, off or a port number", signpostOption, opt)
		}
		port = p
	}
	if !given {
		st, err := signpost.ReadState(dataDir)
		if errors.Is(err, signpost.ErrNoIdentity) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if len(st.Peers) == 0 && st.Endpoint == "" {
			return nil, nil
		}
	}
	stack, ok := nw.(*netstack.Stack)
	if !ok {
		return nil, fmt.Errorf("%s: the tunnel runs on a netstack (on a host: --net tap:NAME)", signpostOption)
	}
	n, err := tunnel.Start(tunnel.Config{Dir: dataDir, Stack: stack, Port: port, Logger: log})
	if err != nil {
		return nil, err
	}
	return n, nil
}
