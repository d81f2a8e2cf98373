package cdh

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/internal/logging"
)

// Defaults of the configuration, as upstream's ttRPC build has them.
const (
	DefaultSocket   = "unix:///run/confidential-containers/cdh.sock"
	DefaultLogLevel = "info"
	// DefaultCredentialDir is where [[credentials]] may be written; a path
	// outside it is refused.
	DefaultCredentialDir = "/run/confidential-containers/cdh/kbs"
)

// KBC names.
const (
	KBCCC        = "cc_kbc"
	KBCOfflineFS = "offline_fs_kbc"
)

// Config is the confidential-data-hub configuration (cdh.toml or its JSON
// form), with upstream's keys and defaults.
type Config struct {
	// Socket is the ttRPC listen address, "unix://<absolute path>".
	Socket string
	// SkipSealedSecretVerification accepts sealed secrets without
	// checking their signature. Insecure.
	SkipSealedSecretVerification bool
	// AASocket is the attestation-agent's ttRPC address; aa.DefaultSocket
	// by default.
	AASocket string
	// KBC selects how resources are read.
	KBC KBCConfig
	// Credentials are fetched once at start and written to their Path.
	Credentials []Credential
	// Image is the [image] table, kept as decoded for the image pull.
	Image map[string]any
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string
}

// KBCConfig is the [kbc] table.
type KBCConfig struct {
	// Name is KBCCC or KBCOfflineFS.
	Name string
	// URL is the KBS root URL (cc_kbc).
	URL string
	// KBSCert is an extra PEM root CA for an https URL; "" for none.
	KBSCert string
}

// Credential is one [[credentials]] entry.
type Credential struct {
	ResourceURI string
	Path        string
}

// ErrInvalidConfig marks every configuration error.
var ErrInvalidConfig = errors.New("cdh: invalid configuration")

// rawConfig mirrors the file; pointers tell absent from empty.
type rawConfig struct {
	Socket                       *string         `toml:"socket" json:"socket"`
	SkipSealedSecretVerification bool            `toml:"skip_sealed_secret_verification" json:"skip_sealed_secret_verification"`
	AA                           *rawAA          `toml:"aa" json:"aa"`
	KBC                          *rawKBC         `toml:"kbc" json:"kbc"`
	Credentials                  []rawCredential `toml:"credentials" json:"credentials"`
	Image                        map[string]any  `toml:"image" json:"image"`
	Log                          *rawLog         `toml:"log" json:"log"`
}

type rawAA struct {
	AASocket *string `toml:"aa_socket" json:"aa_socket"`
}

type rawKBC struct {
	Name    *string `toml:"name" json:"name"`
	URL     *string `toml:"url" json:"url"`
	KBSCert *string `toml:"kbs_cert" json:"kbs_cert"`
}

type rawCredential struct {
	ResourceURI *string `toml:"resource_uri" json:"resource_uri"`
	Path        *string `toml:"path" json:"path"`
}

type rawLog struct {
	Level *string `toml:"level" json:"level"`
}

// Format of a configuration document.
type Format int

// Formats.
const (
	FormatTOML Format = iota
	FormatJSON
)

// LoadConfig reads a configuration file: JSON when its name ends in
// ".json", TOML otherwise (upstream picks the format by extension). The
// file is read through limits.MaxConfigBytes.
func LoadConfig(file string) (*Config, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrInvalidConfig, file, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrInvalidConfig, file, err)
	}
	format := FormatTOML
	if strings.EqualFold(filepath.Ext(file), ".json") {
		format = FormatJSON
	}
	c, err := DecodeConfig(b, format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// DecodeConfig decodes and validates a configuration document. Unknown
// keys are ignored, as upstream does; [kbc] with its name is required, and
// every [[credentials]] entry needs both keys.
func DecodeConfig(b []byte, format Format) (*Config, error) {
	if len(b) > limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidConfig, len(b), limits.MaxConfigBytes)
	}
	var raw rawConfig
	switch format {
	case FormatJSON:
		d := json.NewDecoder(bytes.NewReader(b))
		if err := d.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if d.More() {
			return nil, fmt.Errorf("%w: trailing data after the JSON document", ErrInvalidConfig)
		}
	default:
		if _, err := toml.Decode(string(b), &raw); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	}
	c := &Config{
		Socket:                       DefaultSocket,
		SkipSealedSecretVerification: raw.SkipSealedSecretVerification,
		AASocket:                     aa.DefaultSocket,
		Image:                        raw.Image,
		LogLevel:                     DefaultLogLevel,
	}
	if raw.Socket != nil {
		c.Socket = *raw.Socket
	}
	if raw.AA != nil && raw.AA.AASocket != nil {
		c.AASocket = *raw.AA.AASocket
	}
	if raw.Log != nil && raw.Log.Level != nil {
		c.LogLevel = *raw.Log.Level
	}
	if raw.KBC == nil || raw.KBC.Name == nil {
		return nil, fmt.Errorf("%w: the [kbc] table with its name is required", ErrInvalidConfig)
	}
	c.KBC.Name = *raw.KBC.Name
	if raw.KBC.URL != nil {
		c.KBC.URL = *raw.KBC.URL
	}
	if raw.KBC.KBSCert != nil {
		c.KBC.KBSCert = *raw.KBC.KBSCert
	}
	for i, rc := range raw.Credentials {
		if rc.ResourceURI == nil || rc.Path == nil {
			return nil, fmt.Errorf("%w: [[credentials]] entry %d needs resource_uri and path", ErrInvalidConfig, i+1)
		}
		c.Credentials = append(c.Credentials, Credential{ResourceURI: *rc.ResourceURI, Path: *rc.Path})
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the values: the socket scheme, the KBC name and URL, the
// KBS certificate, the credentials' URIs and paths (against
// DefaultCredentialDir) and the log level.
func (c *Config) Validate() error {
	if _, err := SocketPath(c.Socket); err != nil {
		return fmt.Errorf("%w: socket: %v", ErrInvalidConfig, err)
	}
	if _, err := SocketPath(c.AASocket); err != nil {
		return fmt.Errorf("%w: aa_socket: %v", ErrInvalidConfig, err)
	}
	switch c.KBC.Name {
	case KBCCC:
		if c.KBC.URL == "" {
			return fmt.Errorf("%w: kbc %s needs a url", ErrInvalidConfig, KBCCC)
		}
		if err := validateKBSURL(c.KBC.URL); err != nil {
			return fmt.Errorf("%w: kbc %v", ErrInvalidConfig, err)
		}
	case KBCOfflineFS:
	default:
		return fmt.Errorf("%w: unknown kbc name %q, only %s and %s", ErrInvalidConfig, c.KBC.Name, KBCCC, KBCOfflineFS)
	}
	if strings.TrimSpace(c.KBC.KBSCert) != "" {
		if _, err := CertPool(c.KBC.KBSCert); err != nil {
			return fmt.Errorf("%w: kbs_cert: %v", ErrInvalidConfig, err)
		}
	}
	for _, cr := range c.Credentials {
		if err := ValidateCredentialPath(DefaultCredentialDir, cr.Path); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if !isResourceURI(cr.ResourceURI) {
			return fmt.Errorf("%w: credential resource_uri %q is not a kbs:// URI", ErrInvalidConfig, cr.ResourceURI)
		}
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return nil
}

func validateKBSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("url %q must be http(s)://host[:port][/prefix]", s)
	}
	return nil
}

