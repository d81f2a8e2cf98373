package initdata

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

func TestParse(t *testing.T) {
	doc := "algorithm = \"sha384\"\nversion = \"0.1.0\"\nignored = 1\n\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"http://kbs\"\n'''\n\"policy.rego\" = \"package agent_policy\"\n"
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := sha512.Sum384([]byte(doc))
	if !bytes.Equal(d.Digest, want[:]) || d.Version != "0.1.0" || d.Algorithm != protocol.SHA384 ||
		!strings.Contains(d.Data["aa.toml"], "kbs") || d.Data["policy.rego"] != "package agent_policy" || len(d.Data) != 2 {
		t.Fatalf("%+v", d)
	}
	// The digest is over the bytes as given: a semantically equal document
	// with other whitespace has another digest.
	s256 := strings.Replace(doc, "sha384", "sha256", 1)
	d, err = Parse([]byte(s256))
	if w := sha256.Sum256([]byte(s256)); err != nil || !bytes.Equal(d.Digest, w[:]) {
		t.Fatalf("sha256 digest: %v", err)
	}
	d2, err := Parse([]byte(s256 + "\n"))
	if err != nil || bytes.Equal(d.Digest, d2.Digest) {
		t.Fatal("digest ignores trailing bytes")
	}
	s512 := strings.Replace(doc, "sha384", "sha512", 1)
	if d, err = Parse([]byte(s512)); err != nil || len(d.Digest) != 64 {
		t.Fatalf("sha512: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"not toml":          {"version = ", "parse TOML structured data"},
		"missing version":   {"algorithm = \"sha256\"\n[data]\n", "missing field `version`"},
		"missing algorithm": {"version = \"0.1.0\"\n[data]\n", "missing field `algorithm`"},
		"missing data":      {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n", "missing field `data`"},
		"IANA name":         {"version = \"0.1.0\"\nalgorithm = \"sha-384\"\n[data]\n", "names without a dash"},
		"upper case":        {"version = \"0.1.0\"\nalgorithm = \"SHA384\"\n[data]\n", `unknown algorithm "SHA384"`},
		"sm3":               {"version = \"0.1.0\"\nalgorithm = \"sm3\"\n[data]\n", "sm3 is not supported"},
		"data not strings":  {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n", "parse TOML"},
		"version not str":   {"version = 1\nalgorithm = \"sha256\"\n[data]\n", "parse TOML"},
		"too large":         {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = \"" + strings.Repeat("a", limits.MaxInitDataBytes) + "\"\n", "exceed the limit"},
		"nested":            {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n" + "y = " + strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested deeper"},
		"dotted":            {"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n" + "y" + strings.Repeat(".a", 100) + " = \"1\"", "dotted components"},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := Parse([]byte(tc.doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || d != nil {
				t.Fatalf("Parse = %v, %v; want ErrInvalid containing %q", d, err, tc.want)
			}
		})
	}
}

// Documents whose shape would make the TOML decoder super-linear are
// refused before decoding; strings and comments do not count.
func TestCheckTOMLShape(t *testing.T) {
	head := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
	n := 200000
	for name, doc := range map[string]string{
		"nested inline tables": head + "y = " + strings.Repeat("{a=", n) + "\"1\"" + strings.Repeat("}", n) + "\n",
		"nested arrays":        head + "y = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n",
		"long dotted key":      head + "y" + strings.Repeat(".a", n) + " = \"1\"\n",
		"long table header":    head + "[x" + strings.Repeat(".a", n) + "]\n",
		"quoted components":    head + "y" + strings.Repeat(`."a"`, n) + " = \"1\"\n",
	} {
		if CheckTOMLShape(doc) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for i, doc := range []string{
		head + "s = \"[[[[{{{{ a.b.c.d \\\" ]]\"\n# [[[[[[[[ a.a.a.a.a\nl = '[[[[.....'\n",
		head + "m = \"\"\"\n[[[[[[[[[[ \\\"\"\" .......\n\"\"\"\"\"\nn = '''[[[[[[''''\n",
		head + "\"a.b.c\" = \"x\"\n",
		head + "d = \"" + strings.Repeat("[.", 1000) + "\"\n",
	} {
		if err := CheckTOMLShape(doc); err != nil {
			t.Errorf("doc %d: %v", i, err)
		}
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("doc %d: %v", i, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("algorithm = \"sha256\"\nversion = \"0.1.0\"\n[data]\nk = \"v\"\n"))
	f.Add([]byte("version = \"0.1.0\"\nalgorithm = \"sha384\"\ndata = {}\n"))
	f.Add([]byte("version = \"0.1.0\"\nalgorithm = \"sha512\"\n[data]\n\"policy.rego\" = \"\"\"\npolicy_data := {}\"\"\"\n"))
	f.Add([]byte("[data]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if d != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v with document %v", err, d)
			}
			return
		}
		want, err := d.Algorithm.Sum(b)
		if err != nil || !bytes.Equal(d.Digest, want) || d.Data == nil {
			t.Fatalf("accepted %+v with a digest not over its bytes", d)
		}
	})
}
