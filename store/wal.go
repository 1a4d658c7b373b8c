package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/sys/unix"
)

// The commit log (write-ahead log) makes a commit durable with one append
// and one fdatasync, where writing it into the repository durably takes four
// rounds of syncs (objects, their directories, the branch file, its
// directory), each a journal commit of the file system.
//
// Update appends a record holding every new object of the commit (blobs,
// trees, the commit) and the branch move, syncs the log, and only then
// writes the objects and the branch into the repository without syncing
// them: readers see a commit only once it is durable. A checkpoint flushes
// the file system (syncfs) and empties the log (a new file takes its
// name): in the background once the log is half full (maybeCheckpoint),
// in the writer that fills it (walMaxRecords records or walMaxBytes
// bytes), before any other kind of write, and on Close. Open replays a
// log that is not empty: every object of every record is checked and
// rewritten if it is missing or damaged (a power cut can leave unsynced
// files empty), and the branch moves are redone where the branch still
// points at the old commit or cannot be read. Replaying twice does no harm.
// A record cut short by a crash was never acknowledged; it is dropped.
//
// Record: "nyw1", payload length (uint32), CRC-32C of the payload (uint32),
// payload: branch length (uint16), branch, old commit (20 bytes), new commit
// (20 bytes), object count (uint32), then per object its type (uint8),
// length (uint32) and content.
// CommitLogName is the commit log's file name in the repository.
const CommitLogName = walName

const (
	walName       = "nymote-wal"
	walMagic      = "nyw1"
	walMaxRecords = 1024
	walMaxBytes   = 32 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type wal struct {
	repo    string
	f       *os.File
	size    int64
	records int
	// branches are those the log's records move (unknown: records
	// another Store appended, see follow), for holds.
	branches map[string]bool
	unknown  bool
	// gen counts the times the log was emptied: objects read back from
	// the log (streamObject) check that it is the one they were written
	// to.
	gen atomic.Uint64
	// broken is set when a failed append could not be cut off again: a
	// later record would follow garbage, and replay would drop it.
	broken error
	// half is halfFull, for readers without the writer lock.
	half atomic.Bool
}

type walRecord struct {
	branch   string
	old, new Hash
	objects  []plumbing.EncodedObject
}

func openWAL(repo string) (*wal, error) {
	f, err := os.OpenFile(filepath.Join(repo, walName), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: commit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: commit log: %w", err)
	}
	// (Empty after replay, unless another Store appended since: its
	// records are of branches unknown here.)
	return &wal{repo: repo, f: f, size: fi.Size(), unknown: fi.Size() > 0}, nil
}

// append writes rec to the log and syncs it. It returns rec's objects as
// they are to be queued (pending.go): those larger than streamThreshold,
// and those read from a file, are read back from the log instead of being
// held in memory.
//
// The record is streamed in two passes over the objects' content, one for
// its length and CRC (the header comes first), one to write it, so that a
// blob read from a file (a Spool) is never held whole. A write that fails
// half way (a full disk) is cut off again, so that the log still ends in a
// whole record.
func (w *wal) append(rec walRecord) ([]plumbing.EncodedObject, error) {
	if w.broken != nil {
		return nil, w.broken
	}
	// The payload's head: branch, moves and object count.
	var head bytes.Buffer
	binary.Write(&head, binary.BigEndian, uint16(len(rec.branch)))
	head.WriteString(rec.branch)
	head.Write(rec.old[:])
	head.Write(rec.new[:])
	binary.Write(&head, binary.BigEndian, uint32(len(rec.objects)))
	// offs[i]: where object i's content starts in the payload.
	offs := make([]int64, len(rec.objects))
	payload := func(dst io.Writer) (int64, error) {
		cw := &countWriter{w: dst}
		if _, err := cw.Write(head.Bytes()); err != nil {
			return cw.n, err
		}
		var oh [5]byte
		for i, o := range rec.objects {
			oh[0] = byte(o.Type())
			binary.BigEndian.PutUint32(oh[1:], uint32(o.Size()))
			if _, err := cw.Write(oh[:]); err != nil {
				return cw.n, err
			}
			offs[i] = cw.n
			r, err := o.Reader()
			if err != nil {
				return cw.n, err
			}
			n, err := copyBuffered(cw, r)
			r.Close()
			if err == nil && n != o.Size() {
				err = fmt.Errorf("object %s: %d of %d bytes", o.Hash(), n, o.Size())
			}
			if err != nil {
				return cw.n, err
			}
		}
		return cw.n, nil
	}
	for _, o := range rec.objects {
		if o.Size() > math.MaxUint32 {
			return nil, fmt.Errorf("store: commit log: object %s: %d bytes is too large", o.Hash(), o.Size())
		}
	}
	crc := crc32.New(castagnoli)
	n, err := payload(crc)
	if err != nil {
		return nil, fmt.Errorf("store: commit log: %w", err)
	}
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("store: commit log: a commit of %d bytes is too large", n)
	}
	var hdr [12]byte
	copy(hdr[:], walMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(n))
	binary.BigEndian.PutUint32(hdr[8:], crc.Sum32())
	// A small record goes out in one write, a large one in 256 KiB ones
	// (a pack writer's buffer, kept between uses: one made for each
	// record was a fifth of what an APPEND allocated).
	bw := packWriteBufs.get()
	bw.Reset(w.f)
	defer func() {
		bw.Reset(nil)
		packWriteBufs.put(bw)
	}()
	bw.Write(hdr[:])
	crc2 := crc32.New(castagnoli)
	n2, err := payload(io.MultiWriter(bw, crc2))
	if err == nil && (n2 != n || crc2.Sum32() != crc.Sum32()) {
		err = errors.New("an object's content changed while it was written")
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		if serr := unix.Fdatasync(int(w.f.Fd())); serr != nil {
			err = fmt.Errorf("sync: %w", serr)
		}
	}
	if err != nil {
		// Cut the log back to its last whole record. Should that fail,
		// no record may follow (replay stops at the first damaged one).
		if terr := w.f.Truncate(w.size); terr != nil {
			w.broken = fmt.Errorf("store: commit log: cutting off a failed record: %w (after: %v)", terr, err)
		}
		return nil, fmt.Errorf("store: commit log: %w", err)
	}
	start := w.size + 12
	w.size += 12 + n
	w.records++
	if w.branches == nil {
		w.branches = map[string]bool{}
	}
	w.branches[rec.branch] = true
	w.half.Store(w.halfFull())
	out := make([]plumbing.EncodedObject, len(rec.objects))
	for i, o := range rec.objects {
		out[i] = o
		// Large objects, and every object read from a file (a Spool,
		// which its owner closes once Update returns).
		if _, fromFile := o.(*streamObject); fromFile || o.Size() > streamThreshold {
			out[i] = &streamObject{t: o.Type(), h: o.Hash(), size: o.Size(), r: w.f, off: start + offs[i], gen: &w.gen, at: w.gen.Load()}
		}
	}
	return out, nil
}

