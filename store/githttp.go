package store

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
)

// maxPushBytes bounds the body of one push.
const maxPushBytes = 2 << 30

// GitHandler serves the store over git's smart HTTP protocol (version 0/1,
// stateless RPC), so that stock git can clone, fetch and push:
//
//	git clone http://alice@host:9418/ mydata
//
// It answers GET .../info/refs?service=..., POST .../git-upload-pack and
// POST .../git-receive-pack under any path prefix. Every request needs HTTP
// basic authentication against the store's users; fetching needs git access
// "read" or "write", pushing needs "write". Pushes may only fast-forward
// branches (never rewrite history) and cannot delete the default branch;
// received objects and references are written as durably as commits.
// Logs go to log (nil discards). Options add what the serving program
// provides, such as WithGitAuthenticator.
func (s *Store) GitHandler(log *slog.Logger, opts ...GitOption) http.Handler {
	if log == nil {
		log = s.log
	}
	h := &gitHandler{s: s, log: log}
	for _, o := range opts {
		o(h)
	}
	if h.auth == nil {
		h.auth = func(_ *http.Request, name, password string) (User, error) { return s.Authenticate(name, password) }
	}
	return h
}

// A GitAuthenticator checks the user name and password of a git request,
// as Store.Authenticate does, and may add what the program needs around
// it (rate limits per client address). It returns an error matching
// ErrAuthFailed for a wrong name or password and one matching ErrAuthBusy
// for an attempt refused unchecked, which GitHandler answers with 401 and
// 429.
type GitAuthenticator func(r *http.Request, name, password string) (User, error)

// ErrAuthBusy is what a GitAuthenticator returns (wrapped) for a login it
// refuses without checking the password: try again later.
var ErrAuthBusy = errors.New("store: too many login attempts; try again later")

// A GitOption adds to a GitHandler.
type GitOption func(*gitHandler)

// WithGitAuthenticator makes a GitHandler check logins with a instead of
// Store.Authenticate.
func WithGitAuthenticator(a GitAuthenticator) GitOption {
	return func(h *gitHandler) { h.auth = a }
}

type gitHandler struct {
	s          *Store
	log        *slog.Logger
	auth       GitAuthenticator
	pushFilter func(u User, branch string) error
	shared     bool
}

// WithGitPushFilter makes a GitHandler ask f before it moves a branch for
// a push of user u; an error refuses that branch with the error's text
// (a replica's peer may push only to its own branch).
func WithGitPushFilter(f func(u User, branch string) error) GitOption {
	return func(h *gitHandler) { h.pushFilter = f }
}

// WithGitSharedHistory makes a GitHandler refuse a push to a branch other
// than DefaultBranch whose history shares no commit with DefaultBranch's
// (ErrUnrelatedHistory), unless DefaultBranch has no commit yet: a
// replica's peer pushes to a branch of its own, whose first push is no
// fast-forward of anything, and a history begun apart from this store's
// (another node's store, not a clone of this one) must not be merged
// into it.
func WithGitSharedHistory() GitOption {
	return func(h *gitHandler) { h.shared = true }
}

func (h *gitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
	var service string
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
		service = r.URL.Query().Get("service")
		if service != "git-upload-pack" && service != "git-receive-pack" {
			http.Error(w, "nymote serves git's smart HTTP protocol only (git 1.6.6 or later)", http.StatusForbidden)
			return
		}
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		service = "git-upload-pack"
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack"):
		service = "git-receive-pack"
	default:
		http.NotFound(w, r)
		return
	}
	user, ok := h.authorize(w, r, service)
	if !ok {
		return
	}
	log := h.log.With("user", user.Name, "service", service, "remote", r.RemoteAddr)
	if r.Method == http.MethodGet {
		if err := h.advertise(w, service); err != nil {
			log.Warn("git: advertising references failed", "err", err)
		}
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-"+service+"-request" {
		http.Error(w, fmt.Sprintf("Content-Type %q: want application/x-%s-request", ct, service), http.StatusUnsupportedMediaType)
		return
	}
	body := io.Reader(http.MaxBytesReader(w, r.Body, maxPushBytes))
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer gz.Close()
		body = gz
	}
	w.Header().Set("Content-Type", "application/x-"+service+"-result")
	var err error
	if service == "git-upload-pack" {
		err = h.uploadPack(r.Context(), w, body)
	} else {
		err = h.receivePack(r.Context(), w, body, user, log)
	}
	if err != nil {
		log.Warn("git: request failed", "err", err)
	}
}

