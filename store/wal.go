package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

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
// them: readers see a commit only once it is durable. A checkpoint (every
// walMaxRecords records or walMaxBytes bytes, before any other kind of
// write, and on Close) flushes the file system (syncfs) and empties the
// log. Open replays a log that is not empty: every object of every record is
// checked and rewritten if it is missing or damaged (a power cut can leave
// unsynced files empty), and the branch moves are redone where the branch
// still points at the old commit or cannot be read. Replaying twice does no
// harm. A record cut short by a crash was never acknowledged; it is dropped.
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
	f       *os.File
	size    int64
	records int
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
	return &wal{f: f, size: fi.Size()}, nil
}

// append writes rec to the log and syncs it.
func (w *wal) append(rec walRecord) error {
	var p bytes.Buffer
	binary.Write(&p, binary.BigEndian, uint16(len(rec.branch)))
	p.WriteString(rec.branch)
	p.Write(rec.old[:])
	p.Write(rec.new[:])
	binary.Write(&p, binary.BigEndian, uint32(len(rec.objects)))
	for _, o := range rec.objects {
		data, err := readAll(o)
		if err != nil {
			return fmt.Errorf("store: commit log: %w", err)
		}
		p.WriteByte(byte(o.Type()))
		binary.Write(&p, binary.BigEndian, uint32(len(data)))
		p.Write(data)
	}
	buf := make([]byte, 12, 12+p.Len())
	copy(buf, walMagic)
	binary.BigEndian.PutUint32(buf[4:], uint32(p.Len()))
	binary.BigEndian.PutUint32(buf[8:], crc32.Checksum(p.Bytes(), castagnoli))
	buf = append(buf, p.Bytes()...)
	if _, err := w.f.Write(buf); err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	if err := unix.Fdatasync(int(w.f.Fd())); err != nil {
		return fmt.Errorf("store: commit log: sync: %w", err)
	}
	w.size += int64(len(buf))
	w.records++
	return nil
}

func (w *wal) full() bool { return w.records >= walMaxRecords || w.size >= walMaxBytes }

// reset empties the log, durably. The caller has made everything the log
// held durable in the repository first.
func (w *wal) reset() error {
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("store: commit log: sync: %w", err)
	}
	w.size, w.records = 0, 0
	return nil
}

// readWAL decodes the records of a log. A damaged or cut-short record ends
// the log: it and anything after it are reported as dropped bytes.
func readWAL(data []byte) (recs []walRecord, dropped int) {
	for len(data) > 0 {
		rec, n, ok := decodeWALRecord(data)
		if !ok {
			return recs, len(data)
		}
		recs = append(recs, rec)
		data = data[n:]
	}
	return recs, 0
}

func decodeWALRecord(data []byte) (walRecord, int, bool) {
	var rec walRecord
	if len(data) < 12 || string(data[:4]) != walMagic {
		return rec, 0, false
	}
	n := int(binary.BigEndian.Uint32(data[4:]))
	if len(data)-12 < n {
		return rec, 0, false
	}
	p := data[12 : 12+n]
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(data[8:]) {
		return rec, 0, false
	}
	r := bytes.NewReader(p)
	var bl uint16
	if binary.Read(r, binary.BigEndian, &bl) != nil {
		return rec, 0, false
	}
	b := make([]byte, bl)
	var count uint32
	if _, err := io.ReadFull(r, b); err != nil {
		return rec, 0, false
	}
	rec.branch = string(b)
	if _, err := io.ReadFull(r, rec.old[:]); err != nil {
		return rec, 0, false
	}
	if _, err := io.ReadFull(r, rec.new[:]); err != nil {
		return rec, 0, false
	}
	if binary.Read(r, binary.BigEndian, &count) != nil {
		return rec, 0, false
	}
	for i := uint32(0); i < count; i++ {
		t, err := r.ReadByte()
		var l uint32
		if err != nil || binary.Read(r, binary.BigEndian, &l) != nil || int64(l) > int64(r.Len()) {
			return rec, 0, false
		}
		content := make([]byte, l)
		io.ReadFull(r, content)
		rec.objects = append(rec.objects, memObject(plumbing.ObjectType(t), content))
	}
	if r.Len() != 0 {
		return rec, 0, false
	}
	return rec, 12 + n, true
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
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(data) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: commit log: %w", err)
	}
	recs, dropped := readWAL(data)
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
	defer w.f.Close()
	return w.reset()
}
