// Package localjson is the LocalJson storage backend: one JSON file per
// namespace, in the exact format of upstream Trustee and the
// trustee-operator.
//
// # Layout
//
// Namespace ns is the file <file_dir_path>/<ns> (no extension) holding one
// JSON object that maps each key to the base64 encoding, URL-safe alphabet
// with padding, of its value:
//
//	{"svn":"eyJuYW1lIjoic3ZuIiwidmFsdWUiOjF9"}
//
// A missing file is an empty namespace. When reading, values in the standard
// alphabet or without padding (as a hand-written file may hold) are accepted
// too; writes always use URL-safe padded base64, and entries a write does not
// touch are kept byte for byte.
//
// # Invariants
//
//   - Every change rewrites the whole file: a temporary file in the same
//     directory (named with fsutil.TempPrefix, which no namespace can
//     produce) is written and fsynced, renamed over the namespace file, and
//     the directory is fsynced. Readers never see a partial file and need no
//     lock.
//   - Writers of one namespace are serialized, across goroutines, Store
//     instances and processes, by flock(2) on <file_dir_path>/.~<ns>.lock —
//     a name no namespace can have, since '~' is outside the charset. The
//     lock covers the read-modify-write, so no update is lost and
//     insert-if-absent is atomic.
//   - A namespace file is read only up to MaxFileSize bytes.
//   - A Set or Delete waiting for the lock does not observe its context:
//     the lock is held only for one small read-modify-write.
package localjson

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/internal/fsutil"
)

// DefaultFileDirPath is upstream's default file_dir_path.
const DefaultFileDirPath = "/opt/confidential-containers/storage/local_json"

// MaxFileSize bounds a namespace file: room for one value of
// storage.MaxValueSize in base64 plus many small ones.
const MaxFileSize = limits.MaxLocalJSONFileBytes

// maxNameLen is the longest file name Linux file systems accept.
const maxNameLen = 255

// ErrMalformed is returned when a namespace file or one of its values cannot
// be decoded.
var ErrMalformed = errors.New("localjson: malformed namespace file")

// Config is [storage_backend.backends.local_json] of the KBS configuration.
type Config struct {
	// FileDirPath is the directory holding one file per namespace. Empty
	// means DefaultFileDirPath.
	FileDirPath string `toml:"file_dir_path" json:"file_dir_path"`
}

// DefaultConfig returns upstream's defaults.
func DefaultConfig() Config { return Config{FileDirPath: DefaultFileDirPath} }

// Options tunes a Store; the zero value gives production defaults.
type Options struct {
	// Now is the clock used to age leftover temporary files; nil means
	// time.Now.
	Now func() time.Time
	// StaleTempAge is the age past which Open removes a leftover temporary
	// file; zero means fsutil.DefaultStaleTempAge.
	StaleTempAge time.Duration
}

// Store is a storage.Store on a directory of JSON files.
type Store struct {
	dir string
	// beforePublish, set only by this package's crash tests, runs
	// after the new file is durable and before it is renamed
	// into place.
	beforePublish func()
}

var _ storage.Store = (*Store)(nil)

// Open creates cfg's directory if needed, removes stale temporary files from
// it and returns a Store on it.
func Open(cfg Config, opts Options) (*Store, error) {
	dir := cfg.FileDirPath
	if dir == "" {
		dir = DefaultFileDirPath
	}
	cutoff, err := fsutil.OpenDir("local_json", dir, opts.Now, opts.StaleTempAge)
	if err != nil {
		return nil, err
	}
	fsutil.RemoveStaleTemps(dir, cutoff)
	return &Store{dir: dir}, nil
}

// Dir returns the directory the Store works in.
func (s *Store) Dir() string { return s.dir }

func (s *Store) nsFile(ns string) (string, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return "", err
	}
	if len(lockName(ns)) > maxNameLen {
		return "", fmt.Errorf("%w: namespace %q too long", storage.ErrInvalidKey, ns)
	}
	return filepath.Join(s.dir, ns), nil
}

