package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

// EnvTestURL names the variable holding the test server's URL, as printed
// by scripts/services.sh.
const EnvTestURL = "GOTRUSTEE_TEST_POSTGRES_URL"

// testURL returns the test server's URL. Without one the test is skipped
// locally and fails in CI, where no suite may be skipped.
func testURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(EnvTestURL)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set in CI; run: eval \"$(scripts/services.sh start)\"", EnvTestURL)
		}
		t.Skipf("%s is not set; run: eval \"$(scripts/services.sh start)\"", EnvTestURL)
	}
	return u
}

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

func withParam(t *testing.T, raw, key, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// admin runs SQL on the test server outside any Store.
func admin(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// testSchema creates a schema of its own for the test, dropped at the end,
// and returns it with a URL whose search_path selects it: tables the
// backend creates land there and runs never interfere.
func testSchema(t *testing.T) (schema, connURL string) {
	t.Helper()
	schema = randomName(t, "gotrustee_test_")
	admin(t, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { admin(t, "DROP SCHEMA "+schema+" CASCADE") })
	return schema, withParam(t, testURL(t), "search_path", schema)
}

func openURL(t *testing.T, connURL string) *Store {
	t.Helper()
	s, err := OpenURL(context.Background(), connURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newStore(t *testing.T) *Store {
	t.Helper()
	_, u := testSchema(t)
	return openURL(t, u)
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t) })
}

// TestConformanceTwoPools alternates every call between two pools on one
// database, as two KBS replicas would share it.
func TestConformanceTwoPools(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		_, u := testSchema(t)
		return storagetest.RoundRobin(openURL(t, u), openURL(t, u))
	})
}

// TestUpstreamLayout uses tables created as upstream's helm chart does, and
// checks the table the backend creates has upstream's schema.
func TestUpstreamLayout(t *testing.T) {
	ctx := context.Background()
	schema, u := testSchema(t)
	// deployment/helm-chart/files/postgres-initkv.sql
	admin(t, "CREATE TABLE "+schema+".repository (value BYTEA, key TEXT PRIMARY KEY)")
	admin(t, "INSERT INTO "+schema+".repository (key, value) VALUES ('default/key/1', '\\x00ff41'::bytea), ('default/null/1', NULL)")
	s := openURL(t, u)
	got, err := s.Get(ctx, "repository", "default/key/1")
	if err != nil || string(got) != "\x00\xffA" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	got, err = s.Get(ctx, "repository", "default/null/1")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get of a NULL value = %#v, %v; want empty", got, err)
	}
	if keys, err := s.List(ctx, "repository"); err != nil || !slices.Equal(keys, []string{"default/key/1", "default/null/1"}) {
		t.Fatalf("List = %q, %v", keys, err)
	}

	if _, err := s.Set(ctx, "kbs_protocol_session", "id", []byte("s"), false); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'kbs_protocol_session' ORDER BY ordinal_position`, schema)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, typ string
		err := r.Scan(&name, &typ)
		return name + " " + typ, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"value bytea", "key text"}; !slices.Equal(cols, want) {
		t.Fatalf("created table columns %q, want %q", cols, want)
	}
	var pk string
	err = conn.QueryRow(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = ($1 || '.kbs_protocol_session')::regclass AND i.indisprimary`, schema).Scan(&pk)
	if err != nil || pk != "key" {
		t.Fatalf("primary key %q, %v; want key", pk, err)
	}
	var raw []byte
	if err := conn.QueryRow(ctx, "SELECT value FROM "+schema+".kbs_protocol_session WHERE key = 'id'").Scan(&raw); err != nil || string(raw) != "s" {
		t.Fatalf("row value %q, %v", raw, err)
	}
}