// SocketPath returns the file of a "unix://<absolute path>" address.
func SocketPath(addr string) (string, error) {
	p, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return "", fmt.Errorf("address %q must start with unix://", addr)
	}
	if !path.IsAbs(p) || path.Clean(p) != p {
		return "", fmt.Errorf("address %q must name a clean absolute path", addr)
	}
	return p, nil
}

// ValidateCredentialPath checks that p may receive a credential: an
// absolute path strictly inside base with no "." or ".." segment (upstream's
// rule, without its prefix quirk that also admits base+"x/...").
func ValidateCredentialPath(base, p string) error {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("credential path %q has a %q segment", p, seg)
		}
	}
	if !strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/") || path.Clean(p) == path.Clean(base) {
		return fmt.Errorf("credential path %q is not inside %s", p, base)
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("credential path %q names a directory", p)
	}
	return nil
}

// CertPool parses PEM certificates into a pool with the system roots.
func CertPool(pemText string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	rest := []byte(pemText)
	n := 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

// ParseLogLevel maps upstream's level names to slog levels (one parser for
// every command: internal/logging.ParseLevel); trace is below
// debug.
func ParseLogLevel(s string) (slog.Level, error) { return logging.ParseLevel(s) }

// DefaultConfig is the configuration without -c: the KBC comes from the
// AA_KBC_PARAMS environment variable, else from the kernel command line
// parameter agent.aa_kbc_params, else offline_fs_kbc. getenv and cmdline
// are injected (os.Getenv and the text of /proc/cmdline in production).
func DefaultConfig(getenv func(string) string, cmdline string) (*Config, error) {
	c := &Config{Socket: DefaultSocket, AASocket: aa.DefaultSocket, LogLevel: DefaultLogLevel,
		KBC: KBCConfig{Name: KBCOfflineFS}}
	params := getenv("AA_KBC_PARAMS")
	if params == "" {
		for _, f := range strings.Fields(cmdline) {
			if v, ok := strings.CutPrefix(f, "agent.aa_kbc_params="); ok {
				params = v
				break
			}
		}
	}
	if params != "" {
		kbc, kbsURL, err := ParseKBCParams(params)
		if err != nil {
			return nil, err
		}
		c.KBC.Name, c.KBC.URL = kbc, kbsURL
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseKBCParams splits "<kbc>::<url>" (aa_kbc_params).
func ParseKBCParams(s string) (kbc, kbsURL string, err error) {
	parts := strings.Split(s, "::")
	if len(parts) != 2 {
		return "", "", fmt.Errorf("%w: aa_kbc_params %q is not <kbc>::<url>", ErrInvalidConfig, s)
	}
	return parts[0], parts[1], nil
}

// CredentialsFromCmdline returns the credentials of the kernel parameter
// cdh.kbs_resources=<uri>::<path>,<uri>::<path>; malformed items are
// skipped, as upstream does.
func CredentialsFromCmdline(cmdline string) []Credential {
	var out []Credential
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "cdh.kbs_resources=")
		if !ok {
			continue
		}
		for _, item := range strings.Split(v, ",") {
			if uri, p, ok := strings.Cut(item, "::"); ok {
				out = append(out, Credential{ResourceURI: uri, Path: p})
			}
		}
		break
	}
	return out
}

func isResourceURI(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || (scheme != "kbs" && !strings.HasPrefix(scheme, "kbs+")) {
		return false
	}
	_, err := client.ParseResourceURI(s)
	return err == nil
}
