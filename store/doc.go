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
// Durability: when Update (or any call that moves a branch) returns, the
// commit survives a crash or power cut. Update appends the commit's new
// objects and the branch move to a commit log (nymote-wal in the repository)
// and syncs it, one fdatasync, before anyone can see the commit; a
// background writer then writes batches of logged commits into the
// repository, each batch's objects as one pack (synced before it is renamed
// in) and the branch files without syncs, and a checkpoint (syncfs) empties
// the log every thousand commits, before any other kind of write, and on
// Close. Open replays what the log holds, rewriting objects a power cut left
// missing or empty. Small packs are merged in the background (packmerge.go).
// Other writers (merge,
// revert, branches, pull, push, GC) sync every object file before renaming it
// into place and replace references atomically after syncing their
// directories. After a process crash git fsck accepts the repository, which
// holds every commit that was returned; after a power cut, once the store
// has been opened again (the log replayed).
//
// Concurrency: one writer at a time per repository (a mutex within the
// process, an flock(2) on the repository across processes); any number of
// readers. Readers never see a half-written commit.
//
// Layout: the store does not choose paths, but Shard spreads keys over two
// levels of 256 folders so that no tree object grows with the item count and
// the cost of a commit stays flat as the store grows.
//
// Large blobs: a caller receives a large blob (a mail message) into a
// Spool, a temporary file on the store's file system that is unlinked at
// once, and puts it with Tx.PutBlobSpool, which hashes it from the file;
// the commit log and the batch's pack are written by streaming from the
// file and then from the log (spool.go), so a blob costs a few buffers of
// memory whatever its size. Free space: data writes (Spool, PutBlobSpool,
// and whatever callers check with CheckSpace) are refused with ErrNoSpace
// while the free space on the file system is below a reserve
// (Options.Reserve), so that the store can always commit its own records;
// a commit log append that fails (a full disk) is cut off again.
//
// History (Log, Show, Revert), branches, 3-way merges with per-prefix merge
// functions (SetMergeFunc), subscriptions to commits (Watch), replication to
// and from other stores by path or over git smart HTTP (Pull, Push, Clone),
// the smart HTTP server itself (GitHandler), repacking (GC) and the store's
// users (AddUser, Authenticate) complete the package.
package store