// TestPrecreatedTablesWithoutCreatePrivilege runs as a role that may use
// the pre-created tables but not create any, as a locked-down deployment
// does.
func TestPrecreatedTablesWithoutCreatePrivilege(t *testing.T) {
	ctx := context.Background()
	schema, _ := testSchema(t)
	role := randomName(t, "gotrustee_role_")
	admin(t, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { admin(t, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	admin(t, "CREATE TABLE "+schema+".kbs (value BYTEA, key TEXT PRIMARY KEY)")
	admin(t, "GRANT USAGE ON SCHEMA "+schema+" TO "+role)
	admin(t, "GRANT SELECT, INSERT, UPDATE, DELETE ON "+schema+".kbs TO "+role)

	u, err := url.Parse(withParam(t, testURL(t), "search_path", schema))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	s := openURL(t, u.String())
	if ok, err := s.Set(ctx, "kbs", "resource-policy.rego", []byte("package policy"), false); err != nil || !ok {
		t.Fatalf("Set in a pre-created table = %v, %v", ok, err)
	}
	if _, err := s.Set(ctx, "not_created", "k", []byte("v"), false); err == nil {
		t.Fatal("Set created a table without the privilege to")
	}
}

func TestTableDroppedBehindOurBack(t *testing.T) {
	ctx := context.Background()
	schema, u := testSchema(t)
	s := openURL(t, u)
	if _, err := s.Set(ctx, "ns", "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
	admin(t, "DROP TABLE "+schema+".ns")
	if _, err := s.Get(ctx, "ns", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after DROP = %v, want ErrNotFound", err)
	}
	if ok, err := s.Set(ctx, "ns", "k", []byte("again"), false); err != nil || !ok {
		t.Fatalf("Set after DROP = %v, %v; want the table recreated", ok, err)
	}
}

func TestNamespaceIdentifier(t *testing.T) {
	ctx := context.Background()
	schema, u := testSchema(t)
	s := openURL(t, u)
	// Mixed case, dots and dashes are kept exactly (quoted identifiers).
	for _, ns := range []string{"Kbs", "kbs", "intel-dcap.collateral"} {
		if _, err := s.Set(ctx, ns, "k", []byte(ns), false); err != nil {
			t.Fatalf("Set(%s): %v", ns, err)
		}
	}
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name COLLATE \"C\"", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Kbs", "intel-dcap.collateral", "kbs"}; !slices.Equal(tables, want) {
		t.Fatalf("tables %q, want %q", tables, want)
	}
	long := strings.Repeat("n", maxIdentLen+1)
	if _, err := s.Set(ctx, long, "k", []byte("v"), false); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Set(64-byte namespace) = %v, want ErrInvalidKey", err)
	}
	if _, err := s.Set(ctx, long[:maxIdentLen], "k", []byte("v"), false); err != nil {
		t.Fatalf("Set(63-byte namespace) = %v", err)
	}
}

func TestEnvURLOverridesConfig(t *testing.T) {
	_, u := testSchema(t)
	t.Setenv(EnvURL, u)
	s, err := Open(context.Background(), Config{Host: "host.invalid", Port: 1, Password: "wrong"})
	if err != nil {
		t.Fatalf("Open with %s set: %v", EnvURL, err)
	}
	defer s.Close()
	if _, err := s.Set(context.Background(), "ns", "k", []byte("v"), false); err != nil {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	t.Setenv(EnvURL, "")
	tests := []struct {
		name    string
		cfg     Config
		wantURL string
	}{
		{"defaults", Config{}, "postgresql://postgres@localhost:5432/postgres"},
		{"all set", Config{Host: "db", Port: 6432, DB: "trustee", Username: "kbs", Password: "p@ss/word"},
			"postgresql://kbs:p%40ss%2Fword@db:6432/trustee"},
		{"IPv6", Config{Host: "::1"}, "postgresql://postgres@[::1]:5432/postgres"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.URL(); got != tc.wantURL {
				t.Fatalf("URL() = %q, want %q", got, tc.wantURL)
			}
			for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
				if s := fmt.Sprintf(f, tc.cfg); tc.cfg.Password != "" && strings.Contains(s, tc.cfg.Password) {
					t.Fatalf("%s of Config shows the password: %s", f, s)
				}
			}
		})
	}
	if d := DefaultConfig(); d.Host != "localhost" || d.Port != 5432 || d.DB != "postgres" || d.Username != "postgres" || d.Password != "" {
		t.Fatalf("DefaultConfig() = %#v", d)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	t.Setenv(EnvURL, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Open(ctx, Config{Host: "127.0.0.1", Port: 1, Password: "s3cr3t-pw"})
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	_, err = OpenURL(ctx, "postgres://u:s3cr3t-pw@127.0.0.1:notaport/db")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("parse error %v: want an error without the password", err)
	}
}
