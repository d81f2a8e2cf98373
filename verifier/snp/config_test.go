package snp

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name   string
		toml   string
		json   string
		want   Config
		norm   []VCEKSource
		errMsg bool
	}{
		{
			name: "no snp_verifier",
			toml: `[other]
x = 1`,
			want: Config{},
			norm: []VCEKSource{{Type: SourceKDS, BaseURL: DefaultKDSURL}},
		},
		{
			name: "no vcek_sources",
			toml: `[snp_verifier]`,
			want: Config{},
			norm: []VCEKSource{{Type: SourceKDS, BaseURL: DefaultKDSURL}},
		},
		{
			name: "both sources, in order",
			toml: `[snp_verifier]
vcek_sources = [ { type = "OfflineStore", path = "/srv/kds" }, { type = "KDS", base_url = "https://kds.example/" } ]`,
			want: Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore, Path: "/srv/kds"}, {Type: SourceKDS, BaseURL: "https://kds.example/"}}},
			norm: []VCEKSource{{Type: SourceOfflineStore, Path: "/srv/kds"}, {Type: SourceKDS, BaseURL: "https://kds.example"}},
		},
		{
			name: "array of tables, defaults",
			toml: `[[snp_verifier.vcek_sources]]
type = "OfflineStore"
[[snp_verifier.vcek_sources]]
type = "KDS"
unknown = true`,
			want: Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore}, {Type: SourceKDS}}},
			norm: []VCEKSource{{Type: SourceOfflineStore, Path: DefaultOfflineStorePath}, {Type: SourceKDS, BaseURL: DefaultKDSURL}},
		},
		{
			name: "json with nulls",
			json: `{"snp_verifier":{"vcek_sources":[{"type":"KDS","base_url":null},{"type":"OfflineStore","path":null}]}}`,
			want: Config{VCEKSources: []VCEKSource{{Type: SourceKDS}, {Type: SourceOfflineStore}}},
			norm: []VCEKSource{{Type: SourceKDS, BaseURL: DefaultKDSURL}, {Type: SourceOfflineStore, Path: DefaultOfflineStorePath}},
		},
		{
			name: "empty list: no source",
			json: `{"snp_verifier":{"vcek_sources":[]}}`,
			want: Config{VCEKSources: []VCEKSource{}},
			norm: []VCEKSource{},
		},
		{name: "null snp_verifier", json: `{"snp_verifier":null}`, want: Config{}, norm: []VCEKSource{{Type: SourceKDS, BaseURL: DefaultKDSURL}}},
		{name: "unknown type", json: `{"snp_verifier":{"vcek_sources":[{"type":"Azure"}]}}`, errMsg: true},
		{name: "type is case-sensitive", json: `{"snp_verifier":{"vcek_sources":[{"type":"kds"}]}}`, errMsg: true},
		{name: "missing type", json: `{"snp_verifier":{"vcek_sources":[{"base_url":"https://x"}]}}`, errMsg: true},
		{name: "base_url not a string", json: `{"snp_verifier":{"vcek_sources":[{"type":"KDS","base_url":1}]}}`, errMsg: true},
		{name: "base_url not http", json: `{"snp_verifier":{"vcek_sources":[{"type":"KDS","base_url":"file:///etc"}]}}`, errMsg: true},
		{name: "vcek_sources not a list", json: `{"snp_verifier":{"vcek_sources":{"type":"KDS"}}}`, errMsg: true},
		{name: "snp_verifier not a table", json: `{"snp_verifier":"KDS"}`, errMsg: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if tc.toml != "" {
				if _, err := toml.Decode(tc.toml, &m); err != nil {
					t.Fatal(err)
				}
			} else if err := json.Unmarshal([]byte(tc.json), &m); err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseConfig(m)
			if tc.errMsg {
				if !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("ParseConfig = %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, tc.want) {
				t.Fatalf("got %#v, want %#v", cfg, tc.want)
			}
			norm, err := cfg.normalize()
			if err != nil || !reflect.DeepEqual(norm, tc.norm) {
				t.Fatalf("normalized %#v (%v), want %#v", norm, err, tc.norm)
			}
			if _, err := New(cfg, Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		opts Options
	}{
		{"unknown source type", Config{VCEKSources: []VCEKSource{{Type: "Vault"}}}, Options{}},
		{"KDS with a path", Config{VCEKSources: []VCEKSource{{Type: SourceKDS, Path: "/x"}}}, Options{}},
		{"OfflineStore with a URL", Config{VCEKSources: []VCEKSource{{Type: SourceOfflineStore, BaseURL: "https://x"}}}, Options{}},
		{"URL with a query", Config{VCEKSources: []VCEKSource{{Type: SourceKDS, BaseURL: "https://x/?a=b"}}}, Options{}},
		{"cache dir is a file", Config{}, Options{CacheDir: file}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.opts); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
