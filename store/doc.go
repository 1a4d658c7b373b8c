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
// the log once it is half full (every 500-600 commits, in the background
// after a batch), when it is full, before any other kind of write, and on
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
// Secrets: what replicates and what does not. A store's branches are
// meant to be copied: to every clone over git smart HTTP, to a person's
// other nodes (replicas), and forever into their history. So they hold
// no secret:
//
//   - Node secrets, each node's own (the TLS key and certificate that
//     services generate, later node keys and node credentials), are files
//     in the data directory beside the repository (NodeDir: DATA/node/),
//     written with WriteNodeFile (mode 0600, folders 0700, a temporary
//     file synced, renamed into place, its folder synced) and read with
//     ReadNodeFile. They are never committed, so nothing carries them.
//   - Users replicate: users/NAME on the branches holds the name, git access,
//     creation time and the id of the current password (a digest of the
//     hash, which changes when the password does and says nothing of it),
//     so a person's history shows "user passwd alice" without the hash.
//     The password hashes are the tree of CredentialsRef
//     (refs/nymote/credentials): a commit without parents, replaced on each
//     change, so that an old hash is unreachable at once and GC prunes it.
//     A user change writes the hash and the record under one writer lock
//     (the hash first: a crash between them leaves the new password in
//     force for a change that was not acknowledged, never a lost one).
//     Authenticate reads the hash from there (cached until the reference
//     moves) and its cache of successes is keyed by the hash, so a password
//     change invalidates it; a snapshot's users are checked against the
//     current hashes. App passwords (AddAppPassword: one per client, made
//     by the store and shown once) are listed in the user's record and
//     hashed beside the user's password in CredentialsRef; the protocols'
//     AuthenticateClient takes them, Authenticate (console, git) does not.
//   - The git endpoint advertises refs/heads/ only, serves only commits that
//     a branch reaches (a want of any other object is refused, so the
//     credentials cannot be fetched by hash), and accepts pushes to
//     refs/heads/ only. Pull, Push and Clone carry branches only. A clone
//     therefore has the users without their passwords (set them with
//     SetPassword). Replicas (issue 16) that are to share logins will fetch
//     CredentialsRef with replication credentials, over a separate,
//     authenticated path that this endpoint does not open.
//
// Stores written before this model kept tls/ and the hashes in their
// history. Open upgrades such a store once (upgrade.go): it copies tls/ of
// the default branch to NodeDir and the hashes to CredentialsRef, writes
// every commit of every branch again with the same author, committer,
// dates and message and without those secrets (commits from before any
// secret keep their hash), moves the branches (the commit point; a crash
// before leaves the old history, and the next Open starts over, reaching
// the same commits), prunes the old objects at once, logs what it did and
// records it in the repository's nymote-upgrades file.
//
// Pushed commits are checked as the protocols check their clients'
// writes: every item that a pushed commit changes must have a valid path
// (ValidatePath), be a plain file or folder, be at most MaxPushItemBytes,
// and pass the validator that the app registered for its prefix
// (SetValidateFunc, beside SetMergeFunc); users/ records must hold no hash.
// A refused ref gets "ng REF refused: PATH (commit C): REASON" and stays
// where it was; the objects the push brought are unreachable and GC
// removes them.
//
// History (Log, Show, Revert), branches, 3-way merges with per-prefix merge
// functions (SetMergeFunc), subscriptions to commits (Watch), replication to
// and from other stores by path or over git smart HTTP (Pull, Push, Clone),
// the smart HTTP server itself (GitHandler), repacking (GC), the store's
// users (AddUser, Authenticate) and the node's secrets (WriteNodeFile)
// complete the package.
package store
