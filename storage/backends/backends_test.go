package backends

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/internal/testvectors"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/localfs"
	"github.com/go-trustee/go-trustee/storage/localjson"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/postgres"
	"github.com/go-trustee/go-trustee/storage/redis"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

// testdata is the shared upstream vector directory, beside the repository.
var testdata = testvectors.Path("trustee/kbs")

func TestNormalizeType(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", TypeMemory}, {"Memory", TypeMemory}, {"memory", TypeMemory}, {"MEMORY", TypeMemory},
		{"LocalFs", TypeLocalFs}, {"localfs", TypeLocalFs}, {"local_fs", TypeLocalFs}, {"Local_FS", TypeLocalFs},
		{"LocalJson", TypeLocalJson}, {"localjson", TypeLocalJson}, {"local_json", TypeLocalJson},
		{"Postgres", TypePostgres}, {"postgres", TypePostgres}, {"postgresql", TypePostgres}, {"PostgreSQL", TypePostgres},
		{"Redis", TypeRedis}, {"redis", TypeRedis}, {" Redis ", TypeRedis},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeType(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"local-fs", "sqlite", "etcd", "valkey", "mem"} {
		if _, err := NormalizeType(bad); !errors.Is(err, ErrUnknownType) {
			t.Errorf("NormalizeType(%q) = %v, want ErrUnknownType", bad, err)
		}
	}
}

// kbsConfig is the part of a KBS configuration file this package reads.
type kbsConfig struct {
	StorageBackend Config `toml:"storage_backend"`
}