// follow takes the log as it is on disk, once this Store holds the flock
// again: another Store on the repository (another process, or a pull,
// push or clone by path in this one) may have taken the lock meanwhile,
// replayed the log and emptied it, or appended records of its own (which
// it wrote into the repository before it gave the lock back). Records
// are appended at the file's end (O_APPEND), and a large object is read
// back from where its record says it is: from the real end, not from
// where this Store last left it. Objects read back from the log before
// are in the repository by then (the lock is given back only once the
// pending commits are written), and the log's generation moves on so that
// they are read there.
func (w *wal) follow() error {
	fi, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	// Another Store's checkpoint put a new file in the log's place
	// (reset): records must go there, not to the old file.
	cur, err := os.Stat(filepath.Join(w.repo, walName))
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	changed, old := fi.Size() != w.size, (*os.File)(nil)
	if !os.SameFile(fi, cur) {
		f, err := os.OpenFile(filepath.Join(w.repo, walName), os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("store: commit log: %w", err)
		}
		if fi, err = f.Stat(); err != nil {
			f.Close()
			return fmt.Errorf("store: commit log: %w", err)
		}
		changed, old, w.f, w.broken = true, w.f, f, nil
	}
	if changed {
		w.gen.Add(1)
		w.size, w.records = fi.Size(), 0
		w.half.Store(w.halfFull())
		w.unknown = w.size > 0
	}
	if old != nil {
		go old.Close() // after the generation moved on: readers of it see why it fails
	}
	return nil
}

func (w *wal) full() bool { return w.records >= walMaxRecords || w.size >= walMaxBytes }

// halfFull says the log may be emptied early (maybeCheckpoint); half is
// the same, set after each append for the batch writer, which does not
// hold the writer lock.
func (w *wal) halfFull() bool {
	return w.records >= walEarlyRecords || w.size >= walMaxBytes/2
}

// walEarlyRecords is the number of records at which the log may be
// emptied early (a variable: the crash test checkpoints every few).
var walEarlyRecords = walMaxRecords / 2

