package replica

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/nymote/nymote/store"
)

// Boot options: the peers a node is given at image build or boot
// (`nymote build APP --set peer=NAME=URL`, the kernel command line's
// nymote.peer=...) or on a host process's command line (--peer ...), so
// that a new node comes up as a replica of an existing one. No secret is
// an option: the kernel command line is readable in /proc/cmdline and in
// the image's boot configuration. The options are
//
//	peer=NAME=URL[,NAME=URL...]  the peers (URL: the peer's replication
//	                             endpoint, https://HOST:PORT/replica)
//	peer-as=NAME                 this node's name, as its peers know it
//	                             (default: the node file replica/self)
//	peer-token=FILE              the token shared with the peer (one peer
//	                             only), a file on the data disk (relative
//	                             to the data directory); default: the node
//	                             file replica/peers/NAME.token
//	peer-ca=FILE                 the peer's certificate (PEM) to trust for
//	                             its https endpoint (one peer only); default:
//	                             the node file replica/peers/NAME.ca.pem, or
//	                             the system's roots
//
// A peer of this node's Signpost network (Options.Tunnel) needs no token.
// See Join for what a node does with them.
const (
	BootPeer  = "peer"
	BootAs    = "peer-as"
	BootToken = "peer-token"
	BootCA    = "peer-ca"
)

// BootPeers are the boot options, parsed (ParseBoot).
type BootPeers struct {
	// Peers by name, in the order given.
	Peers []Peer
	// As is this node's name ("": the node file's).
	As string
	// Token and CA are the peer-token and peer-ca files' contents (nil if
	// not given).
	Token []byte
	CA    []byte

	opt func(key string) string // how an option is named in errors
}

// ParseBoot reads the boot options: get returns an option's value by key
// (BootPeer, ...; "" when unset), opt names it in errors (such as
// "nymote.peer" or "--peer"), and relative files are in dir (the data
// directory; "" for the working directory). It returns nil without
// peer options. A bad name or URL, a name given twice, files given for
// more than one peer, a file that cannot be read or holds no token or
// certificate are refused, naming the option.
func ParseBoot(get func(key string) string, opt func(key string) string, dir string) (*BootPeers, error) {
	raw := strings.TrimSpace(get(BootPeer))
	if raw == "" {
		for _, k := range []string{BootAs, BootToken, BootCA} {
			if get(k) != "" {
				return nil, fmt.Errorf("%s needs %s=NAME=URL", opt(k), opt(BootPeer))
			}
		}
		return nil, nil
	}
	b := &BootPeers{opt: opt}
	seen := map[string]bool{}
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		name, u, ok := strings.Cut(f, "=")
		if !ok || u == "" {
			return nil, fmt.Errorf("%s=%s: want NAME=URL (the URL of the peer's replication endpoint, https://HOST:PORT/replica)", opt(BootPeer), f)
		}
		if err := ValidateName(name); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", opt(BootPeer), f, err)
		}
		if err := ValidateURL(u); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", opt(BootPeer), f, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: peer %s given twice", opt(BootPeer), name)
		}
		seen[name] = true
		b.Peers = append(b.Peers, Peer{Name: name, URL: u})
	}
	if as := get(BootAs); as != "" {
		if err := ValidateName(as); err != nil {
			return nil, fmt.Errorf("%s: %w", opt(BootAs), err)
		}
		if seen[as] {
			return nil, fmt.Errorf("%s=%s: this node's own name is also in %s", opt(BootAs), as, opt(BootPeer))
		}
		b.As = as
	}
	read := func(key string) ([]byte, error) {
		f := get(key)
		if f == "" {
			return nil, nil
		}
		if len(b.Peers) > 1 {
			return nil, fmt.Errorf("%s: one file for %d peers: give it with one peer in %s, and keep the others' as node files (nymote peer add --token-stdin)", opt(key), len(b.Peers), opt(BootPeer))
		}
		if !filepath.IsAbs(f) && dir != "" {
			f = filepath.Join(dir, f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opt(key), err)
		}
		return data, nil
	}
	tok, err := read(BootToken)
	if err != nil {
		return nil, err
	}
	if tok != nil {
		t := strings.TrimSpace(string(tok))
		if err := checkTokenText(t); err != nil {
			return nil, fmt.Errorf("%s: %w", opt(BootToken), err)
		}
		b.Token = []byte(t)
	}
	if b.CA, err = read(BootCA); err != nil {
		return nil, err
	}
	if b.CA != nil && !bytes.Contains(b.CA, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s: the file holds no PEM certificate", opt(BootCA))
	}
	return b, nil
}