// TestUpstreamConfigs decodes the [storage_backend] of upstream's own KBS
// configuration files.
func TestUpstreamConfigs(t *testing.T) {
	tests := []struct {
		file     string
		wantType string
		check    func(t *testing.T, c Config)
	}{
		{"test_data/configs/coco-as-builtin-1.toml", TypeLocalJson, func(t *testing.T, c Config) {
			if c.Backends.LocalJson.FileDirPath != "/opt/confidential-containers/trustee" {
				t.Errorf("file_dir_path = %q", c.Backends.LocalJson.FileDirPath)
			}
		}},
		{"test_data/configs/coco-as-builtin-2.toml", TypeMemory, nil},
		{"test_data/configs/coco-as-builtin-3.toml", TypeLocalJson, nil},
		{"test_data/configs/tls-profile-modern.toml", TypeMemory, nil},
		{"test/config/kbs.toml", TypeLocalFs, func(t *testing.T, c Config) {
			if c.Backends.LocalFs.DirPath != "./work/storage" {
				t.Errorf("dir_path = %q", c.Backends.LocalFs.DirPath)
			}
			// Sections absent from the file keep their defaults.
			if c.Backends.Redis.URL != redis.DefaultURL || c.Backends.Postgres.Port != 5432 {
				t.Errorf("defaults lost: %+v", c.Backends)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(testdata, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg := kbsConfig{StorageBackend: DefaultConfig()}
			if _, err := toml.Decode(string(data), &cfg); err != nil {
				t.Fatal(err)
			}
			got, err := NormalizeType(cfg.StorageBackend.StorageType)
			if err != nil || got != tc.wantType {
				t.Fatalf("storage_type %q normalizes to %q, %v; want %q", cfg.StorageBackend.StorageType, got, err, tc.wantType)
			}
			if tc.check != nil {
				tc.check(t, cfg.StorageBackend)
			}
		})
	}
}

func TestDecodeAllKeys(t *testing.T) {
	const tomlDoc = `
[storage_backend]
storage_type = "Postgres"
[storage_backend.backends.local_fs]
dir_path = "/a"
[storage_backend.backends.local_json]
file_dir_path = "/b"
[storage_backend.backends.postgres]
host = "db"
port = 6432
db = "trustee"
username = "kbs"
password = "pw"
[storage_backend.backends.redis]
url = "redis://valkey:6379"
`
	const jsonDoc = `{"storage_backend":{"storage_type":"Postgres","backends":{
		"local_fs":{"dir_path":"/a"},"local_json":{"file_dir_path":"/b"},
		"postgres":{"host":"db","port":6432,"db":"trustee","username":"kbs","password":"pw"},
		"redis":{"url":"redis://valkey:6379"}}}}`
	want := DefaultConfig()
	want.StorageType = "Postgres"
	want.Backends.LocalFs.DirPath = "/a"
	want.Backends.LocalJson.FileDirPath = "/b"
	want.Backends.Postgres = postgres.Config{Host: "db", Port: 6432, DB: "trustee", Username: "kbs", Password: "pw"}
	want.Backends.Redis.URL = "redis://valkey:6379"

	var fromTOML, fromJSON struct {
		StorageBackend Config `toml:"storage_backend" json:"storage_backend"`
	}
	if _, err := toml.Decode(tomlDoc, &fromTOML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(jsonDoc), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if fromTOML.StorageBackend != want {
		t.Errorf("TOML decodes to %+v, want %+v", fromTOML.StorageBackend, want)
	}
	if fromJSON.StorageBackend != want {
		t.Errorf("JSON decodes to %+v, want %+v", fromJSON.StorageBackend, want)
	}
}

func TestOpenFileBackends(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Backends.LocalFs.DirPath = t.TempDir()
	cfg.Backends.LocalJson.FileDirPath = t.TempDir()
	tests := []struct {
		typ string
		ok  func(storage.Store) bool
	}{
		{"", func(s storage.Store) bool { _, ok := s.(*memory.Store); return ok }},
		{"memory", func(s storage.Store) bool { _, ok := s.(*memory.Store); return ok }},
		{"local_fs", func(s storage.Store) bool {
			l, ok := s.(*localfs.Store)
			return ok && l.Dir() == cfg.Backends.LocalFs.DirPath
		}},
		{"LocalJson", func(s storage.Store) bool {
			l, ok := s.(*localjson.Store)
			return ok && l.Dir() == cfg.Backends.LocalJson.FileDirPath
		}},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			c := cfg
			c.StorageType = tc.typ
			s, err := Open(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !tc.ok(s) {
				t.Fatalf("Open(%q) gave %T", tc.typ, s)
			}
		})
	}
	if _, err := OpenType(ctx, "etcd", cfg); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("OpenType(etcd) = %v, want ErrUnknownType", err)
	}
}

// TestTwoOpensShareFiles opens the same file directory twice in one process,
// as a KBS does when session_storage_type names the same backend: the two
// Stores are separate but see the same data and keep the contract together.
func TestTwoOpensShareFiles(t *testing.T) {
	for _, typ := range []string{TypeLocalFs, TypeLocalJson} {
		t.Run(typ, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.StorageType = typ
			cfg.Backends.LocalFs.DirPath = t.TempDir()
			cfg.Backends.LocalJson.FileDirPath = t.TempDir()
			storagetest.Run(t, func(t *testing.T) storage.Store {
				a, err := Open(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				b, err := OpenType(context.Background(), typ, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
				return storagetest.RoundRobin(a, b)
			})
		})
	}
}

// TestOpenServers opens Postgres and Redis through the factory, with the
// connection given by POSTGRES_URL / REDIS_URL as upstream deployments do.
func TestOpenServers(t *testing.T) {
	tests := []struct {
		typ, testEnv, env string
	}{
		{"postgresql", "GOTRUSTEE_TEST_POSTGRES_URL", postgres.EnvURL},
		{"redis", "GOTRUSTEE_TEST_REDIS_URL", redis.EnvURL},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			u := os.Getenv(tc.testEnv)
			if u == "" {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is not set in CI; run: eval \"$(scripts/services.sh start)\"", tc.testEnv)
				}
				t.Skipf("%s is not set", tc.testEnv)
			}
			t.Setenv(tc.env, u)
			cfg := DefaultConfig()
			cfg.StorageType = tc.typ
			s, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ns := storagetest.Namespace(t, s, "factory")
			if ok, err := s.Set(context.Background(), ns, "k", []byte("v"), false); err != nil || !ok {
				t.Fatalf("Set = %v, %v", ok, err)
			}
			if tc.typ == "postgresql" {
				// The namespace's table lives in the shared database: drop it.
				t.Cleanup(func() {
					_, _ = s.(*postgres.Store).Pool().Exec(context.Background(), "DROP TABLE IF EXISTS "+ns)
				})
			}
		})
	}
}