// reset empties the log, durably. The caller has made everything the log
// held durable in the repository first. A new empty file takes the log's
// name (renamed over it, the folder synced: 0.1 ms) and the old one is
// closed in the background, where truncating it in place (25 MB of
// messages) took 5-8 ms under the writer lock. Objects still being read
// back from the old file see the generation move on and are read from the
// repository instead (streamObject). A crash before the rename leaves the
// old log, whose records are all in the repository (replaying them again
// does no harm), and an empty walName.new, truncated at the next reset.
func (w *wal) reset() error {
	p := filepath.Join(w.repo, walName)
	f, err := os.OpenFile(p+".new", os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		f.Close()
		return fmt.Errorf("store: commit log: %w", err)
	}
	// From here on the log is the new file: records must not go to the
	// old one, which no name reaches any more.
	w.gen.Add(1)
	old := w.f
	w.f = f
	go old.Close()
	w.size, w.records, w.broken = 0, 0, nil
	w.half.Store(false)
	clear(w.branches)
	w.unknown = false
	// The new file's name must be durable before a record in it is
	// acknowledged; if it cannot be made so, no record is taken.
	if err := syncDir(w.repo); err != nil {
		w.broken = fmt.Errorf("store: commit log: syncing the new log's folder: %w", err)
		return w.broken
	}
	return nil
}

// holds reports whether the log may hold a record that moves branch: a
// writer that moves it other than through the log must checkpoint first
// (a replayed record would not move the branch from where the writer
// left it, but the pending writer would, and replay might).
func (w *wal) holds(branch string) bool {
	return w.unknown || w.branches[branch]
}

// readWAL decodes the records of a log held in memory (see readWALAt).
func readWAL(data []byte) (recs []walRecord, dropped int) {
	recs, d, err := readWALAt(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return recs, len(data)
	}
	return recs, int(d)
}

// readWALAt decodes the records of a log of size bytes read through r. A
// damaged or cut-short record ends the log: it and anything after it are
// reported as dropped bytes. Objects larger than streamThreshold are not
// read into memory: they read their content from r when asked, so r must
// stay open while the records are used. An error is a failure to read r.
func readWALAt(r io.ReaderAt, size int64) (recs []walRecord, dropped int64, err error) {
	var off int64
	for off < size {
		rec, n, ok, err := decodeWALRecord(r, off, size)
		if err != nil {
			return recs, 0, err
		}
		if !ok {
			return recs, size - off, nil
		}
		recs = append(recs, rec)
		off += n
	}
	return recs, 0, nil
}

// decodeWALRecord decodes the record at off: first its CRC is checked by
// streaming over the payload, then the payload is parsed.
func decodeWALRecord(ra io.ReaderAt, off, size int64) (walRecord, int64, bool, error) {
	var rec walRecord
	var hdr [12]byte
	if size-off < 12 {
		return rec, 0, false, nil
	}
	if _, err := ra.ReadAt(hdr[:], off); err != nil {
		return rec, 0, false, err
	}
	if string(hdr[:4]) != walMagic {
		return rec, 0, false, nil
	}
	n := int64(binary.BigEndian.Uint32(hdr[4:]))
	if size-off-12 < n {
		return rec, 0, false, nil
	}
	start := off + 12
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(crc, io.NewSectionReader(ra, start, n)); err != nil {
		return rec, 0, false, err
	}
	if crc.Sum32() != binary.BigEndian.Uint32(hdr[8:]) {
		return rec, 0, false, nil
	}
	sr := io.NewSectionReader(ra, start, n)
	r := bufio.NewReaderSize(sr, 64<<10)
	pos := func() int64 { p, _ := sr.Seek(0, io.SeekCurrent); return p - int64(r.Buffered()) }
	var bl uint16
	if binary.Read(r, binary.BigEndian, &bl) != nil {
		return rec, 0, false, nil
	}
	b := make([]byte, bl)
	var count uint32
	if _, err := io.ReadFull(r, b); err != nil {
		return rec, 0, false, nil
	}
	rec.branch = string(b)
	if _, err := io.ReadFull(r, rec.old[:]); err != nil {
		return rec, 0, false, nil
	}
	if _, err := io.ReadFull(r, rec.new[:]); err != nil {
		return rec, 0, false, nil
	}
	if binary.Read(r, binary.BigEndian, &count) != nil {
		return rec, 0, false, nil
	}
	for i := uint32(0); i < count; i++ {
		t, err := r.ReadByte()
		var l uint32
		if err != nil || binary.Read(r, binary.BigEndian, &l) != nil || int64(l) > n-pos() {
			return rec, 0, false, nil
		}
		ot := plumbing.ObjectType(t)
		if int64(l) <= streamThreshold {
			content := make([]byte, l)
			if _, err := io.ReadFull(r, content); err != nil {
				return rec, 0, false, nil
			}
			rec.objects = append(rec.objects, memObject(ot, content))
			continue
		}
		at := start + pos()
		hs := plumbing.NewHasher(ot, int64(l))
		if _, err := io.CopyN(hs, r, int64(l)); err != nil {
			return rec, 0, false, nil
		}
		rec.objects = append(rec.objects, &streamObject{t: ot, h: hs.Sum(), size: int64(l), r: ra, off: at})
	}
	if pos() != n {
		return rec, 0, false, nil
	}
	return rec, 12 + n, true, nil
}

