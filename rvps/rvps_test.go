package rvps

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/storagetest"

	"github.com/go-trustee/go-trustee/storage"
)

func sampleMessage(t testing.TB, payload string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{
		"version": "0.1.0",
		"type":    "sample",
		"payload": base64.StdEncoding.EncodeToString([]byte(payload)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 891011, time.UTC)

func newService(t *testing.T, st storage.Store) *Service {
	t.Helper()
	s, err := New(st, Options{Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRegisterAndQuery(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	s := newService(t, st)
	// The message the upstream integration harness sends per value.
	for _, p := range []string{`{"svn":["1"]}`, `{"launch_digest":["abcde"]}`, `{"major_version":1}`, `{"minimum_minor_version": 1 }`} {
		if err := s.Register(ctx, sampleMessage(t, p)); err != nil {
			t.Fatalf("Register(%s): %v", p, err)
		}
	}
	tests := []struct {
		id    string
		want  string
		found bool
	}{
		{"svn", `["1"]`, true},
		{"launch_digest", `["abcde"]`, true},
		{"major_version", `1`, true},
		{"minimum_minor_version", `1`, true},
		{"absent", ``, false},
		{"not a key", ``, false},
		{"../svn", ``, false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			v, found, err := s.Query(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.found || string(v) != tc.want {
				t.Errorf("Query(%q) = %s, %v; want %s, %v", tc.id, v, found, tc.want, tc.found)
			}
		})
	}
	// The stored record has upstream's exact layout.
	raw, err := st.Get(ctx, storage.NamespaceReferenceValue, "svn")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":"0.1.0","name":"svn","expiration":"2027-03-04T05:06:07Z","value":["1"]}`; string(raw) != want {
		t.Errorf("record = %s\nwant     %s", raw, want)
	}
}

func TestRegisterOverwrites(t *testing.T) {
	ctx := context.Background()
	s := newService(t, storagetest.NewFaulty(memory.New()))
	for _, p := range []string{`{"svn":["1"]}`, `{"svn":["2","3"]}`} {
		if err := s.Register(ctx, sampleMessage(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	v, _, err := s.Query(ctx, "svn")
	if err != nil || string(v) != `["2","3"]` {
		t.Fatalf("Query = %s, %v", v, err)
	}
}

func TestRegisterErrors(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		message string
		want    error
	}{
		{"not json", `{`, ErrInvalidMessage},
		{"array", `[]`, ErrInvalidMessage},
		{"wrong version", `{"version":"0.2.0","type":"sample","payload":"` + b64(`{}`) + `"}`, ErrInvalidMessage},
		{"version not string", `{"version":1,"type":"sample","payload":"` + b64(`{}`) + `"}`, ErrInvalidMessage},
		{"missing payload", `{"type":"sample"}`, ErrInvalidMessage},
		{"missing type", `{"payload":"` + b64(`{}`) + `"}`, ErrInvalidMessage},
		{"null type", `{"type":null,"payload":""}`, ErrInvalidMessage},
		{"unknown type", `{"type":"swid","payload":""}`, ErrUnsupportedProvenance},
		{"bad base64", `{"type":"sample","payload":"!!"}`, ErrInvalidMessage},
		{"url-safe base64", `{"type":"sample","payload":"` + strings.TrimRight(base64.URLEncoding.EncodeToString([]byte(`{"a":"??>"}`)), "=") + `"}`, ErrInvalidMessage},
		{"payload not object", `{"type":"sample","payload":"` + b64(`["a"]`) + `"}`, ErrInvalidMessage},
		{"invalid name", `{"type":"sample","payload":"` + b64(`{"ok":1,"bad name":2}`) + `"}`, ErrInvalidMessage},
		{"too large", `{"type":"sample","payload":"` + strings.Repeat("A", MaxMessageBytes) + `"}`, ErrInvalidMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := storagetest.NewFaulty(memory.New())
			s := newService(t, st)
			err := s.Register(context.Background(), []byte(tc.message))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Register = %v, want %v", err, tc.want)
			}
			if keys, _ := st.List(context.Background(), storage.NamespaceReferenceValue); len(keys) != 0 {
				t.Errorf("a rejected message stored %v", keys)
			}
		})
	}
}

func TestVersionDefaults(t *testing.T) {
	s := newService(t, storagetest.NewFaulty(memory.New()))
	msg := `{"type":"sample","payload":"` + base64.StdEncoding.EncodeToString([]byte(`{"x":true}`)) + `"}`
	if err := s.Register(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Query(context.Background(), "x"); !ok || string(v) != "true" {
		t.Fatalf("Query = %s %v", v, ok)
	}
}

// Records as trustee-operator mounts them (no version) must be read.
func TestQueryUpstreamRecords(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		record  string
		want    string
		wantErr error
	}{
		{"operator configmap", `{"name":"svn","expiration":"2027-01-01T00:00:00Z","value":1}`, `1`, nil},
		{"null value", `{"version":"0.1.0","name":"n","expiration":"2027-01-01T00:00:00Z","value":null}`, `null`, nil},
		{"nested", `{"name":"n","expiration":"2027-01-01T00:00:00Z","value":{"a": [1, 2]}}`, `{"a":[1,2]}`, nil},
		{"missing value", `{"name":"n","expiration":"2027-01-01T00:00:00Z"}`, ``, ErrCorruptRecord},
		{"missing expiration", `{"name":"n","value":1}`, ``, ErrCorruptRecord},
		{"bad expiration", `{"name":"n","expiration":"2027-01-01","value":1}`, ``, ErrCorruptRecord},
		{"not json", `xx`, ``, ErrCorruptRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := storagetest.NewFaulty(memory.New())
			if _, err := st.Set(ctx, storage.NamespaceReferenceValue, "svn", []byte(tc.record), true); err != nil {
				t.Fatal(err)
			}
			v, found, err := newService(t, st).Query(ctx, "svn")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (!found || string(v) != tc.want) {
				t.Errorf("Query = %s, %v; want %s", v, found, tc.want)
			}
		})
	}
}

func TestQueryStorageError(t *testing.T) {
	st := storagetest.NewFaulty(memory.New())
	st.FailGet(errors.New("backend down"))
	_, _, err := newService(t, st).Query(context.Background(), "svn")
	if err == nil || !strings.Contains(err.Error(), "backend down") {
		t.Fatalf("Query = %v, want the backend error", err)
	}
}

func TestExpiry(t *testing.T) {
	tests := []struct{ now, want string }{
		{"2026-03-04T05:06:07Z", "2027-03-04T05:06:07Z"},
		{"2028-02-29T23:59:59Z", "2029-02-28T23:59:59Z"},
		{"2026-12-31T00:00:00Z", "2027-12-31T00:00:00Z"},
	}
	for _, tc := range tests {
		now, _ := time.Parse(time.RFC3339, tc.now)
		if got := expiry(now).Format(expirationLayout); got != tc.want {
			t.Errorf("expiry(%s) = %s, want %s", tc.now, got, tc.want)
		}
	}
	// Local time zones are normalised to UTC.
	loc := time.FixedZone("x", 3600)
	if got := expiry(time.Date(2026, 1, 1, 0, 30, 0, 0, loc)).Format(expirationLayout); got != "2026-12-31T23:30:00Z" {
		t.Errorf("expiry in +01:00 = %s", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg           Config
		want, wantNew error
	}{
		{Config{}, nil, nil},
		{Config{Type: "BuiltIn", Extractors: map[string]any{"swid_extractor": map[string]any{}}}, nil, nil},
		{Config{Type: "BuiltIn", StorageType: "LocalJson"}, nil, nil},
		// A remote RVPS is valid configuration, but not something New builds.
		{Config{Type: "GrpcRemote", Address: "http://127.0.0.1:50003"}, nil, ErrUnsupportedConfig},
		{Config{Type: "GrpcRemote", StorageType: "LocalJson"}, ErrUnsupportedConfig, ErrUnsupportedConfig},
		{Config{Type: "builtin"}, ErrUnsupportedConfig, ErrUnsupportedConfig},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("Validate(%+v) = %v, want %v", tc.cfg, err, tc.want)
		}
		_, err := New(storagetest.NewFaulty(memory.New()), Options{Config: tc.cfg})
		if !errors.Is(err, tc.wantNew) {
			t.Errorf("New(%+v) = %v, want %v", tc.cfg, err, tc.wantNew)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"version":"0.1.0","type":"sample","payload":"eyJzdm4iOlsiMSJdfQ=="}`))
	f.Add([]byte(`{"type":"sample","payload":"e30="}`))
	f.Add([]byte(`{"version":"0.1.0","type":"sample","payload":"W10="}`))
	f.Add([]byte(`{"type":null}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := New(storagetest.NewFaulty(memory.New()), Options{Now: func() time.Time { return fixedNow }})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Register(context.Background(), msg); err != nil {
			return
		}
		// Whatever was accepted must be readable back as JSON.
		m, err := DecodeMessage(msg)
		if err != nil {
			t.Fatalf("Register accepted what DecodeMessage rejects: %v", err)
		}
		rvs, err := ExtractSample(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for name := range rvs {
			v, ok, err := s.Query(context.Background(), name)
			if err != nil || !ok || !json.Valid(v) {
				t.Fatalf("Query(%q) = %s, %v, %v", name, v, ok, err)
			}
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"version":"0.1.0","name":"svn","expiration":"2027-01-01T00:00:00Z","value":["1"]}`))
	f.Add([]byte(`{"name":"svn","expiration":"2027-01-01T00:00:00Z","value":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rec, err := DecodeRecord(raw)
		if err == nil && !json.Valid(rec.Value) {
			t.Fatalf("accepted record with invalid value %q", rec.Value)
		}
	})
}
