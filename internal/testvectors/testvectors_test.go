package testvectors

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	return filepath.Dir(root())
}

func TestPathInsideRepository(t *testing.T) {
	mod := filepath.Dir(moduleRoot(t))
	for _, rel := range []string{"trustee/verifier/snp/", "kata/sealed-secret.txt", "guest-components/COMMIT"} {
		p := Path(rel)
		if !strings.HasPrefix(p, mod+string(filepath.Separator)) {
			t.Errorf("Path(%q) = %s, outside the module %s", rel, p, mod)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("Path(%q): %v", rel, err)
		}
	}
	if p := Path("trustee/verifier/snp/"); !strings.HasSuffix(p, string(filepath.Separator)) {
		t.Errorf("trailing separator dropped: %s", p)
	}
}

// TestNoPathLeavesRepository is the self-containment gate: every string
// literal in the repository's Go files that names a relative path with
// ".." must resolve inside the module, so no test (or program) depends on
// a sibling folder of the clone.
func TestNoPathLeavesRepository(t *testing.T) {
	mod := filepath.Dir(moduleRoot(t))
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(mod, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != mod && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil || !strings.HasPrefix(s, "../") {
				return true
			}
			resolved := filepath.Join(filepath.Dir(path), filepath.FromSlash(s))
			if resolved != mod && !strings.HasPrefix(resolved, mod+string(filepath.Separator)) {
				t.Errorf("%s: %q resolves outside the repository (%s); put the file under testdata/ and use testvectors.Path",
					fset.Position(lit.Pos()), s, resolved)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d Go files; is the module root right?", checked)
	}
}
