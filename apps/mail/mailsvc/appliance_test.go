package mailsvc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nymote/nymote/internal/testutil"
)

// TestApplianceACME: the appliance's ACME options of the kernel command
// line, nymote.acme-ca read from the data directory when relative, and bad
// combinations refused with the option named.
func TestApplianceACME(t *testing.T) {
	data := t.TempDir()
	caPEM, _, _ := testutil.CAFiles(t, "10.0.2.2")
	os.WriteFile(filepath.Join(data, "ca.pem"), caPEM, 0o600)
	os.WriteFile(filepath.Join(data, "junk.pem"), []byte("not a certificate"), 0o600)

	if a, err := applianceACME(map[string]string{}, data); a != nil || err != nil {
		t.Errorf("no options: %v, %v; want no ACME", a, err)
	}
	a, err := applianceACME(map[string]string{"acme": "https://10.0.2.2:14000/dir", "acme-email": "a@b.test",
		"acme-names": "mail.b.test,mta-sts.b.test", "acme-ca": "ca.pem"}, data)
	if err != nil {
		t.Fatal(err)
	}
	if a.DirectoryURL != "https://10.0.2.2:14000/dir" || a.Email != "a@b.test" || len(a.Names) != 2 || a.HTTPClient == nil {
		t.Errorf("got %+v", a)
	}
	if a, err := applianceACME(map[string]string{"acme": "letsencrypt", "acme-ca": filepath.Join(data, "ca.pem")}, "/nonexistent"); err != nil || a.HTTPClient == nil {
		t.Errorf("absolute nymote.acme-ca: %+v, %v", a, err)
	}
	for _, tc := range []struct {
		config map[string]string
		want   string
	}{
		{map[string]string{"acme-ca": "ca.pem"}, "need nymote.acme"},
		{map[string]string{"acme-email": "a@b.test"}, "need nymote.acme"},
		{map[string]string{"acme": "letsencrypt", "acme-ca": "missing.pem"}, "nymote.acme-ca: "},
		{map[string]string{"acme": "letsencrypt", "acme-ca": "junk.pem"}, "nymote.acme-ca: no certificate in"},
	} {
		if _, err := applianceACME(tc.config, data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.config, err, tc.want)
		}
	}
}
