package as

import (
	"strings"
	"testing"
	"time"
)

func TestScratchDeepTOML(t *testing.T) {
	n := 400000
	inner := strings.Repeat("[", n) + strings.Repeat("]", n)
	for _, doc := range []string{
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = \"1\"\ny = " + inner + "\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"cdh.toml\" = '''\ny = " + inner[:len(inner)-100] + "\n'''\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = \"1\"\ny = " + strings.Repeat("{a=", 200000) + "1" + strings.Repeat("}", 200000) + "\n",
	} {
		start := time.Now()
		_, _, err := InitDataClaims(doc)
		t.Logf("%v %.80v", time.Since(start), err)
	}
}
