package update

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
)

// Receiver is the http.Handler through which a running appliance takes an
// update: a POST whose body is a bundle (WriteBundle), from an
// authenticated administrator. It verifies the image in memory against
// Trusted (another key's, an unsigned or a tampered image is refused
// before anything is written), hands it to Sink, answers, and then calls
// Reboot so that the appliance boots the new image once (its test boot).
type Receiver struct {
	// Trusted are the keys the running image trusts (its trusted-keys
	// file).
	Trusted []ed25519.PublicKey
	// Authorize checks the request's credentials; nil refuses every
	// request (see BasicAuth).
	Authorize func(*http.Request) error
	// Sink writes a verified image where the next boot finds it (for a
	// host-booted VM: WriteUpdateDisk on its update disk).
	Sink func(*Image) error
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
	im, err := ReadBundle(http.MaxBytesReader(w, r.Body, max+4<<20), rc.Trusted, max)
	if err != nil {
		code := http.StatusBadRequest
		switch {
		case errors.Is(err, ErrUntrusted), errors.Is(err, ErrUnsigned):
			code = http.StatusForbidden
		case errors.Is(err, ErrTampered):
			code = http.StatusUnprocessableEntity
		}
		rc.log("update refused", "err", err)
		http.Error(w, "refused: "+err.Error(), code)
		return
	}
	if rc.DiskFormat != nil {
		disk, err := rc.DiskFormat()
		if err == nil {
			err = CheckFormat(disk, im.Parsed.DataFormat, im.Parsed.App+" "+im.Version())
		}
		if err != nil {
			rc.log("update refused", "err", err)
			http.Error(w, "refused: "+err.Error(), http.StatusConflict)
			return
		}
	}
	if err := rc.Sink(im); err != nil {
		rc.log("writing the update", "err", err)
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNotNow) {
			code = http.StatusConflict
		}
		http.Error(w, "writing the update: "+err.Error(), code)
		return
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
