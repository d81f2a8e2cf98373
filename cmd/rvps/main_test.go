package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testvectors"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	// Upstream's docker-compose rvps.json: keys of an older layout, which
	// upstream ignores too; we say so, and where the values go.
	cfg, warnings, err := loadConfig(testvectors.Path("trustee/docker-compose/kbs/config/docker-compose/rvps.json"))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(warnings, "\n")
	if cfg.Storage.StorageType != "Memory" || !strings.Contains(all, "storage.file_path is not read") || !strings.Contains(all, "storage.type is not read") || !strings.Contains(all, "storage_type Memory") {
		t.Errorf("compose rvps.json: %+v %q", cfg, warnings)
	}
	cfg, warnings, err = loadConfig(write("ok.json", `{"storage":{"storage_type":"LocalFs","backends":{"local_fs":{"dir_path":"/x"}}}}`))
	if err != nil || len(warnings) != 0 || cfg.Storage.StorageType != "LocalFs" || cfg.Storage.Backends.LocalFs.DirPath != "/x" {
		t.Errorf("json: %+v %q %v", cfg, warnings, err)
	}
	cfg, _, err = loadConfig(write("ok.toml", "[storage]\nstorage_type = \"LocalJson\"\n[storage.backends.local_json]\nfile_dir_path = \"/y\"\n"))
	if err != nil || cfg.Storage.StorageType != "LocalJson" || cfg.Storage.Backends.LocalJson.FileDirPath != "/y" {
		t.Errorf("toml: %+v %v", cfg, err)
	}
	// As upstream, a missing file is the defaults, with a warning.
	if _, warnings, err := loadConfig(filepath.Join(dir, "absent.json")); err != nil || len(warnings) != 1 {
		t.Errorf("missing file: %q %v", warnings, err)
	}
	// Unlike upstream, a broken file is an error, not memory storage.
	for _, body := range []string{`{"storage":`, `{"storage":{"storage_type":7}}`, strings.Repeat(" ", 2<<20)} {
		if _, _, err := loadConfig(write("bad.json", body)); err == nil {
			t.Errorf("accepted %.40q", body)
		}
	}
}
