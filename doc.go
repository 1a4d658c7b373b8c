// Package nymote is the root of Nymote, personal cloud services as
// single-purpose appliances that keep a person's data as a git history. The
// code lives in the packages below it (see README.md and DESIGN.md); this
// package holds only repository-wide tests.
package nymote
