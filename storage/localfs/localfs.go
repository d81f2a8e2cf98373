// Package localfs is the LocalFs storage backend: one file per key, in the
// exact on-disk layout of upstream Trustee and the trustee-operator.
//
// # Layout
//
// The value of key k in namespace ns is the raw content of the file
// <dir_path>/<ns>/<k with every "/" replaced by the four characters \x2F>.
// For example resource default/key/1 is <dir_path>/repository/default\x2Fkey\x2F1
// and the resource policy is <dir_path>/kbs/resource-policy.rego. Files placed
// there by other tools (an operator's init container, a mounted ConfigMap
// whose entries are symbolic links) are read like ours.
//
// # Invariants
//
//   - storage.ValidateKey runs before any path is built, and the encoded key
//     is a single path element other than "." and "..", so a key never
//     resolves outside <dir_path>/<ns>.
//   - Writes go to a temporary file in the namespace directory (named with
//     fsutil.TempPrefix, which no key can produce), which is fsynced, then
//     published by rename(2) (overwrite) or link(2) (insert-if-absent: the
//     kernel fails it with EEXIST if the key exists, atomically, across
//     processes), after which the directory is fsynced. Readers thus see
//     the old value or the new one, never a mix; a crash leaves the old
//     value and at most a stale temporary file, which List and Get ignore
//     and Open removes once it is older than Options.StaleTempAge.
//   - Delete is unlink(2) followed by a directory fsync.
//   - No state is kept in memory, so any number of Stores, in one process
//     or many, may share one directory.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/internal/fsutil"
)

// DefaultDirPath is upstream's default dir_path.
const DefaultDirPath = "/opt/confidential-containers/storage/local_fs"

// slashEscape is what every "/" of a key becomes in its file name.
const slashEscape = `\x2F`

// maxNameLen is the longest file name Linux file systems accept.
const maxNameLen = 255

// Config is [storage_backend.backends.local_fs] of the KBS configuration.
type Config struct {
	// DirPath is the directory holding one subdirectory per namespace.
	// Empty means DefaultDirPath.
	DirPath string `toml:"dir_path" json:"dir_path"`
}

// DefaultConfig returns upstream's defaults.
func DefaultConfig() Config { return Config{DirPath: DefaultDirPath} }

// Options tunes a Store; the zero value gives production defaults.
type Options struct {
	// Now is the clock used to age leftover temporary files; nil means
	// time.Now.
	Now func() time.Time
	// StaleTempAge is the age past which Open removes a leftover temporary
	// file; zero means fsutil.DefaultStaleTempAge.
	StaleTempAge time.Duration
}

// Store is a storage.Store on a local directory.
type Store struct {
	dir string
	// beforePublish, set only by this package's crash tests, runs
	// after the temporary file is durable and before it is
	// renamed or linked into place.
	beforePublish func()
}

var _ storage.Store = (*Store)(nil)

// Open creates cfg's directory if needed, removes stale temporary files
// from its namespace directories and returns a Store on it.
func Open(cfg Config, opts Options) (*Store, error) {
	dir := cfg.DirPath
	if dir == "" {
		dir = DefaultDirPath
	}
	cutoff, err := fsutil.OpenDir("local_fs", dir, opts.Now, opts.StaleTempAge)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() && storage.ValidateNamespace(e.Name()) == nil {
				fsutil.RemoveStaleTemps(filepath.Join(dir, e.Name()), cutoff)
			}
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the directory the Store works in.
func (s *Store) Dir() string { return s.dir }

// EncodeKey returns the file name of key: every "/" becomes \x2F.
func EncodeKey(key string) string { return strings.ReplaceAll(key, "/", slashEscape) }

// DecodeKey reverses EncodeKey for a file name; ok is false when name is a
// temporary file or not the encoding of any key. The key it returns still
// needs storage.ValidateKey.
func DecodeKey(name string) (key string, ok bool) {
	if fsutil.IsTemp(name) {
		return "", false
	}
	key = strings.ReplaceAll(name, slashEscape, "/")
	if EncodeKey(key) != name {
		return "", false
	}
	return key, true
}

// path validates (ns, key) and returns the namespace directory and the
// key's file path.
func (s *Store) path(ns, key string) (nsDir, file string, err error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return "", "", err
	}
	name := EncodeKey(key)
	if len(ns) > maxNameLen || len(name) > maxNameLen {
		return "", "", fmt.Errorf("%w: %s/%s: file name over %d bytes", storage.ErrInvalidKey, ns, key, maxNameLen)
	}
	nsDir = filepath.Join(s.dir, ns)
	return nsDir, filepath.Join(nsDir, name), nil
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	nsDir, file, err := s.path(ns, key)
	if err != nil {
		return false, err
	}
	if len(value) > storage.MaxValueSize {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	inserted, err := s.set(nsDir, file, value, overwrite)
	if err != nil {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
	}
	return inserted, nil
}

func (s *Store) set(nsDir, file string, value []byte, overwrite bool) (bool, error) {
	if err := fsutil.MkdirDurable(nsDir); err != nil {
		return false, err
	}
	tmp, err := fsutil.WriteTemp(nsDir, value)
	if err != nil {
		return false, err
	}
	if s.beforePublish != nil {
		s.beforePublish()
	}
	if overwrite {
		if err := os.Rename(tmp, file); err != nil {
			_ = os.Remove(tmp)
			return false, fmt.Errorf("publishing: %w", err)
		}
	} else {
		err := publishExclusive(tmp, file)
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("publishing: %w", err)
		}
	}
	if err := fsutil.SyncDir(nsDir); err != nil {
		return false, err
	}
	return true, nil
}