// authorize checks basic authentication and the user's git access.
func (h *gitHandler) authorize(w http.ResponseWriter, r *http.Request, service string) (User, bool) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote", charset="UTF-8"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return User{}, false
	}
	u, err := h.auth(r, name, pw)
	if err != nil {
		if errors.Is(err, ErrAuthBusy) {
			h.log.Info("git: login refused: too many attempts", "user", name, "remote", r.RemoteAddr)
			w.Header().Set("Retry-After", "10")
			http.Error(w, "too many login attempts; try again later", http.StatusTooManyRequests)
			return User{}, false
		}
		if r.Context().Err() != nil {
			return User{}, false // the client went away while its login waited
		}
		if !errors.Is(err, ErrAuthFailed) {
			h.log.Error("git: authentication error", "user", name, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return User{}, false
		}
		h.log.Info("git: authentication failed", "user", name, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote", charset="UTF-8"`)
		http.Error(w, "wrong user name or password", http.StatusUnauthorized)
		return User{}, false
	}
	need := GitRead
	if service == "git-receive-pack" {
		need = GitWrite
	}
	if u.Git == GitWrite || (u.Git == GitRead && need == GitRead) {
		return u, true
	}
	verb := map[GitAccess]string{GitRead: "read", GitWrite: "push to"}[need]
	http.Error(w, fmt.Sprintf("user %s may not %s this store over git (git access: %s)", u.Name, verb, u.Git), http.StatusForbidden)
	return User{}, false
}

// advertise writes the reference advertisement.
func (h *gitHandler) advertise(w http.ResponseWriter, service string) error {
	ar := packp.NewAdvRefs()
	caps := ar.Capabilities
	caps.Set(capability.Agent, "nymote")
	caps.Set(capability.OFSDelta)
	if service == "git-receive-pack" {
		caps.Set(capability.ReportStatus)
		caps.Set(capability.DeleteRefs)
	}
	branches, err := h.s.Branches()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return err
	}
	for _, b := range branches {
		ar.References["refs/heads/"+b.Name] = b.Head
		if b.Name == DefaultBranch && service == "git-upload-pack" {
			head := b.Head
			ar.Head = &head
			caps.Set(capability.SymRef, "HEAD:refs/heads/"+DefaultBranch)
		}
	}
	ar.Prefix = [][]byte{[]byte("# service=" + service), pktline.Flush}
	w.Header().Set("Content-Type", "application/x-"+service+"-advertisement")
	return ar.Encode(w)
}

