package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nymote/nymote/store"
)

// PeersPrefix is the store folder of the peer records: PeersPrefix/NAME.json,
// replicated like any data, so that every node of a person knows the others.
const PeersPrefix = "replica/peers"

// Node files (never committed; see store.WriteNodeFile).
const (
	selfFile   = "replica/self"        // this node's name
	statusFile = "replica/status.json" // the engine's per-peer status
)

// ErrNoPeer is the error of DelPeer for a name that is not a peer.
var ErrNoPeer = errors.New("no such peer")

func tokenFile(name string) string { return "replica/peers/" + name + ".token" }
func caFile(name string) string    { return "replica/peers/" + name + ".ca.pem" }
func urlFile(name string) string   { return "replica/peers/" + name + ".url" }

// Peer is another node of the same person's store.
type Peer struct {
	Name string `json:"-"`
	// URL is the base of the peer's replication endpoint (Handler), such
	// as https://home.example.org:9418/replica.
	URL   string    `json:"url"`
	Added time.Time `json:"added"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateName checks a node name: lower-case letters, digits and '-', 1 to
// 63 characters, starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("replica: node name %q: want 1 to 63 lower-case letters, digits and '-', starting with a letter or digit", name)
	}
	return nil
}

// ValidateURL checks a peer's endpoint URL: http or https, a host, no user
// name or password (credentials are node files), no query or fragment.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("replica: peer URL %q: %v", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("replica: peer URL %q: want an http:// or https:// URL of the peer's replication endpoint", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("replica: peer URL %q: no host", raw)
	case u.User != nil:
		return fmt.Errorf("replica: peer URL %q: no user name or password in the URL (the peer's token is kept as a node file)", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("replica: peer URL %q: no query or fragment", raw)
	}
	return nil
}

func peerPath(name string) string { return PeersPrefix + "/" + name + ".json" }

// Peers lists the peer records of the store's default branch, by name.
func Peers(st *store.Store) ([]Peer, error) {
	ents, err := st.List("", PeersPrefix)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ps []Peer
	for _, e := range ents {
		name, ok := strings.CutSuffix(strings.TrimPrefix(e.Path, PeersPrefix+"/"), ".json")
		if !ok || ValidateName(name) != nil {
			continue
		}
		b, err := st.Read("", e.Path)
		if err != nil {
			return nil, err
		}
		var p Peer
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("replica: peer record %s: %w", e.Path, err)
		}
		p.Name = name
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps, nil
}

// Self is this node's name (a node file), "" if none was set.
func Self(st *store.Store) (string, error) {
	b, err := st.ReadNodeFile(selfFile)
	if errors.Is(err, store.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// SetSelf names this node: the name its peers know it by, and the user
// name it presents to them.
func SetSelf(st *store.Store, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	return st.WriteNodeFile(selfFile, []byte(name+"\n"))
}

// NewToken returns a fresh random replication token.
func NewToken() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AddOptions are AddPeer's optional settings.
type AddOptions struct {
	// Token is the secret shared with the peer (the same on both nodes);
	// "" makes a new one, which AddPeer returns to be given to the peer.
	Token string
	// CA, PEM certificates, is trusted for the peer's https endpoint (its
	// self-signed certificate).
	CA []byte
	// Tunnel records a peer that is a node of this node's Signpost
	// network, reached through the tunnel and authenticated by its key
	// (Options.Tunnel): no token is kept, and "" is returned.
	Tunnel bool
}

// AddPeer records peer name at rawURL (a commit, so that it replicates) and
// keeps its token (and CA) as node files, never in the history. It refuses
// a bad name or URL, a name taken, and this node's own name. It returns
// the token.
func AddPeer(ctx context.Context, st *store.Store, name, rawURL string, opts AddOptions) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	if err := ValidateURL(rawURL); err != nil {
		return "", err
	}
	if self, err := Self(st); err != nil {
		return "", err
	} else if self == name {
		return "", fmt.Errorf("replica: %q is this node's own name", name)
	}
	tok := opts.Token
	if tok == "" && !opts.Tunnel {
		tok = NewToken()
	}
	if opts.Tunnel && tok != "" {
		return "", errors.New("replica: a peer over the tunnel needs no token (its node key is its credential)")
	}
	if !opts.Tunnel && len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n:") {
		return "", errors.New("replica: a token is at least 16 characters without spaces or ':'")
	}
	if opts.CA != nil && !bytes.Contains(opts.CA, []byte("-----BEGIN CERTIFICATE-----")) {
		return "", errors.New("replica: the CA file holds no PEM certificate")
	}
	rec, err := json.Marshal(Peer{URL: rawURL, Added: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return "", err
	}
	_, err = st.Update(ctx, store.CommitOptions{Message: "peer add " + name}, func(tx *store.Tx) error {
		if _, err := tx.Get(peerPath(name)); err == nil {
			return fmt.Errorf("replica: a peer named %q exists already (nymote peer del %s first)", name, name)
		} else if !errors.Is(err, store.ErrNotExist) {
			return err
		}
		return tx.Put(peerPath(name), rec)
	})
	if err != nil {
		return "", err
	}
	if tok != "" {
		if err := st.WriteNodeFile(tokenFile(name), []byte(tok+"\n")); err != nil {
			return "", err
		}
	}
	if opts.CA != nil {
		if err := st.WriteNodeFile(caFile(name), opts.CA); err != nil {
			return "", err
		}
	}
	return tok, nil
}

// DelPeer removes peer name's record (a commit) and its node files.
func DelPeer(ctx context.Context, st *store.Store, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	_, err := st.Update(ctx, store.CommitOptions{Message: "peer del " + name}, func(tx *store.Tx) error {
		if _, err := tx.Get(peerPath(name)); errors.Is(err, store.ErrNotExist) {
			return fmt.Errorf("replica: no peer named %q: %w", name, ErrNoPeer)
		} else if err != nil {
			return err
		}
		return tx.Delete(peerPath(name))
	})
	if err != nil {
		return err
	}
	for _, f := range []string{tokenFile(name), caFile(name), urlFile(name)} {
		if err := os.Remove(nodePath(st, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func nodePath(st *store.Store, name string) string {
	return st.NodeDir() + string(os.PathSeparator) + strings.ReplaceAll(name, "/", string(os.PathSeparator))
}

// token reads the token shared with peer name; "" if there is none.
func token(st *store.Store, name string) string {
	b, err := st.ReadNodeFile(tokenFile(name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// SetToken keeps the token shared with peer name (a node file): how a node
// joins peers that another node recorded (the records replicate, tokens
// do not).
func SetToken(st *store.Store, name, tok string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n:") {
		return errors.New("replica: a token is at least 16 characters without spaces or ':'")
	}
	return st.WriteNodeFile(tokenFile(name), []byte(tok+"\n"))
}

// SetCA keeps the PEM certificate(s) trusted for peer name's https
// endpoint (a node file).
func SetCA(st *store.Store, name string, ca []byte) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return errors.New("replica: the CA file holds no PEM certificate")
	}
	return st.WriteNodeFile(caFile(name), ca)
}

// SetLocalURL makes this node reach peer name at rawURL instead of the URL
// of its record (a node file, not replicated): a peer reached from here by
// another address, such as a LAN address or a tunnel. "" removes it.
func SetLocalURL(st *store.Store, name, rawURL string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if rawURL == "" {
		err := os.Remove(nodePath(st, urlFile(name)))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	}
	if err := ValidateURL(rawURL); err != nil {
		return err
	}
	return st.WriteNodeFile(urlFile(name), []byte(rawURL+"\n"))
}

// localURL is the URL this node uses for peer p.
func localURL(st *store.Store, p Peer) string {
	if b, err := st.ReadNodeFile(urlFile(p.Name)); err == nil {
		if u := strings.TrimSpace(string(b)); ValidateURL(u) == nil {
			return u
		}
	}
	return p.URL
}

// HasToken reports whether this node keeps a token for peer name.
func HasToken(st *store.Store, name string) bool { return token(st, name) != "" }

// checkToken reports whether tok is the token shared with peer name.
func checkToken(st *store.Store, name, tok string) bool {
	if ValidateName(name) != nil {
		return false
	}
	want := token(st, name)
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(tok)) == 1
}

// validateRecord checks a peer record that a peer pushes.
func validateRecord(p string, data []byte, _ func(string) ([]byte, error)) error {
	name, ok := strings.CutSuffix(strings.TrimPrefix(p, PeersPrefix+"/"), ".json")
	if !strings.HasPrefix(p, PeersPrefix+"/") || !ok {
		return fmt.Errorf("%s: only %s/NAME.json records belong under replica/", p, PeersPrefix)
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	var rec Peer
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	return ValidateURL(rec.URL)
}

// mergeRecord reconciles a peer record changed on two nodes: a deletion
// wins, otherwise the greater content (the same choice on every node, so
// that they converge).
func mergeRecord(_ string, _, ours, theirs []byte) ([]byte, error) {
	if ours == nil || theirs == nil {
		return nil, nil
	}
	if bytes.Compare(ours, theirs) >= 0 {
		return ours, nil
	}
	return theirs, nil
}

// Register sets the merge and push-validation functions of replica/ on st
// (Start does it too).
//
// A user's record (users/NAME) changed on two nodes merges with
// store.MergeUserRecords: a deletion wins, the password set last wins, app
// passwords merge as a set (the hashes travel beside the history: see
// credentials.go).
func Register(st *store.Store) {
	st.SetMergeFunc("replica/", mergeRecord)
	st.SetMergeFunc(store.UsersPrefix+"/", store.MergeUserRecords)
	st.SetValidateFunc("replica/", validateRecord)
}