func checkTokenText(tok string) error {
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n:") {
		return errors.New("replica: a token is at least 16 characters without spaces or ':'")
	}
	return nil
}

// Join makes the boot options' peers this node's: it names the node
// (peer-as), keeps the token and certificate given as node files, and
// checks that every peer has a token here (or is a node of the Signpost
// network, opts.Tunnel). A node whose store has no commit yet, or holds
// only peer records (a plain `nymote peer add` on its data directory), is
// then cloned: its main becomes the first reachable peer's (in the order
// given; merged with the records, kept, in the second case), tried again
// (Retry, doubling up to Poll) until one answers or ctx ends, with a
// console line on opts.Stdout per attempt that fails; the pulled history
// is checked as pushes are (the apps' validators must be registered on st
// first). A peer whose main has no commit either leaves
// the store empty. Last, a peer without a record gets one (a commit,
// which replicates), and a peer recorded with another URL is reached at
// the boot option's (SetLocalURL). A node with data just adds its peers.
//
// Join runs before the apps write anything, so that a new node's first
// commit is its peer's history: two stores begun apart do not merge (their
// histories are unrelated: peers refuse each other's pushes and pulls). The engine (Start) then syncs as with any
// peer. The clone has none of the peer's node files (UID files: the mail
// app gives it UIDs and a UIDVALIDITY of its own; credentials; TLS keys).
func Join(ctx context.Context, st *store.Store, b *BootPeers, opts Options) error {
	if b == nil || len(b.Peers) == 0 {
		return nil
	}
	opts.defaults()
	Register(st)
	opt := b.opt
	if opt == nil {
		opt = func(k string) string { return k }
	}
	self, err := Self(st)
	if err != nil {
		return err
	}
	if b.As != "" && b.As != self {
		if err := SetSelf(st, b.As); err != nil {
			return fmt.Errorf("%s: %w", opt(BootAs), err)
		}
		self = b.As
	}
	if self == "" {
		return fmt.Errorf("%s: this node has no name yet: give it one with %s=NAME (its peers know it by it)", opt(BootPeer), opt(BootAs))
	}
	for _, p := range b.Peers {
		if p.Name == self {
			return fmt.Errorf("%s: %q is this node's own name", opt(BootPeer), p.Name)
		}
		if b.Token != nil {
			if err := SetToken(st, p.Name, string(b.Token)); err != nil {
				return fmt.Errorf("%s: %w", opt(BootToken), err)
			}
		}
		if b.CA != nil {
			if err := st.WriteNodeFile(caFile(p.Name), b.CA); err != nil {
				return fmt.Errorf("%s: %w", opt(BootCA), err)
			}
		}
		if token(st, p.Name) == "" && (opts.Tunnel == nil || !opts.Tunnel.Knows(p.Name)) {
			return fmt.Errorf("%s: peer %s: no token on this node: give %s=FILE (a file on the data disk holding it), or keep it as the node file %s (nymote peer add %s URL --token-stdin --data DIR)",
				opt(BootPeer), p.Name, opt(BootToken), filepath.Join(st.NodeDir(), filepath.FromSlash(tokenFile(p.Name))), p.Name)
		}
	}
	head, err := st.Resolve("")
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return err
	}
	fresh, err := Fresh(st)
	if err != nil {
		return err
	}
	if fresh && !head.IsZero() {
		fmt.Fprintf(opts.Stdout, "nymote: replica: this node's store holds only peer records (nymote peer add): it takes its peer's store\n")
	}
	if fresh {
		if err := clone(ctx, st, b.Peers, self, opts); err != nil {
			return err
		}
	}
	recs, err := Peers(st)
	if err != nil {
		return err
	}
	for _, p := range b.Peers {
		i := -1
		for j, r := range recs {
			if r.Name == p.Name {
				i = j
			}
		}
		switch {
		case i >= 0 && recs[i].URL == p.URL:
			if err := SetLocalURL(st, p.Name, ""); err != nil {
				return err
			}
		case i >= 0:
			if err := SetLocalURL(st, p.Name, p.URL); err != nil {
				return err
			}
		default:
			tok := token(st, p.Name)
			if _, err := AddPeer(ctx, st, p.Name, p.URL, AddOptions{Token: tok, Tunnel: tok == ""}); err != nil {
				return fmt.Errorf("%s: %w", opt(BootPeer), err)
			}
			opts.Logger.Info("replica: peer added from the boot options", "peer", p.Name, "url", p.URL)
		}
	}
	return nil
}

