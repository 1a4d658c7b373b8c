package mailauth

import (
	"context"
	"errors"
	"testing"

	"github.com/nymote/nymote/apps/internal/guard"
	"github.com/nymote/nymote/store"
)

func TestUserName(t *testing.T) {
	domains := []string{"example.org", "Example.NET"}
	for _, c := range []struct{ login, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"alice@example.org", "alice"},
		{"ALICE@EXAMPLE.NET", "alice"},
		{"alice@elsewhere.org", ""},
		{"alice+tag@example.org", "alice+tag"},
	} {
		if got := UserName(c.login, domains); got != c.want {
			t.Errorf("UserName(%q) = %q, want %q", c.login, got, c.want)
		}
	}
}

func TestLogin(t *testing.T) {
	ctx := context.Background()
	st, err := store.InitData(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const pw = "correct horse battery staple"
	if err := st.AddUser(ctx, "alice", pw, store.GitNone); err != nil {
		t.Fatal(err)
	}
	auth := guard.NewAuth(guard.AuthOptions{})
	domains := []string{"example.org"}
	for _, c := range []struct {
		login, password, name, account string
		err                            error
	}{
		{"alice@example.org", pw, "alice", "alice", nil},
		{"alice", pw, "alice", "alice", nil},
		{"alice", "wrong", "alice", "alice", store.ErrAuthFailed},
		{"alice@elsewhere.org", pw, "", "alice@elsewhere.org", store.ErrAuthFailed},
		{"bob", pw, "bob", "bob", store.ErrAuthFailed},
		{"../x", pw, "../x", "../x", store.ErrAuthFailed},
	} {
		name, account, err := Login(ctx, auth, st, domains, "192.0.2.1:1234", c.login, c.password)
		if name != c.name || account != c.account || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Login(%q, %q) = %q, %q, %v; want %q, %q, %v", c.login, c.password, name, account, err, c.name, c.account, c.err)
		}
	}
}
