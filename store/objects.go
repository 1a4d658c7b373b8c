package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/objfile"
)

const (
	// tmpDir holds files being written before they are renamed into place.
	// It is outside objects/ so that git fsck never sees a half-written file.
	tmpDir = "nymote-tmp"
	// lockName is the file that writers flock.
	lockName = "nymote.lock"
)

// objWriter writes loose objects durably: each file is synced before it is
// renamed into objects/xx/, and wait syncs the directories that gained
// entries. Writes run in parallel, which lets the filesystem batch the
// syncs into fewer journal commits.
type objWriter struct {
	s    *Store
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	dirs map[string]bool
	err  error
	n    int
}

func (s *Store) newObjWriter() *objWriter {
	return &objWriter{s: s, sem: make(chan struct{}, 4*runtime.GOMAXPROCS(0)), dirs: map[string]bool{}}
}

// write queues obj for writing. Objects already in the repository are
// skipped.
func (w *objWriter) write(obj plumbing.EncodedObject) {
	w.wg.Add(1)
	w.sem <- struct{}{}
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		dirs, wrote, err := w.s.writeLoose(obj)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil && w.err == nil {
			w.err = err
		}
		if wrote {
			w.n++
		}
		for _, d := range dirs {
			w.dirs[d] = true
		}
	}()
}

// wait waits for the queued writes and syncs the directories they touched.
func (w *objWriter) wait() error {
	w.wg.Wait()
	if w.err != nil {
		return w.err
	}
	if w.s.opts.noSync {
		return nil
	}
	for d := range w.dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("store: sync %s: %w", d, err)
		}
	}
	return nil
}

// writeLoose writes one loose object. It returns the directories whose
// entries changed and whether it wrote anything.
func (s *Store) writeLoose(obj plumbing.EncodedObject) (dirs []string, wrote bool, err error) {
	h := obj.Hash().String()
	dir := filepath.Join(s.path, "objects", h[:2])
	final := filepath.Join(dir, h[2:])
	if fi, err := os.Stat(final); err == nil && fi.Size() > 0 {
		return nil, false, nil
	}
	f, err := os.CreateTemp(filepath.Join(s.path, tmpDir), "obj-")
	if err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	ow := objfile.NewWriter(f)
	if err := ow.WriteHeader(obj.Type(), obj.Size()); err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	_, err = io.Copy(ow, r)
	r.Close()
	if err == nil {
		err = ow.Close()
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	if !s.opts.noSync {
		if err := f.Sync(); err != nil {
			return nil, false, fmt.Errorf("store: sync object %s: %w", h, err)
		}
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	if err := os.Chmod(tmp, 0o444); err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
		}
		dirs = append(dirs, filepath.Join(s.path, "objects"))
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, false, fmt.Errorf("store: write object %s: %w", h, err)
	}
	return append(dirs, dir), true, nil
}

// writeRef points the reference name at h: a temporary file is written and
// synced, renamed over the reference, and the directory is synced.
func (s *Store) writeRef(name plumbing.ReferenceName, h Hash) error {
	return s.writeFileAtomic(filepath.Join(s.path, filepath.FromSlash(name.String())), []byte(h.String()+"\n"))
}

// writeFileAtomic replaces the file at path with data, durably.
func (s *Store) writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Join(s.path, tmpDir), "file-")
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if !s.opts.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("store: sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	if s.opts.noSync {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncTree fsyncs every file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// cleanTmp removes temporary files left by a crash. Files younger than an
// hour may belong to another process that is writing now, so they stay.
func (s *Store) cleanTmp() {
	dir := filepath.Join(s.path, tmpDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// memObject builds an in-memory object of type t holding data.
func memObject(t plumbing.ObjectType, data []byte) *plumbing.MemoryObject {
	o := &plumbing.MemoryObject{}
	o.SetType(t)
	o.Write(data)
	return o
}

// readBlob reads a whole object's content.
func readAll(o plumbing.EncodedObject) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var b bytes.Buffer
	b.Grow(int(o.Size()))
	_, err = io.Copy(&b, r)
	return b.Bytes(), err
}
