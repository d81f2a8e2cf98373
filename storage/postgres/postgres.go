// Package postgres is the PostgreSQL storage backend, in the table layout of
// upstream Trustee, so an existing upstream database is used unchanged.
//
// # Layout
//
// Namespace ns is the table named ns (quoted identifier, unqualified, so it
// lives in the first schema of the connection's search_path) with upstream's
// schema, which Set creates when it is missing:
//
//	CREATE TABLE IF NOT EXISTS "ns" (value BYTEA, key TEXT PRIMARY KEY)
//
// # Invariants
//
//   - Every statement is a single auto-committed statement with the key and
//     value bound as parameters; the namespace, checked against the charset
//     and quoted, is the only part of the SQL built from input.
//   - Insert-if-absent is INSERT ... ON CONFLICT (key) DO NOTHING: the
//     primary key makes exactly one of several concurrent inserters win,
//     across processes.
//   - Reading or deleting in a namespace whose table does not exist reports
//     not-found or an empty list and creates nothing.
//   - Namespaces longer than 63 bytes are rejected: PostgreSQL would silently
//     truncate the identifier and merge namespaces.
//   - Keys are listed in byte order whatever the database collation.
//
// The password is never part of an error or of Config's String.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-trustee/go-trustee/storage"
)

// EnvURL names the environment variable whose value, when set, is the
// connection URL used instead of Config (as upstream).
const EnvURL = "POSTGRES_URL"

// Upstream's defaults.
const (
	DefaultHost     = "localhost"
	DefaultPort     = 5432
	DefaultDB       = "postgres"
	DefaultUsername = "postgres"
)

// maxIdentLen is PostgreSQL's NAMEDATALEN-1.
const maxIdentLen = 63

// PostgreSQL error codes the backend reacts to.
const (
	codeUndefinedTable  = "42P01"
	codeDuplicateTable  = "42P07"
	codeDuplicateObject = "42710"
	codeUniqueViolation = "23505"
)

// Config is [storage_backend.backends.postgres] of the KBS configuration.
// Empty fields take upstream's defaults.
type Config struct {
	Host     string `toml:"host" json:"host"`
	Port     uint16 `toml:"port" json:"port"`
	DB       string `toml:"db" json:"db"`
	Username string `toml:"username" json:"username"`
	// Password is optional; empty means none.
	Password string `toml:"password" json:"password"`
}

// DefaultConfig returns upstream's defaults.
func DefaultConfig() Config {
	return Config{Host: DefaultHost, Port: DefaultPort, DB: DefaultDB, Username: DefaultUsername}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Host == "" {
		c.Host = d.Host
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.DB == "" {
		c.DB = d.DB
	}
	if c.Username == "" {
		c.Username = d.Username
	}
	return c
}

// String describes c without its password.
func (c Config) String() string {
	c = c.withDefaults()
	pw := ""
	if c.Password != "" {
		pw = " password=REDACTED"
	}
	return fmt.Sprintf("postgres host=%s port=%d db=%s user=%s%s", c.Host, c.Port, c.DB, c.Username, pw)
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// URL returns the connection URL for c, defaults applied. It holds the
// password: never log it.
func (c Config) URL() string {
	c = c.withDefaults()
	u := url.URL{
		Scheme: "postgresql",
		User:   url.User(c.Username),
		Host:   net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))),
		Path:   "/" + c.DB,
	}
	if c.Password != "" {
		u.User = url.UserPassword(c.Username, c.Password)
	}
	return u.String()
}

// Store is a storage.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool

	mu     sync.Mutex
	tables map[string]bool // namespaces whose table is known to exist

	closeOnce sync.Once
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database of cfg, or of $POSTGRES_URL when that is
// set, and checks that it answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	connString := cfg.URL()
	if env := os.Getenv(EnvURL); env != "" {
		connString = env
	}
	return OpenURL(ctx, connString)
}

// OpenURL connects to the database of a libpq connection string or URL
// (pgxpool syntax, e.g. postgres://user@host:5432/db?sslmode=disable) and
// checks that it answers. The environment is not consulted.
func OpenURL(ctx context.Context, connString string) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("opening postgres storage: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres storage: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres storage: %w", err)
	}
	return &Store{pool: pool, tables: make(map[string]bool)}, nil
}