// publishExclusive makes tmp appear under the name file unless file exists,
// atomically, and removes the name tmp. It uses link(2), and
// renameat2(RENAME_NOREPLACE) on file systems without hard links. An
// existing file gives an error matching fs.ErrExist.
func publishExclusive(tmp, file string) error {
	err := os.Link(tmp, file)
	if err == nil || errors.Is(err, fs.ErrExist) {
		// Published or refused, the temporary name goes. Should removing it
		// fail, it is only litter that Open cleans.
		_ = os.Remove(tmp)
		return err
	}
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOTSUP) &&
		!errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.EMLINK) {
		_ = os.Remove(tmp)
		return err
	}
	if rerr := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, file, unix.RENAME_NOREPLACE); rerr != nil {
		_ = os.Remove(tmp)
		if errors.Is(rerr, syscall.EEXIST) {
			return &fs.PathError{Op: "renameat2", Path: file, Err: syscall.EEXIST}
		}
		return fmt.Errorf("link: %w; renameat2: %w", err, rerr)
	}
	return nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	_, file, err := s.path(ns, key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := fsutil.ReadFileLimit(file, storage.MaxValueSize)
	switch {
	case err == nil:
		return v, nil
	case isMissing(err):
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrNotFound)
	case errors.Is(err, fsutil.ErrTooLarge):
		return nil, fmt.Errorf("getting %s/%s: %w: %w", ns, key, storage.ErrValueTooLarge, err)
	default:
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, err)
	}
}

// isMissing reports whether err from a path operation means "no such key":
// the file is absent, the namespace is not a directory, or the name is a
// directory (such as a ConfigMap mount's ..data), which is never a key.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

// List implements storage.Store. It lists the regular files (or symbolic
// links to regular files) whose names decode to valid keys.
func (s *Store) List(ctx context.Context, ns string) ([]string, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	nsDir := filepath.Join(s.dir, ns)
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		if isMissing(err) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("listing %s: %w", ns, err)
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		key, ok := DecodeKey(e.Name())
		if !ok || storage.ValidateKey(ns, key) != nil {
			continue
		}
		switch t := e.Type(); {
		case t.IsRegular():
		case t&fs.ModeSymlink != 0:
			fi, err := os.Stat(filepath.Join(nsDir, e.Name()))
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
		default:
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, ns, key string) error {
	nsDir, file, err := s.path(ns, key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Only what List would show is a key: not a directory, nor a symbolic
	// link to one (a ConfigMap mount's ..data).
	fi, err := os.Stat(file)
	if err == nil && !fi.Mode().IsRegular() {
		err = syscall.EISDIR
	}
	if err == nil {
		// unlink(2), not os.Remove: that falls back to rmdir(2).
		err = syscall.Unlink(file)
	}
	if err != nil {
		if isMissing(err) {
			return fmt.Errorf("deleting %s/%s: %w", ns, key, storage.ErrNotFound)
		}
		return fmt.Errorf("deleting %s/%s: %w", ns, key, err)
	}
	if err := fsutil.SyncDir(nsDir); err != nil {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, err)
	}
	return nil
}

// Close implements storage.Store; a Store holds no open resources.
func (s *Store) Close() error { return nil }
