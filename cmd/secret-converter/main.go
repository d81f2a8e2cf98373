// Command secret-converter is the init container of the Trustee pod that
// the operator deploys (upstream trustee-operator's cmd/secret-converter):
// every key of every Secret mounted under /tmp/kbs-secrets/<secret>/
// becomes the KBS resource default/<secret>/<key>, written into the LocalFs
// repository (/opt/confidential-containers/storage/repository, file
// default\x2F<secret>\x2F<key>) that the kbs container then serves.
//
// Unlike a plain copy, each resource is written with the LocalFs store's
// atomic, fsynced publish, names are checked against the KBS's resource
// path rules (a key the KBS could never serve fails the pod, loudly), and
// values are bounded by the store's limit. Kubernetes' "..data" symlink
// layout of Secret volumes is followed; dot files are skipped.
//
// Usage: secret-converter [--source DIR] [--storage DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/localfs"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "secret-converter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("secret-converter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "/tmp/kbs-secrets", "directory with one sub-directory per mounted Secret")
	dir := fs.String("storage", "/opt/confidential-containers/storage", "LocalFs dir_path of the KBS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(stderr, slog.LevelInfo, logging.FormatText)
	if err != nil {
		return err
	}
	n, err := convert(ctx, *source, *dir, log)
	if err != nil {
		return err
	}
	log.Info("secret conversion complete", "resources", n)
	return nil
}

// convert writes every Secret key under source as a resource of the
// LocalFs store at dir and returns how many it wrote.
func convert(ctx context.Context, source, dir string, log *slog.Logger) (int, error) {
	secrets, err := os.ReadDir(source)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no secrets to convert", "dir", source)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	st, err := localfs.Open(localfs.Config{DirPath: dir}, localfs.Options{})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n := 0
	for _, s := range secrets {
		if !s.IsDir() || strings.HasPrefix(s.Name(), ".") {
			continue
		}
		keys, err := secretKeys(filepath.Join(source, s.Name()))
		if err != nil {
			return n, fmt.Errorf("secret %s: %w", s.Name(), err)
		}
		for _, k := range keys {
			name := "default/" + s.Name() + "/" + k
			if err := storage.ValidateKey(storage.NamespaceRepository, name); err != nil {
				return n, fmt.Errorf("secret %s key %s cannot be a KBS resource: %w", s.Name(), k, err)
			}
			b, err := readBounded(filepath.Join(source, s.Name(), k))
			if err != nil {
				return n, fmt.Errorf("secret %s key %s: %w", s.Name(), k, err)
			}
			if _, err := st.Set(ctx, storage.NamespaceRepository, name, b, true); err != nil {
				return n, fmt.Errorf("writing resource %s: %w", name, err)
			}
			clear(b)
			log.Info("converted", "resource", name)
			n++
		}
	}
	return n, nil
}

// secretKeys lists the keys of a mounted Secret: regular files or
// symbolic links to regular files, not starting with a dot (Kubernetes
// keeps its ..data and ..<timestamp> entries there).
func secretKeys(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name())) // follows the ..data link
		if err != nil {
			return nil, err
		}
		if fi.Mode().IsRegular() {
			keys = append(keys, e.Name())
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, storage.MaxValueSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > storage.MaxValueSize {
		return nil, fmt.Errorf("larger than %d bytes", storage.MaxValueSize)
	}
	return b, nil
}
