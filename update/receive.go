package update

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
)

// Receiver is the http.Handler through which a running appliance takes an
// update: a POST whose body is a bundle (WriteBundle), from an
// authenticated administrator. It verifies the image against Trusted
// (another key's or an unsigned image is refused before anything is
// written, a tampered one before anything written is made visible), hands
// it to Stream or Sink, answers, and then calls Reboot so that the
// appliance boots the new image once (its test boot).
type Receiver struct {
	// Trusted are the keys the running image trusts (its trusted-keys
	// file).
	Trusted []ed25519.PublicKey
	// Authorize checks the request's credentials; nil refuses every
	// request (see BasicAuth).
	Authorize func(*http.Request) error
	// Sink writes a verified image, held in memory, where the next boot
	// finds it (an SD card board's other slot). Used when Stream is nil.
	Sink func(*Image) error
	// Stream, when set, takes the bundle as it arrives instead, so that
	// the image is never in memory (for a host-booted VM: the update
	// disk, OpenUpdateDisk). It is called once the signature, the
	// manifest and the data format are checked, with the Image as far as
	// it is read (no Files); the BundleSink then gets every byte of the
	// bundle from its start, unverified, and its Commit is called only
	// once the whole image is verified (Abort otherwise).
	Stream func(*Image) (BundleSink, error)
	// Reboot is called once the answer is sent.
	Reboot func()
	// MaxBytes bounds the image's files; 0 means DefaultMaxImageBytes.
	MaxBytes int64
	// Log, if set, gets one line per update.
	Log *slog.Logger
	// DiskFormat, when set, returns the format the data disk is in: an
	// image that could not serve it (CheckFormat: one that writes an
	// older format, or a newer one it neither reads nor migrates to) is
	// refused with 409 before anything is written.
	DiskFormat func() (int, error)

	mu sync.Mutex // one update at a time
}

// A BundleSink takes a bundle as a Receiver reads it (Receiver.Stream):
// the bytes written to it are not verified until Commit is called, and
// must stay invisible to the next boot until then; after an Abort (a
// refused, tampered or cut bundle) they must never become visible. Either
// ends the sink. An error of Write or Commit wrapping ErrNotNow answers
// 409, any other 500.
type BundleSink interface {
	io.Writer
	// Commit makes the bundle, verified as im, visible to the next
	// boot.
	Commit(im *Image) error
	// Abort drops it.
	Abort() error
}

// ErrUnauthorized is what Authorize returns for missing or wrong
// credentials.
var ErrUnauthorized = errors.New("update: not authorised")

// ErrNotNow is wrapped by a Sink's error when the appliance cannot take
// an update at this moment (an SD card board on its test boot): 409.
var ErrNotNow = errors.New("update: not now")

var _ http.Handler = (*Receiver)(nil)

// ServeHTTP takes one update.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST an image bundle (nymote update)", http.StatusMethodNotAllowed)
		return
	}
	if rc.Authorize == nil {
		http.Error(w, "this appliance takes no updates yet (no administrator check)", http.StatusServiceUnavailable)
		return
	}
	if err := rc.Authorize(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="nymote update"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if !rc.mu.TryLock() {
		http.Error(w, "another update is being received", http.StatusConflict)
		return
	}
	defer rc.mu.Unlock()
	max := rc.MaxBytes
	if max <= 0 {
		max = DefaultMaxImageBytes
	}
	body := http.MaxBytesReader(w, r.Body, max+4<<20)
	var (
		im        *Image
		err       error
		formatErr error
		tee       *sinkTee
	)
	checkFormat := func(im *Image) error {
		if rc.DiskFormat == nil {
			return nil
		}
		disk, err := rc.DiskFormat()
		if err == nil {
			err = CheckFormat(disk, im.Parsed.DataFormat, im.Parsed.App+" "+im.Version())
		}
		formatErr = err
		return err
	}
	if rc.Stream != nil {
		tee = &sinkTee{r: body}
		im, err = VerifyBundle(tee, rc.Trusted, max, func(im *Image) error {
			if err := checkFormat(im); err != nil {
				return err
			}
			return tee.open(rc.Stream(im))
		})
		if err == nil {
			err = tee.commit(im)
		} else {
			tee.abort()
		}
	} else {
		im, err = ReadBundle(body, rc.Trusted, max)
		if err == nil {
			err = checkFormat(im)
		}
	}
	if err != nil {
		code := http.StatusBadRequest
		msg := "refused: "
		switch {
		case formatErr != nil:
			code = http.StatusConflict
		case tee != nil && tee.err != nil:
			msg, err = "writing the update: ", tee.err
			code = http.StatusInternalServerError
			if errors.Is(err, ErrNotNow) {
				code = http.StatusConflict
			}
		case errors.Is(err, ErrUntrusted), errors.Is(err, ErrUnsigned):
			code = http.StatusForbidden
		case errors.Is(err, ErrTampered):
			code = http.StatusUnprocessableEntity
		}
		rc.log("update refused", "err", err)
		http.Error(w, msg+err.Error(), code)
		return
	}
	if tee == nil {
		if err := rc.Sink(im); err != nil {
			rc.log("writing the update", "err", err)
			code := http.StatusInternalServerError
			if errors.Is(err, ErrNotNow) {
				code = http.StatusConflict
			}
			http.Error(w, "writing the update: "+err.Error(), code)
			return
		}
	}
	rc.log("update accepted", "version", im.Version())
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "accepted %s %s for %s; rebooting into it for a test boot\n", im.Parsed.App, im.Version(), im.Parsed.Board)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if rc.Reboot != nil {
		// After the answer has gone (ServeHTTP returns and the server
		// flushes), the appliance stops cleanly and reboots.
		go func() {
			<-r.Context().Done()
			rc.Reboot()
		}()
	}
}

// sinkTee passes a bundle's bytes through to a BundleSink once the sink
// is opened, keeping those read before (the manifest and signature, 2 MiB
// at most) until then. err is the sink's first error.
type sinkTee struct {
	r       io.Reader
	pending []byte
	sink    BundleSink
	err     error
}

func (t *sinkTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 && t.err == nil {
		if t.sink == nil {
			t.pending = append(t.pending, p[:n]...)
		} else if _, werr := t.sink.Write(p[:n]); werr != nil {
			t.err = werr
		}
	}
	if t.err != nil {
		return n, t.err
	}
	return n, err
}

func (t *sinkTee) open(s BundleSink, err error) error {
	if err != nil {
		t.err = err
		return err
	}
	t.sink = s
	if _, err := s.Write(t.pending); err != nil {
		t.err = err
	}
	t.pending = nil
	return t.err
}

func (t *sinkTee) commit(im *Image) error {
	if t.err == nil {
		t.err = t.sink.Commit(im)
	}
	return t.err
}

func (t *sinkTee) abort() {
	if t.sink != nil {
		t.sink.Abort()
	}
}

func (rc *Receiver) log(msg string, args ...any) {
	if rc.Log != nil {
		rc.Log.Warn(msg, args...)
	}
}

// BasicAuth returns an Authorize function checking HTTP basic credentials
// with check (for an appliance: a store administrator's name and
// password).
func BasicAuth(check func(user, password string) error) func(*http.Request) error {
	return func(r *http.Request) error {
		u, p, ok := r.BasicAuth()
		if !ok {
			return fmt.Errorf("%w: give an administrator's name and password", ErrUnauthorized)
		}
		if err := check(u, p); err != nil {
			return fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		return nil
	}
}
