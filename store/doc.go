// Package store is Nymote's versioned datastore, the Irmin of this stack: a
// key/value tree kept as a bare git repository, where every transaction is a
// commit with an author, a time and a message.
//
// A Store is opened on a path with Open (or created with Init). Reads go
// through a Snapshot of one commit, so many reads see one consistent tree;
// writes go through Update, which runs a function on a Tx and turns its puts
// and deletes into a single commit:
//
//	st, err := store.Open(dir, store.Options{Logger: log})
//	head, err := st.Update(ctx, store.CommitOptions{Message: "add note"}, func(tx *store.Tx) error {
//		return tx.Put("notes/"+store.Shard("n1"), []byte("hello"))
//	})
//	data, err := st.Read("", "notes/"+store.Shard("n1"))
//
// Durability: when Update (or any call that moves a branch) returns, the new
// objects and the branch reference are on disk: every object file is synced
// before it is renamed into place, and the reference is replaced atomically
// after its directory entries are synced. A crash at any moment leaves a
// repository that git fsck accepts, holding every commit that was returned.
//
// Concurrency: one writer at a time per repository (a mutex within the
// process, an flock(2) on the repository across processes); any number of
// readers. Readers never see a half-written commit.
//
// Layout: the store does not choose paths, but Shard spreads keys over two
// levels of 256 folders so that no tree object grows with the item count and
// the cost of a commit stays flat as the store grows.
//
// History (Log, Show, Revert), branches, 3-way merges with per-prefix merge
// functions (SetMergeFunc), subscriptions to commits (Watch), replication to
// and from other stores by path or over git smart HTTP (Pull, Push, Clone),
// the smart HTTP server itself (GitHandler), repacking (GC) and the store's
// users (AddUser, Authenticate) complete the package.
package store
