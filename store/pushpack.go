package store

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// maxSharedPack is the largest push pack kept in memory, for the next peer
// that lacks the same objects (a replica pushes each new head to every
// peer): 4 MiB on a host, a thirty-second of the memory limit in an
// appliance (at least 64 KiB; read at each push, as an appliance sets its
// limit at boot: 800 KiB in a 64 MiB VM). A larger pack is written to a
// temporary file, used once and removed. A node taking a steady stream
// of APPENDs pushes a few hundred KB every 50–100 ms: with 256 KiB here,
// most of them went through files (4–5 KB written to disk per APPEND of
// 150 bytes, a fifth of what the node wrote).
var maxSharedPack = 4 << 20

// pushPacks holds the last pack built for a push, by the objects it holds:
// a push to each peer of the same new head lists the same objects, and the
// second gets the bytes the first built. Builds are serialized, so that
// pushes to several peers at once build the pack once (and compress each
// pending object once, see packEntry) instead of each racing the other.
type pushPacks struct {
	mu   sync.Mutex
	key  Hash   // of the object list of body
	body []byte // nil when none is kept
}

// listKey names a list of objects.
func listKey(hs []Hash) Hash {
	d := sha1.New()
	for _, h := range hs {
		d.Write(h[:])
	}
	var k Hash
	copy(k[:], d.Sum(nil))
	return k
}

// pushPack returns a pack of the objects hs (encodePack) to send: the last
// one built if it holds the same objects, else a new one, kept in memory
// when small and in a temporary file in the store otherwise (no lock is
// held and no large pack held in memory while the network waits). The
// caller closes it.
func (s *Store) pushPack(hs []Hash) (io.ReadCloser, error) {
	key := listKey(hs)
	pp := &s.pushPacks
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.body != nil && pp.key == key {
		return io.NopCloser(bytes.NewReader(pp.body)), nil
	}
	sw := &spillWriter{dir: filepath.Join(s.path, tmpDir), max: int(underMemoryLimit(int64(maxSharedPack), 64<<10, 32))}
	// (encodePack's packWriter buffers what it writes.)
	if err := s.encodePack(sw, hs); err != nil {
		sw.discard()
		return nil, err
	}
	if sw.f == nil {
		pp.key, pp.body = key, sw.buf.Bytes()
		return io.NopCloser(bytes.NewReader(pp.body)), nil
	}
	pp.body = nil
	return sw.reader()
}

// spillWriter holds what is written in memory up to max bytes, then moves
// it to a temporary file in dir and writes on there.
type spillWriter struct {
	dir string
	max int
	buf bytes.Buffer
	f   *os.File
}

func (w *spillWriter) Write(p []byte) (int, error) {
	if w.f == nil && w.buf.Len()+len(p) <= w.max {
		return w.buf.Write(p)
	}
	if w.f == nil {
		f, err := os.CreateTemp(w.dir, "push-")
		if err != nil {
			return 0, err
		}
		w.f = f
		if _, err := f.Write(w.buf.Bytes()); err != nil {
			return 0, err
		}
		w.buf = bytes.Buffer{}
	}
	return w.f.Write(p)
}

// discard removes the temporary file, if any.
func (w *spillWriter) discard() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// reader reads the file from its start; closing it removes the file.
func (w *spillWriter) reader() (io.ReadCloser, error) {
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		w.discard()
		return nil, err
	}
	return &tempReader{Reader: bufio.NewReaderSize(w.f, 64<<10), w: w}, nil
}

type tempReader struct {
	*bufio.Reader
	w *spillWriter
}

func (r *tempReader) Close() error {
	r.w.discard()
	return nil
}
