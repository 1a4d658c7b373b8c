// Package replica keeps a person's nodes (a board at home, a VM in the
// cloud) in live sync: every node serves alone while cut off, and all of
// them converge when they meet again, through the typed merges the apps
// register on the store (mail per flag and per message, contacts and
// calendar per property).
//
// Peers. The records PeersPrefix/NAME.json (a name and the URL of the
// peer's endpoint) are data like any other: they replicate, so every node
// learns of the others. What must not replicate is a node file (see
// store.WriteNodeFile): this node's name (replica/self), the token shared
// with each peer (replica/peers/NAME.token: a random secret for
// replication only, never a person's password), a CA to trust for a
// peer's https endpoint, and a local URL override (SetLocalURL: a peer
// reached from here by another address). A record without a token on this
// node is listed but not synced.
//
// A new node: boot options (ParseBoot: nymote.peer=NAME=URL, peer-as,
// peer-token=FILE, peer-ca=FILE on an appliance's kernel command line,
// --peer ... on a host program; secrets are files on the data disk, never
// options) name its peers; Join, run before the app writes, clones the
// peer's store into a store without commits, then records the peer, and
// the engine syncs from there as with any peer. A store that holds only
// peer records (a plain `nymote peer add` on the new node's data
// directory) counts as new: it takes its peer's history by a merge, the
// records kept. Join retries until a peer answers (Retry doubling up to
// Poll, a console line per attempt); meanwhile the mail service keeps its
// ports open and answers with a temporary refusal that says why (IMAP BYE
// [UNAVAILABLE], SMTP 421, HTTP 503: Fresh tells it to).
//
// Protocol: git smart HTTP under BASE/git (Engine.Handler, mounted at
// /replica/ on the mail service's git and HTTPS ports and on the DAV
// services' HTTP(S) listeners), basic authentication with this node's name and the
// shared token. Each node writes only its own main branch, and pushes it
// to its own branch on each peer, replica/SELF (a fast-forward always: a
// push filter keeps a peer to that branch, and the store's checks of pushed
// commits (paths, sizes, the apps' validators) apply). The receiver merges
// that branch into its main locally, with the merge functions; its main
// moves, and it pushes that on in turn, except to a peer that holds that
// head already (it pushed it here, or took it from this node before, or
// its main is at it: store.SyncOptions.SkipIfAt, or one of its branches
// reaches it: SkipIfHeld; its status still counts it in sync). A head
// that another peer pushed here is passed on only after Options.Relay
// (1 s), at most once per Relay: its maker pushes it to every peer it
// reaches itself, and by then the peer holds it; the relay is for a peer
// that only this node reaches. A relay is not sent to a peer whose branch
// of the head's pusher is at a commit this node lacks (the pusher reached
// it later than this node: SkipIfNewer), nor to one that holds the head
// held back a Relay ago (SkipIfHas): a later head sent then raced the
// maker's own push there. Pushes never race a peer's own
// writes, and no merge waits for the network.
//
// Merge commits are deterministic (store.CommitOptions.Deterministic):
// parents sorted by hash, the author "nymote replica", the message "Merge
// replicas", the later of the parents' times, no trace of the node. Two
// nodes that merge the same two heads make the same commit, and each
// fast-forwards to the other's at once; merges that named the node and the
// time differed, and were merged again, back and forth, until timing let
// one side fast-forward. A merge's first parent is therefore not always
// this node's previous head.
//
// Peers share their history: a node becomes a replica by beginning as a
// clone of a peer's store (Join, at its first boot). A peer's push, even
// the first into its branch (no fast-forward of anything), and a pull of
// its main are refused when their history shares no commit with this
// node's main (store.ErrUnrelatedHistory; a WARN line "git: push refused:
// its history shares no commit ...", the peer's status shows the error,
// nothing is written), unless this node's main has no commit yet: two
// stores begun apart (two people's, or a node set up alone and then
// paired) would otherwise be merged into one without a common base.
//
// Over the tunnel: where the node is in a Signpost network (package
// signpost; Options.Tunnel, which the mail and DAV apps set from their data
// directory), a peer that is a node of that network needs no token. Its
// record names it in the network, http://NODE.PERSON.nymote:PORT/replica
// (nymote peer add --tunnel), the engine dials it through the tunnel
// (the appliance's netstack; the name is the node's tunnel address from
// the signpost state, without DNS), and takes a request as that peer's
// when it comes from the peer's tunnel address: WireGuard admits a packet
// only with the source addresses of the key it came with, so the address
// is the node's key. A revoked node loses its tunnel and its address at
// once; a token, where one is kept, works as well. The engine notices a
// join or a revocation within a quarter of a second.
//
// Timing: a local commit is pushed to every peer after Debounce (50 ms;
// the commits meanwhile go as one push), a peer's commits passed on to
// the other peers after Relay (1 s, see above); each peer is also pulled from
// (fetch, then a local merge, the fetched commits checked as pushes are)
// every Poll (30 s) and when it calls after being unreachable, after this
// node's push and unless the peer pushed to this node meanwhile (its push
// brought its commits: after a partition heals both sides sync at once,
// and pulling as well sent every commit over each link twice). A failed
// sync is retried after Retry (500 ms), doubling up to MaxRetry (8 s): nodes find
// each other within about 8 s of a partition's end, and a connection to
// a peer that is cut off fails in 10 s. Fetches and
// pushes take no store lock while they wait for the network, so a peer
// that is down or slow never holds up local writes.
//
// Partitions: both sides keep accepting every write. Per data type, on
// heal:
//
//   - mail: see the mailstore package (messages are added under keys made
//     from their content, so one message delivered to two nodes is one;
//     flags merge per flag; an expunge wins over a
//     flag change; UIDs are each node's own and never renumbered);
//   - contacts and calendar: per-property merges (dav.Kind's MergeFunc);
//     two edits of one property keep one value in the object (the later
//     REV's, the higher SEQUENCE's) and write the other into its NOTE or
//     DESCRIPTION, where a person sees it; the history shows both;
//   - users: a record changed on both nodes keeps the password set last,
//     the app passwords of both sides but those revoked on either, and a
//     deletion wins (store.MergeUserRecords); the records name the hashes
//     by id, and the hashes travel beside the history over this endpoint
//     (credentials.go), never in it;
//   - peer records: likewise.
//
// A conflict that no merge function resolves stops the merge with that
// peer (nothing is written); the peer's status shows the error.
//
// Status: per peer the last contact, commits ahead and behind as of then,
// and the last error (Engine.Status; the node file replica/status.json
// for `nymote peer status`; a console line when it changes).
package replica
