//go:build nymote_migrationtest

package main

import (
	"context"

	"github.com/nymote/nymote/appliance/app"
	"github.com/nymote/nymote/store"
	"github.com/nymote/nymote/update"
)

// Built with the tag nymote_migrationtest (tests only), hello carries the
// data migration app.HelloTestMigration: it writes hello/format (2) into
// the data disk's store with a commit naming the migration. It is
// idempotent: once written, store.Update commits nothing more.
func init() {
	migrations = map[string]update.MigrationFunc{app.HelloTestMigration: func(ctx context.Context, dir string) error {
		s, err := store.OpenData(dir, store.Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Update(ctx, store.CommitOptions{Message: "data migration " + app.HelloTestMigration + ": format 1 to 2"}, func(tx *store.Tx) error {
			return tx.Put("hello/format", []byte("2\n"))
		})
		return err
	}}
}
