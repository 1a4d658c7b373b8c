package launch

import (
	"strings"
	"testing"
)

// TestParseXLConfig checks the xl configuration parser against what
// libxlu accepts and rejects.
func TestParseXLConfig(t *testing.T) {
	cfg, err := ParseXLConfig("# comment\nname = 'a' ; memory=256\nvif = [ \"bridge=xenbr0\",\n  'mac=00:16:3e:00:00:01', ]\nextra = \"x\\\"y\" # trailing\nvif += [ 'b' ]\nempty = []\nvcpus = 0x2")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"name": "a", "memory": "256", "extra": `x"y`, "vcpus": "0x2"} {
		if got := cfg[key].Atom; got != want {
			t.Errorf("%s: got %q, want %q", key, got, want)
		}
	}
	if got := strings.Join(cfg["vif"].List, "|"); got != "bridge=xenbr0|mac=00:16:3e:00:00:01|b" {
		t.Errorf("vif: got %q", got)
	}
	if !cfg["empty"].IsList || len(cfg["empty"].List) != 0 {
		t.Errorf("empty: got %+v", cfg["empty"])
	}
	for _, bad := range []string{
		"Name = 'a'",           // names are lower case
		"name 'a'",             // no =
		"name = ",              // no value
		"name = 'a' 'b'",       // two values
		"name = \"a",           // unterminated
		"disk = [ [ 'a' ] ]",   // nested list
		"disk = [ 'a' 'b' ]",   // no comma
		"memory = 256 MiB",     // junk after the value
		"kernel = /boot/x",     // unquoted path
		"name = 'a'\n+= ['b']", // += without a name
		"x = 'a'\nx += ['b']",  // += to an atom
	} {
		if _, err := ParseXLConfig(bad); err == nil {
			t.Errorf("%q: parsed, want an error", bad)
		}
	}
}