// Pool returns the underlying connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// table validates ns and returns its quoted table name.
func table(ns string) (string, error) {
	if err := storage.ValidateNamespace(ns); err != nil {
		return "", err
	}
	if len(ns) > maxIdentLen {
		return "", fmt.Errorf("%w: namespace %q longer than %d bytes", storage.ErrInvalidKey, ns, maxIdentLen)
	}
	return pgx.Identifier{ns}.Sanitize(), nil
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// ensureTable creates ns's table unless it exists. It first looks the table
// up, so a role without CREATE on the schema can use pre-created tables.
func (s *Store) ensureTable(ctx context.Context, ns, tbl string) error {
	s.mu.Lock()
	known := s.tables[ns]
	s.mu.Unlock()
	if known {
		return nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", tbl).Scan(&exists); err != nil {
		return fmt.Errorf("looking up table %s: %w", tbl, err)
	}
	if !exists {
		_, err := s.pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+tbl+" (value BYTEA, key TEXT PRIMARY KEY)")
		if err != nil {
			// Sessions creating the same table at once: the losers wait
			// for the winner's commit, then fail on a catalog entry
			// (table, row type or its index) instead of taking the IF NOT
			// EXISTS path. The table exists then; make sure of it.
			if !isCode(err, codeUniqueViolation) && !isCode(err, codeDuplicateTable) && !isCode(err, codeDuplicateObject) {
				return fmt.Errorf("creating table %s: %w", tbl, err)
			}
			if err := s.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", tbl).Scan(&exists); err != nil {
				return fmt.Errorf("looking up table %s: %w", tbl, err)
			}
			if !exists {
				return fmt.Errorf("creating table %s: %w", tbl, err)
			}
		}
	}
	s.mu.Lock()
	s.tables[ns] = true
	s.mu.Unlock()
	return nil
}

func (s *Store) forgetTable(ns string) {
	s.mu.Lock()
	delete(s.tables, ns)
	s.mu.Unlock()
}

// Set implements storage.Store.
func (s *Store) Set(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return false, err
	}
	tbl, err := table(ns)
	if err != nil {
		return false, err
	}
	if len(value) > storage.MaxValueSize {
		return false, fmt.Errorf("setting %s/%s: %w", ns, key, storage.ErrValueTooLarge)
	}
	if value == nil {
		value = []byte{} // nil would be bound as NULL
	}
	sql := "INSERT INTO " + tbl + " (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
	if overwrite {
		sql = "INSERT INTO " + tbl + " (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
	}
	// One retry covers a table dropped after we last saw it.
	for attempt := 0; ; attempt++ {
		if err := s.ensureTable(ctx, ns, tbl); err != nil {
			return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
		}
		tag, err := s.pool.Exec(ctx, sql, key, value)
		if err != nil {
			if isCode(err, codeUndefinedTable) && attempt == 0 {
				s.forgetTable(ns)
				continue
			}
			return false, fmt.Errorf("setting %s/%s: %w", ns, key, err)
		}
		return overwrite || tag.RowsAffected() == 1, nil
	}
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	if err := storage.ValidateKey(ns, key); err != nil {
		return nil, err
	}
	tbl, err := table(ns)
	if err != nil {
		return nil, err
	}
	var v []byte
	err = s.pool.QueryRow(ctx, "SELECT value FROM "+tbl+" WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) || isCode(err, codeUndefinedTable) {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("getting %s/%s: %w", ns, key, err)
	}
	if v == nil {
		v = []byte{} // a NULL value (possible in upstream's schema) reads as empty
	}
	return v, nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, ns string) ([]string, error) {
	tbl, err := table(ns)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT key FROM "+tbl)
	if err != nil {
		if isCode(err, codeUndefinedTable) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("listing %s: %w", ns, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		if isCode(err, codeUndefinedTable) {
			return []string{}, nil
		}
		return nil, fmt.Errorf("listing %s: %w", ns, err)
	}
	// Byte order in Go, not ORDER BY: the database collation may differ.
	slices.Sort(keys)
	if keys == nil {
		keys = []string{}
	}
	return keys, nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, ns, key string) error {
	if err := storage.ValidateKey(ns, key); err != nil {
		return err
	}
	tbl, err := table(ns)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM "+tbl+" WHERE key = $1", key)
	if isCode(err, codeUndefinedTable) || (err == nil && tag.RowsAffected() == 0) {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("deleting %s/%s: %w", ns, key, err)
	}
	return nil
}

// Close implements storage.Store: it closes the pool. Later calls do
// nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}
