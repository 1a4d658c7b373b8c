package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
)

// Large blobs (a 45 MB mail message) go through the store without being
// held in memory: a caller receives the content into a Spool (a temporary
// file on the store's own file system, unlinked at once, so that a crash
// leaves nothing behind), and Tx.PutBlobSpool hashes it from the file. The
// commit log streams the blob from the spool into its record (wal.go);
// after the log is synced, the pending commit (pending.go) refers to the
// blob's bytes in the log itself, which the background writer streams
// into the batch's pack. Every copy is a stream through a small buffer:
// a blob costs the same memory whatever its size. A spool holds its first
// spoolMem bytes in memory and makes its file only when the content grows
// past them: most mail is smaller, and a file made, unlinked and closed
// for each message was a tenth of an APPEND's CPU.

// streamThreshold: objects larger than this are read back from the commit
// log instead of being kept in memory until their pack is written.
const streamThreshold = 64 << 10

// spoolMem is how much of its content a Spool holds in memory before it
// moves it to its file: no more than the commit log keeps in memory of an
// object anyway (streamThreshold).
const spoolMem = 32 << 10

// spoolCheckEvery is how many bytes a Spool writes between checks of the
// free space.
const spoolCheckEvery = 4 << 20

// Spool is a temporary file on the store's file system that receives a
// large blob (see NewSpool). Write the content, then hand it to
// Tx.PutBlobSpool; Close it once Update has returned. A Spool is not safe
// for concurrent use.
type Spool struct {
	s       *Store
	mem     []byte   // the content while it is at most spoolMem
	f       *os.File // the content once it is larger (mem nil then)
	closed  bool
	sum     *Hash // the content's blob hash, once BlobHash computed it
	n       int64
	checked int64 // n at the last check of the free space
	sealed  bool
	err     error
}

// NewSpool makes an empty Spool. Its file, made once the content outgrows
// spoolMem, is unlinked at once: it takes space on the data disk only
// while it is open, and never outlives the process.
func (s *Store) NewSpool() (*Spool, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if err := s.CheckSpace(0); err != nil {
		return nil, err
	}
	return &Spool{s: s}, nil
}

