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

// objWriter writes loose objects durably in two phases. Queued objects are
// written to temporary files and synced in parallel (which lets the
// filesystem batch the syncs into few journal commits); wait then renames
// them into objects/xx/ in the order they were queued, and syncs the
// directories that gained entries. Callers queue an object's contents before
// the object, so an object in the repository always has what it refers to.
type objWriter struct {
	s     *Store
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	files []*stagedObject
	err   error
}

type stagedObject struct {
	tmp, dir, final string
	done            bool // nothing to rename: the object was already there
	newDir          bool // dir was created for it
}

func (s *Store) newObjWriter() *objWriter {
	return &objWriter{s: s, sem: make(chan struct{}, 4*runtime.GOMAXPROCS(0))}
}

// write queues obj. Objects already in the repository are skipped.
func (w *objWriter) write(obj plumbing.EncodedObject) {
	obj.Hash() // computed (and cached by MemoryObject) before sharing obj
	so := &stagedObject{}
	w.mu.Lock()
	w.files = append(w.files, so)
	w.mu.Unlock()
	w.wg.Add(1)
	w.sem <- struct{}{}
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		if err := w.s.stageLoose(obj, so, true); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}
	}()
}

// wait finishes the queued writes: renames, then directory syncs.
func (w *objWriter) wait() error {
	w.wg.Wait()
	if w.err != nil {
		for _, so := range w.files {
			if so.tmp != "" && !so.done {
				os.Remove(so.tmp)
			}
		}
		return w.err
	}
	dirs := map[string]bool{}
	objects := filepath.Join(w.s.path, "objects")
	for _, so := range w.files {
		if so.done {
			continue
		}
		if so.newDir {
			dirs[objects] = true
		}
		if err := os.Rename(so.tmp, so.final); err != nil {
			return fmt.Errorf("store: write object: %w", err)
		}
		so.done = true
		dirs[so.dir] = true
	}
	if w.s.opts.noSync {
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(dirs))
	for d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := syncDir(d); err != nil {
				errs <- fmt.Errorf("store: sync %s: %w", d, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// writeLoose writes one loose object at once: staged, synced and renamed
// into place. It returns the directories whose entries changed, which the
// caller must sync before anything refers to the object durably.
func (s *Store) writeLoose(obj plumbing.EncodedObject) (dirs []string, wrote bool, err error) {
	so := &stagedObject{}
	if err := s.stageLoose(obj, so, true); err != nil {
		if so.tmp != "" {
			os.Remove(so.tmp)
		}
		return nil, false, err
	}
	if so.done {
		return nil, false, nil
	}
	if err := os.Rename(so.tmp, so.final); err != nil {
		os.Remove(so.tmp)
		return nil, false, fmt.Errorf("store: write object: %w", err)
	}
	dirs = []string{so.dir}
	if so.newDir {
		dirs = append(dirs, filepath.Join(s.path, "objects"))
	}
	return dirs, true, nil
}

// stageLoose writes obj to a temporary file, synced if sync is set, unless
// it exists.
func (s *Store) stageLoose(obj plumbing.EncodedObject, so *stagedObject, sync bool) (err error) {
	h := obj.Hash().String()
	so.dir = filepath.Join(s.path, "objects", h[:2])
	so.final = filepath.Join(so.dir, h[2:])
	if fi, err := os.Stat(so.final); err == nil && fi.Size() > 0 {
		so.done = true
		return nil
	}
	// The temporary file goes beside its final name, as git's own
	// tmp_obj_ files do (git fsck ignores them), so that parallel writers
	// do not all contend for one directory.
	if err := os.Mkdir(so.dir, 0o755); err == nil {
		so.newDir = true
	} else if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	f, err := os.CreateTemp(so.dir, "tmp_obj_")
	if err != nil {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	so.tmp = f.Name()
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	ow := objfile.NewWriter(f)
	if err := ow.WriteHeader(obj.Type(), obj.Size()); err != nil {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	r, err := obj.Reader()
	if err != nil {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	_, err = io.Copy(ow, r)
	r.Close()
	if err == nil {
		err = ow.Close()
	}
	if err != nil {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	if sync && !s.opts.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("store: sync object %s: %w", h, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("store: write object %s: %w", h, err)
	}
	return os.Chmod(so.tmp, 0o444)
}

// writeRef points the reference name at h: a temporary file is written and
// synced, renamed over the reference, and the directory is synced.
func (s *Store) writeRef(name plumbing.ReferenceName, h Hash) error {
	return s.writeFileAtomic(filepath.Join(s.path, filepath.FromSlash(name.String())), []byte(h.String()+"\n"), true)
}

// writeFileAtomic replaces the file at path with data, durably if sync is
// set (else only atomically, for readers).
func (s *Store) writeFileAtomic(path string, data []byte, sync bool) (err error) {
	sync = sync && !s.opts.noSync
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
	if sync {
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
	if !sync {
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

// dataObject is an object held in memory whose hash is known (computed
// once, when it was put): a MemoryObject would hash its content again.
type dataObject struct {
	t    plumbing.ObjectType
	h    Hash
	data []byte
}

var _ plumbing.EncodedObject = (*dataObject)(nil)

func (o *dataObject) Hash() Hash                  { return o.h }
func (o *dataObject) Type() plumbing.ObjectType   { return o.t }
func (o *dataObject) SetType(plumbing.ObjectType) {}
func (o *dataObject) Size() int64                 { return int64(len(o.data)) }
func (o *dataObject) SetSize(int64)               {}
func (o *dataObject) Reader() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(o.data)), nil
}
func (o *dataObject) Writer() (io.WriteCloser, error) {
	return nil, errors.New("store: object is read-only")
}

// memObject builds an in-memory object of type t holding data.
func memObject(t plumbing.ObjectType, data []byte) *plumbing.MemoryObject {
	o := &plumbing.MemoryObject{}
	o.SetType(t)
	o.Write(data)
	return o
}

// readAll reads a whole object's content.
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
