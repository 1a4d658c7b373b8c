package kernel

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Module is a loadable kernel module picked for an image.
type Module struct {
	// Name is the module's name (dashes as underscores).
	Name string
	// Path is the .ko file, relative to the modules folder
	// (kernel/drivers/...).
	Path string
	// Depends are the names of the modules it needs loaded first.
	Depends []string
}

// ModInfo reads the key=value pairs of a .ko file's .modinfo section.
// Keys that repeat (alias, parm) keep their last value.
func ModInfo(path string) (map[string]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel: modinfo %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel: modinfo %s: no .modinfo section", path)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kernel: modinfo %s: %w", path, err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			info[k] = v
		}
	}
	return info, nil
}

func modName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// ResolveModules returns the modules named (and the modules they depend
// on, read from each .ko's modinfo "depends="), dependencies first, from
// the modules folder dir (lib/modules/RELEASE). Names of modules built into
// the kernel (modules.builtin) are skipped; a name that is neither is an
// error.
func ResolveModules(dir string, names []string) ([]Module, error) {
	if len(names) == 0 {
		return nil, nil
	}
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			rel, _ := filepath.Rel(dir, p)
			index[modName(p)] = rel
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("kernel: modules: %w", err)
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			builtin[modName(sc.Text())] = true
		}
		f.Close()
	}
	var out []Module
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = modName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("kernel: modules: dependency cycle through %s", name)
		case 2:
			return nil
		}
		rel, ok := index[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("kernel: module %s (needed by %s) not found in %s", name, from, dir)
			}
			return fmt.Errorf("kernel: module %s not found in %s (neither a .ko nor built in)", name, dir)
		}
		state[name] = 1
		info, err := ModInfo(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		var deps []string
		for _, d := range strings.Split(info["depends"], ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, modName(d))
				if err := visit(d, name); err != nil {
					return err
				}
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: rel, Depends: deps})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ModulesDep renders modules as a modules.dep file (one line per module:
// "PATH: DEP-PATH ..."), as kmodule and modprobe read it.
func ModulesDep(mods []Module) []byte {
	paths := map[string]string{}
	for _, m := range mods {
		paths[m.Name] = m.Path
	}
	var b bytes.Buffer
	for _, m := range mods {
		b.WriteString(m.Path + ":")
		for _, d := range m.Depends {
			if p, ok := paths[d]; ok {
				b.WriteString(" " + p)
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
