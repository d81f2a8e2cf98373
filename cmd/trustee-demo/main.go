// Command trustee-demo runs the main job of go-trustee end to end on
// embedded defaults, with no configuration and no external service:
//
//  1. starts a KBS on 127.0.0.1 (HTTPS with an ephemeral certificate, a
//     temporary LocalFs store, the built-in Attestation Service with an
//     ephemeral token key, admin API behind an ephemeral Ed25519 key);
//  2. provisions a secret through the admin API;
//  3. shows the default resource policy denying the sample TEE, with the
//     rule that denied;
//  4. installs a DEVELOPMENT policy that admits the sample TEE;
//  5. attests with the sample TEE through the client library and prints the
//     released secret.
//
// The sample TEE proves nothing: it exists to exercise the protocol without
// hardware. Never admit it in production.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/logging"
	"github.com/go-trustee/go-trustee/kbs"
)

// devPolicy admits the sample TEE for the resource plugin. DEVELOPMENT ONLY.
const devPolicy = `package policy
import rego.v1

# DEVELOPMENT ONLY: admits the sample TEE, which proves nothing.
default allow := false

allow if {
	data.plugin == "resource"
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "trustee-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("trustee-demo", flag.ContinueOnError)
	secret := fs.String("secret", "the key of my encrypted fine-tuned LLM", "the secret to provision and release")
	path := fs.String("path", "default/llm/decryption-key", "resource path <repo>/<type>/<tag>")
	verbose := fs.Bool("v", false, "show the KBS logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	step := func(n int, format string, a ...any) {
		fmt.Fprintf(out, "[%d/5] %s\n", n, fmt.Sprintf(format, a...))
	}

	dir, err := os.MkdirTemp("", "trustee-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	certPEM, err := writeHTTPSKeyPair(dir)
	if err != nil {
		return err
	}
	adminKey, err := writeAdminKey(dir)
	if err != nil {
		return err
	}
	cfgTOML := fmt.Sprintf(`
[http_server]
sockets = ["127.0.0.1:0"]
private_key = %q
certificate = %q

[admin]
authorization_mode = "AuthenticatedAuthorization"
[admin.authentication.bearer_jwt]
identity_providers = [{ issuer = "trustee-demo", audience = "kbs", public_key_uri = %q }]
[admin.authorization.regex_acl]
acls = [{ role = "admin", allowed_endpoints = "^/kbs/v0/.+$" }]

[attestation_service]
type = "coco_as_builtin"

[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = %q

[[plugins]]
name = "resource"
`, filepath.Join(dir, "https.key"), filepath.Join(dir, "https.crt"), filepath.Join(dir, "admin.pub"), filepath.Join(dir, "storage"))
	cfg, _, err := kbs.ParseConfig([]byte(cfgTOML))
	if err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	log, err := logging.New(logOut, slog.LevelDebug, logging.FormatText)
	if err != nil {
		return err
	}
	srv, err := kbs.New(ctx, cfg, kbs.Options{Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	ls, err := srv.Listen()
	if err != nil {
		return err
	}
	url := "https://" + ls[0].Addr().String()
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ls) }()
	defer func() { cancel(); <-served }()
	step(1, "KBS listening on %s (HTTPS, LocalFs store in %s, ephemeral token key, built-in attestation service)", url, filepath.Join(dir, "storage"))

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	adminToken, err := mintAdminToken(adminKey)
	if err != nil {
		return err
	}
	admin, err := client.New(client.Options{URL: url, RootCAs: roots})
	if err != nil {
		return err
	}
	if err := admin.SetResource(ctx, adminToken, *path, []byte(*secret)); err != nil {
		return fmt.Errorf("provisioning the secret: %w", err)
	}
	step(2, "admin provisioned %d bytes at kbs:///%s", len(*secret), *path)

	guest, err := client.New(client.Options{URL: url, RootCAs: roots, Attester: sample.New(false)})
	if err != nil {
		return err
	}
	_, err = guest.GetResource(ctx, *path)
	switch {
	case errors.Is(err, client.ErrPolicyDeny):
		step(3, "default resource policy denied the sample TEE at once, as it must:\n      %v", err)
	case err == nil:
		return errors.New("the default policy released a secret to the sample TEE")
	default:
		return fmt.Errorf("reading with the default policy: %w", err)
	}

	if err := admin.SetResourcePolicy(ctx, adminToken, []byte(devPolicy)); err != nil {
		return fmt.Errorf("installing the development policy: %w", err)
	}
	step(4, "WARNING: installed a DEVELOPMENT resource policy that admits the sample TEE. The sample TEE proves nothing; never do this in production.")

	guest, err = client.New(client.Options{URL: url, RootCAs: roots, Attester: sample.New(false), Bearer: true})
	if err != nil {
		return err
	}
	token, err := guest.Attest(ctx)
	if err != nil {
		return fmt.Errorf("attesting: %w", err)
	}
	got, err := guest.GetResource(ctx, *path)
	if err != nil {
		return fmt.Errorf("reading the secret: %w", err)
	}
	step(5, "sample TEE attested (%s) and the KBS released the secret (JWE, decrypted with the TEE key):\n      %q", tokenSummary(token), got)
	if string(got) != *secret {
		return errors.New("the released secret differs from the provisioned one")
	}
	return nil
}

// tokenSummary names the token's issuer, status and lifetime, not the token.
func tokenSummary(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "unreadable token"
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "unreadable token"
	}
	var c struct {
		Iss     string `json:"iss"`
		Exp     int64  `json:"exp"`
		Submods map[string]struct {
			Status string `json:"ear.status"`
		} `json:"submods"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "unreadable token"
	}
	return fmt.Sprintf("EAR token from %q, ear.status %q, expires %s", c.Iss, c.Submods["cpu0"].Status, time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
}

func writeHTTPSKeyPair(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "trustee-demo"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "https.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, os.WriteFile(filepath.Join(dir, "https.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

func writeAdminKey(dir string) (ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return priv, os.WriteFile(filepath.Join(dir, "admin.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
}

func mintAdminToken(key ed25519.PrivateKey) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(map[string]any{
		"iss": "trustee-demo", "aud": []string{"kbs"}, "sub": "demo-admin", "role": "admin",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}).Serialize()
}
