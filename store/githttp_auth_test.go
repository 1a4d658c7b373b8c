package store

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestGitAuthenticator: GitHandler checks logins with the authenticator it
// is given (the services rate-limit there, issue 21 M2) and answers its
// errors: a wrong password 401, a refusal unchecked 429 with Retry-After,
// anything else 500; access levels still apply to what it returns.
func TestGitAuthenticator(t *testing.T) {
	s := newStore(t)
	var seen []string
	auth := func(r *http.Request, name, password string) (User, error) {
		seen = append(seen, name+" from "+r.RemoteAddr)
		switch password {
		case "right":
			return User{Name: name, Git: GitRead}, nil
		case "busy":
			return User{}, fmt.Errorf("%w: slow down", ErrAuthBusy)
		case "broken":
			return User{}, errors.New("disk on fire")
		}
		return User{}, ErrAuthFailed
	}
	h := s.GitHandler(nil, WithGitAuthenticator(auth))
	for _, tc := range []struct {
		name, pw, service string
		want              int
	}{
		{"right", "right", "git-upload-pack", http.StatusOK},
		{"read only", "right", "git-receive-pack", http.StatusForbidden},
		{"wrong", "wrong", "git-upload-pack", http.StatusUnauthorized},
		{"busy", "busy", "git-upload-pack", http.StatusTooManyRequests},
		{"broken", "broken", "git-upload-pack", http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			r := httptest.NewRequest("GET", "/info/refs?service="+tc.service, nil)
			r.SetBasicAuth("alice", tc.pw)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("got %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if len(seen) != 1 || seen[0] != "alice from "+r.RemoteAddr {
				t.Errorf("authenticator saw %q", seen)
			}
			if tc.want == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}
