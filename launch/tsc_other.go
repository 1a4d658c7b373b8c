//go:build !amd64

package launch

// TCGTSCkHz returns false on hosts that are not x86-64: the guest's TSC
// frequency under TCG is not known here, and the guest kernel calibrates
// it.
func TCGTSCkHz() (int, bool) { return 0, false }