// uploadPack answers one stateless upload-pack request. It acknowledges no
// common objects during negotiation (always NAK, as a server without
// multi_ack does before it finds one), so the client ends with "done" and
// the haves it sent last; the pack holds what the wants reach and those
// haves do not.
func (h *gitHandler) uploadPack(ctx context.Context, w io.Writer, body io.Reader) error {
	sc := pktline.NewScanner(body)
	var wants, haves []plumbing.Hash
	done := false
	for sc.Scan() {
		line := strings.TrimSuffix(string(sc.Bytes()), "\n")
		switch {
		case line == "":
			continue // flush
		case strings.HasPrefix(line, "want "):
			f := strings.Fields(line)
			if len(f) < 2 || !plumbing.IsHash(f[1]) {
				return writeErrLine(w, "bad want line")
			}
			wants = append(wants, plumbing.NewHash(f[1]))
		case strings.HasPrefix(line, "have "):
			f := strings.Fields(line)
			if len(f) >= 2 && plumbing.IsHash(f[1]) {
				if hh := plumbing.NewHash(f[1]); h.s.has(hh) {
					haves = append(haves, hh)
				}
			}
		case line == "done":
			done = true
		case strings.HasPrefix(line, "shallow "), strings.HasPrefix(line, "deepen"):
			return writeErrLine(w, "shallow clones are not supported")
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	enc := pktline.NewEncoder(w)
	if err := enc.EncodeString("NAK\n"); err != nil {
		return err
	}
	if !done {
		return nil
	}
	// Only what the branches reach is served: not the credentials
	// (CredentialsRef), nor objects that no branch reaches any more.
	if err := h.s.checkWants(wants); err != nil {
		return writeErrLine(w, err.Error())
	}
	// The objects to send, from what the new commits changed (never a
	// walk of all the history the haves reach: a replica fetching a few
	// commits sends hundreds of haves).
	objs, err := h.s.packObjects(wants, haves)
	if err != nil {
		return err
	}
	// Without deltas, read through the store's object reader (see
	// encodePack), streamed as it is made.
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := h.s.encodePack(bw, objs); err != nil {
		return err
	}
	return bw.Flush()
}

// oneLine makes msg fit a report-status line.
func oneLine(msg string) string {
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	return msg
}

func writeErrLine(w io.Writer, msg string) error {
	pktline.NewEncoder(w).EncodeString("ERR " + msg + "\n")
	return errors.New(msg)
}

// receivePack applies one push.
func (h *gitHandler) receivePack(ctx context.Context, w io.Writer, body io.Reader, user User, log *slog.Logger) error {
	req := packp.NewReferenceUpdateRequest()
	if err := req.Decode(body); err != nil {
		return writeErrLine(w, "bad push request: "+err.Error())
	}
	rs := packp.NewReportStatus()
	rs.UnpackStatus = "ok"
	onlyDeletes := true
	for _, c := range req.Commands {
		onlyDeletes = onlyDeletes && c.Action() == packp.Delete
	}
	// What a push brings is written beside the store's objects first and
	// removed again if no branch takes it (a corrupt pack, a refused
	// history), so that a refused push leaves the store as it was.
	var d *durableStorer
	if req.Packfile != nil && !onlyDeletes {
		d = h.s.newDurableStorer()
		err := packfile.UpdateObjectStorage(d, req.Packfile)
		if err == nil {
			err = d.flush()
		}
		if err != nil {
			if unlock, lerr := h.s.lock(ctx); lerr == nil {
				d.discard()
				unlock()
			}
			rs.UnpackStatus = "unpack failed: " + err.Error()
			for _, c := range req.Commands {
				rs.CommandStatuses = append(rs.CommandStatuses, &packp.CommandStatus{ReferenceName: c.Name, Status: "unpacker error"})
			}
			log.Warn("git: push: unpack failed", "err", err)
			return h.reportStatus(w, req, rs)
		}
	}
	// The pack is received and indexed, and what it brings checked (the
	// costly part), without the writer lock, so that local writes and
	// other pushes go on meanwhile; the commands are checked again and
	// applied under it. Checking first can only check more than needed
	// (a branch that moves meanwhile only reaches more).
	pre := make([]error, len(req.Commands))
	var branches []string
	for i, c := range req.Commands {
		pre[i] = h.checkCommand(c, user, true)
		branches = append(branches, c.Name.Short())
	}
	unlock, err := h.s.lockBranches(ctx, branches)
	if err != nil {
		if d != nil { // the pusher is gone: what it brought goes
			if unlock, lerr := h.s.lock(context.Background()); lerr == nil {
				d.discard()
				unlock()
			}
		}
		return err
	}
	defer unlock()
	applied := 0
	for i, c := range req.Commands {
		status := "ok"
		err := pre[i]
		if err == nil {
			err = h.applyCommand(c, user)
		}
		if err != nil {
			status = err.Error()
			if errors.Is(err, ErrUnrelatedHistory) {
				log.Warn("git: push refused: its history shares no commit with this store's "+DefaultBranch+" (a replica must begin as a clone of its peer's store); the store is unchanged",
					"ref", c.Name, "new", c.New)
			} else {
				log.Info("git: push refused", "ref", c.Name, "reason", status)
			}
		} else {
			applied++
			log.Info("git: push", "ref", c.Name, "old", c.Old, "new", c.New)
		}
		rs.CommandStatuses = append(rs.CommandStatuses, &packp.CommandStatus{ReferenceName: c.Name, Status: status})
	}
	if d != nil && applied == 0 {
		d.discard()
	}
	return h.reportStatus(w, req, rs)
}

func (h *gitHandler) reportStatus(w io.Writer, req *packp.ReferenceUpdateRequest, rs *packp.ReportStatus) error {
	if !req.Capabilities.Supports(capability.ReportStatus) {
		return nil
	}
	return rs.Encode(w)
}

// applyCommand applies one reference update of a push that checkCommand
// has checked, validation included; the writer lock is held.
func (h *gitHandler) applyCommand(c *packp.Command, user User) error {
	if err := h.checkCommand(c, user, false); err != nil {
		return err
	}
	if c.Action() == packp.Delete {
		if err := h.s.removeRef(c.Name); err != nil {
			return errors.New("cannot delete the branch")
		}
		return nil
	}
	if err := h.s.moveBranch(c.Name.Short(), c.Old, c.New); err != nil {
		return errors.New("cannot update the branch")
	}
	return nil
}

// checkCommand checks one reference update of a push: the branch, the
// push filter, that the branch is still at the command's old value, and a
// fast-forward; with validate set, also what the pushed commits bring, as
// the apps check what their clients write (a refused push leaves the
// branch as it was).
func (h *gitHandler) checkCommand(c *packp.Command, user User, validate bool) error {
	name := c.Name
	if !name.IsBranch() {
		return errors.New("only branches (refs/heads/...) can be pushed")
	}
	branch := name.Short()
	if err := validateBranch(branch); err != nil {
		return errors.New("invalid branch name")
	}
	if h.pushFilter != nil {
		if err := h.pushFilter(user, branch); err != nil {
			return errors.New(oneLine(err.Error()))
		}
	}
	cur, err := h.s.head(branch)
	if err != nil {
		return errors.New("cannot read the branch")
	}
	if cur != c.Old {
		return errors.New("the branch moved; fetch first")
	}
	switch c.Action() {
	case packp.Delete:
		if branch == DefaultBranch {
			return errors.New("the default branch cannot be deleted")
		}
		return nil
	case packp.Create, packp.Update:
		if _, err := h.s.snapshotAt(c.New); err != nil {
			return errors.New("pushed commit is missing or not a commit")
		}
		if !cur.IsZero() {
			ok, err := h.s.isAncestor(cur, c.New)
			if err != nil || !ok {
				return errors.New("non-fast-forward (history cannot be rewritten; merge instead)")
			}
		}
		if validate && h.shared && branch != DefaultBranch && cur.IsZero() {
			// Checked once, before the writer lock: a default branch with
			// commits keeps them (its history only grows). Only a
			// branch's first push: a later one fast-forwards a history
			// that was checked (a walk of the default branch's whole
			// history for every push cost replicas more as it grew).
			if err := h.s.checkSharedHistory(c.New); err != nil {
				return err
			}
		}
		if validate {
			if err := h.s.validateNew(c.New); err != nil {
				return fmt.Errorf("refused: %s", oneLine(err.Error()))
			}
		}
		return nil
	}
	return errors.New("invalid command")
}