func lockName(ns string) string { return ".~" + ns + ".lock" }

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return false, err
	}
	file, err := s.nsFile(ns)
	if err != nil {
		return false, err
	}
	if len(value) > storage.MaxValueSize {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var inserted bool
	err = s.update(ns, file, func(items map[string]string) bool {
		if _, ok := items[key]; ok && !overwrite {
			return false
		}
		items[key] = EncodeValue(value)
		inserted = true
		return true
	})
	if err != nil {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
	}
	return inserted, nil
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return nil, err
	}
	file, err := s.nsFile(ns)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	items, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, err)
	}
	enc, ok := items[key]
	if !ok {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	v, err := DecodeValue(enc)
	if err != nil {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, err)
	}
	return v, nil
}

// List implements storage.Store. Entries of a hand-written file whose keys
// are not valid keys are not listed (they cannot be read either).
func (s *Store) List(ctx context.Context, ns string) ([]string, error) {
	file, err := s.nsFile(ns)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	items, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", ns, err)
	}
	keys := make([]string, 0, len(items))
	for k := range items {
		if storage.ValidateKey(ns, k) == nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, ns, key string) error {
	if err := storage.ValidateKey(ns, key); err != nil {
		return err
	}
	file, err := s.nsFile(ns)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var found bool
	err = s.update(ns, file, func(items map[string]string) bool {
		if _, found = items[key]; found {
			delete(items, key)
		}
		return found
	})
	if err != nil {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, err)
	}
	if !found {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	return nil
}

// Close implements storage.Store; a Store holds no open resources.
func (s *Store) Close() error { return nil }

// update runs change on the namespace's items under the namespace's
// exclusive lock and, if change reports a modification, durably replaces
// the file.
func (s *Store) update(ns, file string, change func(map[string]string) bool) error {
	unlock, err := s.lock(ns)
	if err != nil {
		return err
	}
	defer unlock()
	items, err := readFile(file)
	if err != nil {
		return err
	}
	if !change(items) {
		return nil
	}
	data, err := EncodeFile(items)
	if err != nil {
		return err
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("namespace file would be %d bytes, over %d: %w", len(data), MaxFileSize, storage.ErrValueTooLarge)
	}
	tmp, err := fsutil.WriteTemp(s.dir, data)
	if err != nil {
		return err
	}
	if s.beforePublish != nil {
		s.beforePublish()
	}
	if err := os.Rename(tmp, file); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("publishing namespace file: %w", err)
	}
	return fsutil.SyncDir(s.dir)
}

// lock takes the exclusive flock of namespace ns. Each call opens its own
// descriptor, so the lock also serializes goroutines of one process and
// Stores sharing a directory.
func (s *Store) lock(ns string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockName(ns)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking namespace file: %w", err)
	}
	// Closing the descriptor releases the lock.
	return func() { _ = f.Close() }, nil
}

// readFile reads and decodes a namespace file; a missing one is empty.
func readFile(file string) (map[string]string, error) {
	data, err := fsutil.ReadFileLimit(file, MaxFileSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[string]string{}, nil
		}
		if errors.Is(err, fsutil.ErrTooLarge) {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("reading namespace file: %w", err)
	}
	items, err := DecodeFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return items, nil
}

// DecodeFile parses the content of a namespace file into its entries, key to
// still-encoded value. An empty (or all-blank) file is an empty namespace;
// anything but one JSON object of strings is ErrMalformed. It never decodes
// more than len(data) bytes, which callers bound.
func DecodeFile(data []byte) (map[string]string, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return map[string]string{}, nil
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var items map[string]string
	if err := json.Unmarshal(trimmed, &items); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if items == nil {
		items = map[string]string{}
	}
	return items, nil
}

// EncodeFile renders entries (key to encoded value) as a namespace file:
// one compact JSON object with sorted keys.
func EncodeFile(items map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(items); err != nil {
		return nil, fmt.Errorf("encoding namespace file: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeValue decodes one stored value: base64, URL-safe alphabet with
// padding as upstream writes it, or the standard alphabet or no padding as
// hand-written files may use.
func DecodeValue(enc string) ([]byte, error) {
	for _, e := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		if v, err := e.DecodeString(enc); err == nil {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%w: value is not base64", ErrMalformed)
}

// EncodeValue encodes one value as upstream does: base64, URL-safe alphabet,
// padded.
func EncodeValue(v []byte) string { return base64.URLEncoding.EncodeToString(v) }
