// Package testvectors locates the upstream test vectors committed under
// testdata/upstream at the root of this repository (provenance and licences
// in testdata/upstream/README.md).
//
// Invariant: every path it returns lies inside the repository. Tests never
// read vectors from outside it, so a clone on its own passes the suite.
package testvectors

import (
	"os"
	"path/filepath"
	"sync"
)

var root = sync.OnceValue(func() string {
	// A test runs in its package's directory; the module root is the
	// nearest ancestor holding go.mod.
	dir, err := os.Getwd()
	if err != nil {
		panic("testvectors: " + err.Error())
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "upstream")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testvectors: no go.mod above the working directory")
		}
		dir = parent
	}
})

// Path returns the vector path rel (slash-separated, relative to
// testdata/upstream, e.g. "trustee/verifier/snp/"). A trailing slash is
// kept, so the result can prefix a file name.
func Path(rel string) string {
	p := filepath.Join(root(), filepath.FromSlash(rel))
	if len(rel) > 0 && rel[len(rel)-1] == '/' {
		p += string(filepath.Separator)
	}
	return p
}
