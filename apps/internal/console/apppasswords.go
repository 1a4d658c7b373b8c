package console

import (
	"net/http"
	"time"

	"github.com/nymote/nymote/store"
)

// App passwords: each user makes one per client (phone, laptop) on the
// account page or through the API, sees it once, and revokes it alone.
// IMAP, SMTP submission and DAV take them (store.AuthenticateClient); the
// console and the API do not (their logins check the user's own password),
// so an app password cannot make more of them.

// appPasswordJSON is an app password as the API lists it; Password only
// in the answer to its creation.
type appPasswordJSON struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Password string    `json:"password,omitempty"`
}

func (c *Console) apiAppPasswords(w http.ResponseWriter, r *http.Request, user string) error {
	list, err := c.st.AppPasswords(user)
	if err != nil {
		return err
	}
	out := []appPasswordJSON{}
	for _, a := range list {
		out = append(out, appPasswordJSON{ID: a.ID, Name: a.Name, Created: a.Created})
	}
	writeJSON(w, 200, map[string]any{"app_passwords": out})
	return nil
}

func (c *Console) apiAppPasswordAdd(w http.ResponseWriter, r *http.Request, user string) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	a, pw, err := c.st.AddAppPassword(r.Context(), user, req.Name)
	if err != nil {
		return badRequest(err)
	}
	c.log.Info("console: app password added", "user", user, "name", a.Name, "id", a.ID)
	writeJSON(w, 201, appPasswordJSON{ID: a.ID, Name: a.Name, Created: a.Created, Password: pw})
	return nil
}

func (c *Console) apiAppPasswordDelete(w http.ResponseWriter, r *http.Request, user string) error {
	if err := c.st.DeleteAppPassword(r.Context(), user, r.PathValue("id")); err != nil {
		return badRequest(err)
	}
	c.log.Info("console: app password revoked", "user", user, "id", r.PathValue("id"))
	w.WriteHeader(204)
	return nil
}

// appPasswordAddForm makes an app password and shows it, once.
func (c *Console) appPasswordAddForm(w http.ResponseWriter, r *http.Request, s *session) error {
	a, pw, err := c.st.AddAppPassword(r.Context(), s.user, r.PostFormValue("name"))
	if err != nil {
		return badRequest(err)
	}
	c.log.Info("console: app password added", "user", s.user, "name", a.Name, "id", a.ID)
	c.render(w, 200, "apppassword", s, "New app password", struct {
		App      store.AppPassword
		Password string
	}{a, pw})
	return nil
}

func (c *Console) appPasswordDeleteForm(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := c.st.DeleteAppPassword(r.Context(), s.user, r.PostFormValue("id")); err != nil {
		return badRequest(err)
	}
	c.log.Info("console: app password revoked", "user", s.user, "id", r.PostFormValue("id"))
	http.Redirect(w, r, "/console/account", http.StatusSeeOther)
	return nil
}
