package netstack

import (
	"errors"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name, in string
		want     Spec
		wantErr  bool
	}{
		{name: "tap", in: "tap:nymote0", want: Spec{Kind: KindTAP, Name: "nymote0"}},
		{name: "packet", in: "packet:eth0", want: Spec{Kind: KindPacket, Name: "eth0"}},
		{name: "longest name", in: "tap:abcdefghijklmno", want: Spec{Kind: KindTAP, Name: "abcdefghijklmno"}},
		{name: "no colon", in: "eth0", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "unknown kind", in: "tun:x", wantErr: true},
		{name: "upper-case kind", in: "TAP:x", wantErr: true},
		{name: "empty name", in: "tap:", wantErr: true},
		{name: "too long", in: "tap:abcdefghijklmnop", wantErr: true},
		{name: "slash", in: "tap:a/b", wantErr: true},
		{name: "second colon", in: "tap:a:b", wantErr: true},
		{name: "space", in: "tap:a b", wantErr: true},
		{name: "dot", in: "packet:.", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSpec(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseSpec(%q) = %v, want error", tc.in, got)
				}
				if !errors.Is(err, ErrBadSpec) {
					t.Errorf("ParseSpec(%q) error %v does not wrap ErrBadSpec", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}