// Fresh reports whether st is a new node's store, which Join clones from
// a peer given in the boot options: one with no commit, or whose tree holds
// only peer records (a plain `nymote peer add` on a new node's data
// directory commits the peer's record; without the clone its history would
// stay apart from its peer's, and be refused as unrelated).
func Fresh(st *store.Store) (bool, error) {
	head, err := st.Resolve("")
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return false, err
	}
	if head.IsZero() {
		return true, nil
	}
	return onlyPeerRecords(st)
}

// onlyPeerRecords reports whether the tree of st's main holds nothing but
// peer records (and something).
func onlyPeerRecords(st *store.Store) (bool, error) {
	sn, err := st.Snapshot("")
	if err != nil {
		return false, err
	}
	dir := ""
	for _, name := range strings.Split(PeersPrefix, "/") {
		es, err := sn.ReadDir(dir)
		if err != nil {
			return false, err
		}
		if len(es) != 1 || !es[0].Dir || es[0].Path != path.Join(dir, name) {
			return false, nil
		}
		dir = es[0].Path
	}
	return true, nil
}

// clone pulls the first reachable peer's main into st's main, empty or
// holding only peer records (merged then: the histories are unrelated,
// which only this merge takes).
func clone(ctx context.Context, st *store.Store, peers []Peer, self string, opts Options) error {
	wait := opts.Retry
	for {
		var errs []string
		for _, p := range peers {
			fmt.Fprintf(opts.Stdout, "nymote: replica: cloning this node's store from %s (%s)\n", p.Name, p.URL)
			pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
			res, err := st.Pull(pctx, remoteFor(st, p.Name, p.URL, self, opts),
				store.SyncOptions{Validate: true, Commit: store.CommitOptions{Message: "replica: clone from " + p.Name}})
			cancel()
			if err == nil {
				if res.Head.IsZero() {
					fmt.Fprintf(opts.Stdout, "nymote: replica: %s's store has no commit yet: nothing to clone\n", p.Name)
				} else {
					fmt.Fprintf(opts.Stdout, "nymote: replica: cloned from %s: head %s\n", p.Name, res.Head)
				}
				opts.Logger.Info("replica: cloned", "peer", p.Name, "head", res.Head.String())
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, fmt.Sprintf("%s: %v", p.Name, err))
			opts.Logger.Warn("replica: clone failed", "peer", p.Name, "err", err)
		}
		fmt.Fprintf(opts.Stdout, "nymote: replica: clone failed, trying again in %v: %s\n", wait, strings.Join(errs, "; "))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, opts.Poll)
	}
}

// BootFlags adds the boot options to a host program's flags (--peer,
// repeatable or comma-separated, --peer-as, --peer-token, --peer-ca), and
// returns a function that parses them once fs has parsed its arguments
// (relative files: in the working directory).
func BootFlags(fs *flag.FlagSet) func() (*BootPeers, error) {
	vals := map[string]string{}
	fs.Func(BootPeer, "NAME=URL: a peer (its replication endpoint, https://HOST:PORT/replica), repeatable or comma-separated; a store with no commit is cloned from it first", func(v string) error {
		if p := vals[BootPeer]; p != "" {
			v = p + "," + v
		}
		vals[BootPeer] = v
		return nil
	})
	for k, usage := range map[string]string{
		BootAs:    "this node's name, as its --peer peers know it (default: as kept in the data directory)",
		BootToken: "file holding the token shared with the --peer peer (default: the node file that nymote peer add keeps)",
		BootCA:    "PEM file of the --peer peer's certificate, trusted for its https endpoint",
	} {
		fs.Func(k, usage, func(v string) error { vals[k] = v; return nil })
	}
	return func() (*BootPeers, error) {
		return ParseBoot(func(k string) string { return vals[k] }, func(k string) string { return "--" + k }, "")
	}
}

// ParseBootConfig parses the boot options of an appliance's kernel command
// line (config: its nymote.KEY=VALUE options without the prefix; files
// relative to dataDir, the data disk's root).
func ParseBootConfig(config map[string]string, dataDir string) (*BootPeers, error) {
	return ParseBoot(func(k string) string { return config[k] }, func(k string) string { return "nymote." + k }, dataDir)
}
