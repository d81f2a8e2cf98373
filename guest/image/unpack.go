package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// Whiteout markers of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// UnpackOptions tune Unpack. The zero value is the production default.
type UnpackOptions struct {
	// Chown applies tar ownership; it is on by default when running as
	// root (the TEE) and failures to chown are then errors.
	Chown *bool
	// MaxEntries bounds the number of tar entries of one layer; 0 is
	// DefaultMaxLayerEntries.
	MaxEntries int
}

// DefaultMaxLayerEntries bounds the entries of one layer tar stream.
const DefaultMaxLayerEntries = 1 << 20

// Unpack applies the uncompressed layer tar stream r to the directory
// opened as root, honouring OCI whiteouts. Every file operation goes
// through root (os.Root), so no entry, link or symlink can create or
// modify anything outside it. Entries with absolute names, ".."
// components, device nodes or unknown types are refused with
// ErrUnsafeEntry. Unpack reads r only up to the end of the tar archive;
// the caller drains the rest if it hashes the stream.
func Unpack(ctx context.Context, root *os.Root, r io.Reader, opts UnpackOptions) error {
	chown := os.Geteuid() == 0
	if opts.Chown != nil {
		chown = *opts.Chown
	}
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxLayerEntries
	}
	u := &unpacker{root: root, chown: chown, written: map[string]bool{}}
	tr := tar.NewReader(r)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n >= maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrLayerTooLarge, maxEntries)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading tar: %v", ErrBadLayer, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue // the root directory itself
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		if dir == "" {
			dir = "."
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			if err := u.whiteout(dir, base); err != nil {
				return err
			}
			continue
		}
		if err := u.entry(name, dir, hdr, tr); err != nil {
			return fmt.Errorf("unpacking %q: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{name, hdr.ModTime})
		}
	}
	// Directory times last: creating their children changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirs[i].name, dirs[i].t, dirs[i].t)
	}
	return nil
}

// cleanName turns a tar entry name into a root-relative local path, or
// refuses it.
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: empty or NUL name", ErrUnsafeEntry)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute path %q", ErrUnsafeEntry, name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: %q has a .. component", ErrUnsafeEntry, name)
		}
	}
	return path.Clean(name), nil
}

type unpacker struct {
	root  *os.Root
	chown bool
	// written holds the names this layer created, which an opaque
	// whiteout of the same layer must keep.
	written map[string]bool
}

func (u *unpacker) whiteout(dir, base string) error {
	if err := u.ensureDir(dir); err != nil {
		return fmt.Errorf("whiteout in %q: %w", dir, err)
	}
	if base == whiteoutOpaque {
		f, err := u.root.Open(dir)
		if err != nil {
			return fmt.Errorf("opaque whiteout of %q: %w", dir, err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("opaque whiteout of %q: %w", dir, err)
		}
		for _, n := range names {
			p := path.Join(dir, n)
			if u.written[p] {
				continue
			}
			if err := u.root.RemoveAll(p); err != nil {
				return fmt.Errorf("opaque whiteout of %q: %w", p, err)
			}
		}
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafeEntry, base)
	}
	if err := u.root.RemoveAll(path.Join(dir, target)); err != nil {
		return fmt.Errorf("whiteout of %q: %w", path.Join(dir, target), err)
	}
	return nil
}

// ensureDir creates dir (and its parents) through root if missing.
func (u *unpacker) ensureDir(dir string) error {
	if dir == "." {
		return nil
	}
	fi, err := u.root.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%w: %q is not a directory", ErrUnsafeEntry, dir)
		}
		return nil
	}
	return u.root.MkdirAll(dir, 0o755)
}

// removeExisting removes a non-directory at name (tar replaces entries),
// and a directory too unless keepDir.
func (u *unpacker) removeExisting(name string, keepDir bool) error {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if keepDir {
			return nil
		}
		return u.root.RemoveAll(name)
	}
	return u.root.Remove(name)
}

func (u *unpacker) entry(name, dir string, hdr *tar.Header, r io.Reader) error {
	if err := u.ensureDir(dir); err != nil {
		return err
	}
	mode := fs.FileMode(hdr.Mode) & fs.ModePerm
	if hdr.Mode&04000 != 0 {
		mode |= fs.ModeSetuid
	}
	if hdr.Mode&02000 != 0 {
		mode |= fs.ModeSetgid
	}
	if hdr.Mode&01000 != 0 {
		mode |= fs.ModeSticky
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.removeExisting(name, true); err != nil {
			return err
		}
		if err := u.root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg, tar.TypeGNUSparse: // tar.Reader reports the old TypeRegA as TypeReg
		if err := u.removeExisting(name, false); err != nil {
			return err
		}
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: writing: %v", ErrBadLayer, err)
		}
	case tar.TypeSymlink:
		if err := u.removeExisting(name, false); err != nil {
			return err
		}
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return fmt.Errorf("%w: empty symlink target", ErrUnsafeEntry)
		}
		// The target is stored verbatim (absolute targets are normal in a
		// rootfs); following it is confined by os.Root for every later
		// write of this unpack.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		fi, err := u.root.Lstat(target)
		if err != nil {
			return fmt.Errorf("%w: hard link target %q: %v", ErrUnsafeEntry, target, err)
		}
		if fi.IsDir() {
			return fmt.Errorf("%w: hard link to directory %q", ErrUnsafeEntry, target)
		}
		if err := u.removeExisting(name, false); err != nil {
			return err
		}
		if err := u.root.Link(target, name); err != nil {
			return err
		}
		u.written[name] = true
		return nil
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node", ErrUnsafeEntry)
	case tar.TypeFifo:
		// No mkfifo through os.Root; a FIFO carries no image content.
		return nil
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("%w: entry type %q", ErrUnsafeEntry, hdr.Typeflag)
	}
	u.written[name] = true
	if hdr.Typeflag != tar.TypeSymlink {
		if err := u.root.Chmod(name, mode); err != nil {
			return err
		}
	}
	if u.chown {
		if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeReg {
		_ = u.root.Chtimes(name, hdr.ModTime, hdr.ModTime)
	}
	return nil
}