// spill moves the content held in memory to the spool's file, made now.
func (sp *Spool) spill() error {
	f, err := os.CreateTemp(filepath.Join(sp.s.path, tmpDir), "spool-")
	if err != nil {
		return err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(sp.mem); err != nil {
		f.Close()
		return err
	}
	sp.f, sp.mem = f, nil
	return nil
}

// Write appends p to the spool. It fails with ErrNoSpace once the free
// space on the store's file system falls below the reserve (Options), and
// then keeps failing.
func (sp *Spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if sp.sealed {
		return 0, errors.New("store: spool: written after PutBlobSpool")
	}
	if sp.n+int64(len(p))-sp.checked >= spoolCheckEvery {
		if err := sp.s.CheckSpace(int64(len(p))); err != nil {
			sp.err = err
			return 0, err
		}
		sp.checked = sp.n
	}
	if sp.closed {
		return 0, errors.New("store: spool: closed")
	}
	sp.sum = nil
	if sp.f == nil {
		if sp.n+int64(len(p)) <= spoolMem {
			sp.mem = append(sp.mem, p...)
			sp.n += int64(len(p))
			return len(p), nil
		}
		if err := sp.spill(); err != nil {
			sp.err = fmt.Errorf("store: spool: %w", err)
			return 0, sp.err
		}
	}
	n, err := sp.f.Write(p)
	sp.n += int64(n)
	if err != nil {
		sp.err = fmt.Errorf("store: spool: %w", err)
		return n, sp.err
	}
	return n, nil
}

// Size is the number of bytes written.
func (sp *Spool) Size() int64 { return sp.n }

// ReadAt reads the spooled content at off.
func (sp *Spool) ReadAt(p []byte, off int64) (int, error) {
	if off >= sp.n {
		return 0, io.EOF
	}
	if sp.f == nil {
		if sp.closed {
			return 0, errors.New("store: spool: closed")
		}
		n := copy(p, sp.mem[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	if rest := sp.n - off; int64(len(p)) > rest {
		n, err := sp.f.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return sp.f.ReadAt(p, off)
}

// Reader reads the spooled content from the start (each call a new
// reader).
func (sp *Spool) Reader() io.Reader { return io.NewSectionReader(sp, 0, sp.n) }

// BlobHash is the hash the spool's content has as a blob (BlobHash of it),
// read from the file.
func (sp *Spool) BlobHash() (Hash, error) {
	if sp.sum != nil {
		return *sp.sum, nil
	}
	hs := plumbing.NewHasher(plumbing.BlobObject, sp.n)
	if _, err := copyBuffered(hs, sp.Reader()); err != nil {
		return Hash{}, fmt.Errorf("store: spool: %w", err)
	}
	h := hs.Sum()
	sp.sum = &h
	return h, nil
}

// Close releases the spool's file (and its space on the disk).
func (sp *Spool) Close() error {
	sp.closed, sp.mem = true, nil
	if sp.f == nil {
		return nil
	}
	err := sp.f.Close()
	sp.f = nil
	return err
}

// PutBlobSpool stores the content of sp at path, as PutBlob does, without
// reading it into memory, and returns the blob's hash. It checks that the
// blob fits above the reserve (ErrNoSpace). sp must stay open until Update
// returns, and must not be written to any more.
func (tx *Tx) PutBlobSpool(path string, sp *Spool) (Hash, error) {
	if err := ValidatePath(path); err != nil {
		return Hash{}, err
	}
	if sp.err != nil {
		return Hash{}, sp.err
	}
	if sp.closed {
		return Hash{}, errors.New("store: spool: closed")
	}
	// The blob is written twice more (the commit log and a pack) before
	// the log is emptied.
	if err := tx.s.CheckSpace(2 * sp.n); err != nil {
		return Hash{}, err
	}
	if sp.f == nil {
		// Held in memory: a blob like any other (its bytes are the
		// transaction's now).
		sp.sealed = true
		h, err := sp.BlobHash() // (once: the caller may have asked for it)
		if err != nil {
			return Hash{}, err
		}
		tx.changes[path] = change{hash: h, data: sp.mem}
		return h, nil
	}
	sp.sealed = true
	h, err := sp.BlobHash()
	if err != nil {
		return Hash{}, err
	}
	tx.changes[path] = change{hash: h, obj: &streamObject{t: plumbing.BlobObject, h: h, size: sp.n, r: sp}}
	return h, nil
}

// streamObject is an object whose content is read from a file when needed
// (a Spool, or the commit log) instead of being held in memory. Its hash
// was computed from that content.
type streamObject struct {
	t    plumbing.ObjectType
	h    Hash
	size int64
	r    io.ReaderAt
	off  int64
	// In the commit log: the log's generation when the record was
	// written. When the log is emptied (gen moves on), the content is in
	// a pack, and reading it here answers "not found" so that the reader
	// retries there.
	gen *atomic.Uint64
	at  uint64
}

var _ plumbing.EncodedObject = (*streamObject)(nil)

func (o *streamObject) Hash() Hash                  { return o.h }
func (o *streamObject) Type() plumbing.ObjectType   { return o.t }
func (o *streamObject) SetType(plumbing.ObjectType) {}
func (o *streamObject) Size() int64                 { return o.size }
func (o *streamObject) SetSize(int64)               {}
func (o *streamObject) Writer() (io.WriteCloser, error) {
	return nil, errors.New("store: object is read-only")
}

func (o *streamObject) Reader() (io.ReadCloser, error) {
	if err := o.stale(); err != nil {
		return nil, err
	}
	return &streamReader{o: o, r: io.NewSectionReader(o.r, o.off, o.size)}, nil
}

func (o *streamObject) stale() error {
	if o.gen != nil && o.gen.Load() != o.at {
		return fmt.Errorf("object %s: the commit log was emptied: %w", o.h, plumbing.ErrObjectNotFound)
	}
	return nil
}

// streamReader checks at its end that it read the whole object from a
// commit log that was not emptied meanwhile.
type streamReader struct {
	o *streamObject
	r *io.SectionReader
	n int64
}

func (r *streamReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil {
		// The log emptied meanwhile (its old file closed after a
		// checkpoint, wal.reset, or cut short).
		if serr := r.o.stale(); serr != nil {
			return n, serr
		}
	}
	if err == io.EOF {
		if r.n != r.o.size {
			return n, fmt.Errorf("object %s: %d of %d bytes: %w", r.o.h, r.n, r.o.size, io.ErrUnexpectedEOF)
		}
	}
	return n, err
}

func (r *streamReader) Close() error { return nil }
