//go:build nymote_migrationtest

package app

// Built with the tag nymote_migrationtest (tests only: cli
// TestUpdateMigrationBoot builds such an image of hello), hello writes
// data format 2, reads format 1 and carries one migration, whose code is
// in appliance/hello (migration_test_tag.go).
func init() {
	Hello.Data = DataFormat{Version: 2, Reads: []int{1}, Migrations: []Migration{{From: 1, Name: HelloTestMigration}}}
	Apps[Hello.Name] = Hello
}
