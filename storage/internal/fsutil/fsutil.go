// Package fsutil holds the durable-write primitives shared by the file
// backends (localfs, localjson).
//
// Invariants: a temporary file is always created in the directory of its
// final name (so rename and link stay on one file system), is named with
// TempPrefix — which contains '~', a character outside the key and
// namespace charset, so a temporary file can never be mistaken for a key or
// a namespace file — and is fsynced before it is published. Publishing is
// followed by an fsync of the directory, so a rename, link or unlink that
// returned is durable.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// TempPrefix starts the name of every temporary file. It begins with '.' so
// that ordinary directory listings hide it and contains '~', which no valid
// key or namespace contains.
const TempPrefix = ".~tmp-"

// DefaultStaleTempAge is how old a leftover temporary file must be before
// Open removes it. A writer in another process holds its temporary file for
// at most the time it takes to write one value, far less than this.
const DefaultStaleTempAge = 15 * time.Minute

// ErrTooLarge is returned by ReadFileLimit for a file over its limit.
var ErrTooLarge = errors.New("fsutil: file too large")

// IsTemp reports whether name (a base name) is a temporary file.
func IsTemp(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// WriteTemp creates a temporary file in dir with mode 0600, writes data to it
// and fsyncs it. It returns the file's full path; on error nothing is left
// behind.
func WriteTemp(dir string, data []byte) (path string, err error) {
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("creating temporary file: %w", err)
	}
	// name, not the named result: every failing return below sets path
	// to "" before this runs, and the partial file must still go (a full
	// disk would otherwise stay full).
	name := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(name)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", fmt.Errorf("writing temporary file: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("syncing temporary file: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("closing temporary file: %w", err)
	}
	return name, nil
}

// SyncDir fsyncs the directory dir, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// MkdirDurable creates dir (mode 0700) if it does not exist and, if it
// created it, fsyncs its parent. The parent must exist.
func MkdirDurable(dir string) error {
	err := os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		return SyncDir(filepath.Dir(dir))
	case errors.Is(err, fs.ErrExist):
		return nil
	default:
		return fmt.Errorf("creating directory: %w", err)
	}
}

// ReadFileLimit reads the file at path, following symbolic links, refusing
// more than limit bytes. A directory gives an error matching
// syscall.EISDIR.
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes over limit %d: %w", path, fi.Size(), limit, ErrTooLarge)
	}
	// The file may grow while we read it (someone appending in place): read
	// at most limit+1 bytes and check again.
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: over limit %d: %w", path, limit, ErrTooLarge)
	}
	return buf.Bytes(), nil
}

// RemoveStaleTemps removes the temporary files in dir last modified before
// cutoff. It is best effort: a read-only directory or a file removed
// concurrently is not an error worth failing for, so it reports nothing.
func RemoveStaleTemps(dir string, cutoff time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !IsTemp(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
}

// OpenDir is the common start of a file backend's Open: it creates dir
// (0700) if needed, checks that it is a directory, and returns the cutoff
// before which leftover temporary files are stale (now and staleAge as the
// backend's Options give them: nil and <= 0 mean time.Now and
// DefaultStaleTempAge). backend names the backend in errors ("local_fs").
func OpenDir(backend, dir string, now func() time.Time, staleAge time.Duration) (cutoff time.Time, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return time.Time{}, fmt.Errorf("opening %s storage: %w", backend, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}, fmt.Errorf("opening %s storage: %w", backend, err)
	}
	if !fi.IsDir() {
		return time.Time{}, fmt.Errorf("opening %s storage: %s is not a directory", backend, dir)
	}
	if now == nil {
		now = time.Now
	}
	if staleAge <= 0 {
		staleAge = DefaultStaleTempAge
	}
	return now().Add(-staleAge), nil
}