// checkpoint makes everything written since the log was last emptied
// durable (one syncfs of the repository's file system) and empties the log.
// The caller holds the writer lock.
func (s *Store) checkpoint() error {
	if s.wal == nil || s.wal.size == 0 {
		return nil
	}
	if s.pend != nil {
		if err := s.pend.drain(); err != nil {
			return fmt.Errorf("store: checkpoint: %w", err)
		}
	}
	if err := syncFS(s.path); err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	return s.wal.reset()
}

// maybeCheckpoint empties the commit log early, once it is half full, in
// a goroutine of its own that the batch writer starts after a batch: the
// checkpoint that a full log forces on the writer that filled it
// (commitLogged) first waits for every queued commit to be written, up to
// batchDelay's worth, 12-20 ms of a client's APPEND once every 1024
// commits. Started right after a batch, it finds only the commits of the
// last milliseconds queued; writers wait for it as for one more commit.
// (The batch writer cannot take the writer lock itself: a writer holding
// it may be waiting in drain for the batch writer.)
func (s *Store) maybeCheckpoint() {
	if w := s.wal; w == nil || !w.half.Load() || s.isClosed() || !s.ckptRunning.CompareAndSwap(false, true) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.ckptRunning.Store(false)
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if s.isClosed() || s.wal == nil || !s.wal.halfFull() {
			return
		}
		if err := s.holdFlock(); err != nil {
			s.log.Warn("store: checkpoint: lock", "err", err)
			return
		}
		defer s.releaseFlock(true)
		if err := s.checkpoint(); err != nil {
			s.log.Warn("store: checkpoint failed", "err", err)
		}
	}()
}

// syncFS flushes the file system that holds dir (syncfs(2)).
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// replayWAL redoes the records of the commit log at Open (see the comment
// at the top of this file), then empties it. The caller holds the flock.
func (s *Store) replayWAL() error {
	p := filepath.Join(s.path, walName)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	if fi.Size() == 0 {
		return nil
	}
	// Large objects are read from the log when they are needed, not held.
	recs, dropped, err := readWALAt(f, fi.Size())
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	if dropped > 0 {
		s.log.Warn("store: commit log ends in a record cut short by a crash (never acknowledged); dropped", "bytes", dropped)
	}
	objs, err := openObjReader(s.path, newTreeCache(1024))
	if err != nil {
		return fmt.Errorf("store: commit log replay: %w", err)
	}
	defer objs.close()
	dirs := map[string]bool{}
	rewritten := 0
	for _, rec := range recs {
		for _, o := range rec.objects {
			h := o.Hash()
			if t, data, err := objs.read(h); err == nil && plumbing.ComputeHash(t, data) == h {
				continue
			}
			hx := h.String()
			os.Remove(filepath.Join(s.path, "objects", hx[:2], hx[2:]))
			ds, _, err := s.writeLoose(o)
			if err != nil {
				return fmt.Errorf("store: commit log replay: %w", err)
			}
			for _, d := range ds {
				dirs[d] = true
			}
			rewritten++
		}
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("store: commit log replay: %w", err)
		}
	}
	moved := 0
	for _, rec := range recs {
		name := plumbing.NewBranchReferenceName(rec.branch)
		cur, err := os.ReadFile(filepath.Join(s.path, filepath.FromSlash(name.String())))
		curOK := err == nil && len(bytes.TrimSpace(cur)) == 40 && plumbing.IsHash(string(bytes.TrimSpace(cur)))
		var ch Hash
		if curOK {
			ch = plumbing.NewHash(string(bytes.TrimSpace(cur)))
		} else if err != nil && errors.Is(err, fs.ErrNotExist) && rec.old.IsZero() {
			curOK = true // a branch the record created
		}
		if curOK && ch != rec.old {
			continue
		}
		if err := s.writeRef(name, rec.new); err != nil {
			return fmt.Errorf("store: commit log replay: %w", err)
		}
		moved++
	}
	if len(recs) > 0 {
		s.log.Info("store: replayed the commit log", "records", len(recs), "objects_rewritten", rewritten, "branches_moved", moved)
	}
	// What the log's records found in place may have been written by a
	// process that died before its checkpoint: in the page cache, not on
	// disk. Make it durable before the log is emptied.
	if err := syncFS(s.path); err != nil {
		return fmt.Errorf("store: commit log replay: %w", err)
	}
	w, err := openWAL(s.path)
	if err != nil {
		return err
	}
	err = w.reset()
	w.f.Close()
	return err
}
