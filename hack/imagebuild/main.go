// Command imagebuild assembles the container images of go-trustee without
// a container engine: each image is one layer of static binaries on an
// empty base (no shell, no package manager), with /etc/passwd and
// /etc/group naming the non-root user 65532 it runs as, /tmp, and the
// directories the Trustee pod mounts volumes over. It is driven by
// scripts/images.sh, which builds the binaries first.
//
// Usage:
//
//	imagebuild -name kbs -entrypoint /usr/local/bin/kbs \
//	    -file bin/kbs=/usr/local/bin/kbs [-file ...] \
//	    -push localhost:5000/go-trustee/kbs:v1 [-archive out.tar]
//
// The image is reproducible: file times are zero and layer order fixed,
// so the same binaries give the same digest, which it prints.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var fl files
	imgName := fs.String("name", "", "image name, for the labels")
	entry := fs.String("entrypoint", "", "entrypoint (absolute path inside the image)")
	push := fs.String("push", "", "push to this reference (plain HTTP for localhost and 127.0.0.1 registries)")
	archive := fs.String("archive", "", "also write a docker-archive tarball loadable by `podman load`, tagged with -push's reference")
	fs.Var(&fl, "file", "SRC=DEST: a binary to put at DEST (mode 0755); repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *imgName == "" || *entry == "" || len(fl) == 0 || *push == "" {
		return errors.New("-name, -entrypoint, -push and at least one -file are required")
	}
	layer, err := rootfs(fl)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{*entry}
	cf.Config.User = "65532:65532"
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin:/"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":  *imgName,
		"org.opencontainers.image.source": "https://github.com/go-trustee/go-trustee",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(*push, refOptions(*push)...)
	if err != nil {
		return err
	}
	if *archive != "" {
		if err := tarball.WriteToFile(*archive, ref, img); err != nil {
			return err
		}
	}
	if err := remote.Write(ref, img); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s@%s\n", ref.Context(), d)
	return nil
}

func refOptions(r string) []name.Option {
	if strings.HasPrefix(r, "localhost") || strings.HasPrefix(r, "127.0.0.1") {
		return []name.Option{name.Insecure}
	}
	return nil
}

// rootfs builds the single layer: the given binaries, a passwd/group for
// uid 65532, and the mount-point directories (owned by 65532, so that a
// runtime that copies image content into fresh volumes leaves them
// writable for the non-root user).
func rootfs(fl files) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var entries []struct{ src, dst string }
	for _, f := range fl {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || !path.IsAbs(dst) {
			return nil, fmt.Errorf("-file %q: want SRC=/absolute/dest", f)
		}
		entries = append(entries, struct{ src, dst string }{src, dst})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].dst < entries[j].dst })
	owned := []string{"/tmp", "/opt/confidential-containers", "/opt/confidential-containers/storage",
		"/opt/confidential-containers/attestation-service", "/run/confidential-containers"}
	var all []string
	for _, e := range entries {
		for d := path.Dir(e.dst); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range append([]string{"/etc"}, owned...) {
		for x := d; x != "/"; x = path.Dir(x) {
			dirs[x] = true
		}
	}
	for d := range dirs {
		all = append(all, d)
	}
	sort.Strings(all)
	isOwned := map[string]bool{}
	for _, d := range owned {
		isOwned[d] = true
	}
	for _, d := range all {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Format: tar.FormatPAX}
		if isOwned[d] {
			h.Uid, h.Gid = 65532, 65532
			if d == "/tmp" {
				h.Mode = 0o1777
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct{ name, body string }{
		{"etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		{"etc/group", "root:x:0:\nnonroot:x:65532:\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return nil, err
		}
	}
	for _, e := range entries {
		b, err := os.ReadFile(e.src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(e.dst, "/"), Mode: 0o755, Size: int64(len(b)), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}
