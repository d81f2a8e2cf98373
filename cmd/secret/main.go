// Command secret makes and opens CoCo sealed secrets, with the
// subcommands and flags of upstream guest-components' secret tool:
//
//	secret keygen [--kid sealed-signing] [--output-dir .]
//	secret seal --signing-kid <kid> --signing-jwk-path <private.json> \
//	    vault --resource-uri kbs:///default/sealed-secret/test --provider kbs \
//	          [--provider-settings <JSON>] [--annotations <JSON>]
//	secret seal --signing-kid <kid> --signing-jwk-path <private.json> \
//	    envelope --key-id kbs:///default/kek/1 --file-path <plaintext> kbs --kek-path <32-byte KEK>
//	secret unseal --file-path <sealed> [--aa-kbc-params cc_kbc::<url>|offline_fs_kbc::null]
//	    [--skip-verification] [--key-dir /run/confidential-containers/cdh/sealed-secret]
//
// Envelope secrets use the "kbs" KMS (a KEK stored in the KBS; see
// sealedsecret.KBSKMS). Upstream's aliyun, aws and ehsm KMSes are not in
// this build. unseal with cc_kbc asks the attestation-agent at $AA_SOCKET
// (default unix:///run/confidential-containers/attestation-agent/
// attestation-agent.sock) for the KBS token.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/cdh"
	"github.com/go-trustee/go-trustee/sealedsecret"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "secret:", err)
		os.Exit(1)
	}
}

const usage = `usage: secret <keygen|seal|unseal> [flags]; secret <subcommand> -h for its flags`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	var err error
	switch args[0] {
	case "keygen":
		err = keygen(args[1:], stdout, stderr)
	case "seal":
		err = seal(args[1:], stdout, stderr)
	case "unseal":
		err = unseal(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, usage)
		return nil
	default:
		return fmt.Errorf("unknown subcommand %q; %s", args[0], usage)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("secret "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// stringFlag registers a flag under its long and short names.
func stringFlag(fs *flag.FlagSet, p *string, long, short, def, help string) {
	fs.StringVar(p, long, def, help)
	if short != "" {
		fs.StringVar(p, short, def, help)
	}
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", stderr)
	var kid, dir string
	stringFlag(fs, &kid, "kid", "", "sealed-signing", "key ID, also the file name prefix")
	stringFlag(fs, &dir, "output-dir", "", ".", "directory to write <kid>-private.json and <kid>-public.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if kid == "" || strings.ContainsAny(kid, `/\`) || kid == "." || kid == ".." {
		return fmt.Errorf("--kid %q cannot name a file", kid)
	}
	priv, pub, err := sealedsecret.GenerateJWK(kid, nil)
	if err != nil {
		return err
	}
	privPath := filepath.Join(dir, kid+"-private.json")
	pubPath := filepath.Join(dir, kid+"-public.json")
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists", p)
		}
	}
	if err := writeJSON(privPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeJSON(pubPath, pub, 0o644); err != nil {
		os.Remove(privPath)
		return err
	}
	fmt.Fprintf(stdout, "Generated %s and %s\n", privPath, pubPath)
	return nil
}

// writeJSON writes v pretty-printed with sorted keys (as upstream's
// serde_json::json! does) to a new file.
func writeJSON(path string, v sealedsecret.JWK, mode os.FileMode) error {
	var m map[string]any
	b, _ := json.Marshal(v)
	json.Unmarshal(b, &m)
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeNew(path, append(out, '\n'), mode)
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func readBounded(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, max)
	}
	return b, nil
}

func jsonObject(name, s string) (sealedsecret.Map, error) {
	m := sealedsecret.Map{}
	if s == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, fmt.Errorf("%s must be a JSON object", name)
	}
	return m, nil
}

func seal(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("seal", stderr)
	var kid, jwkPath string
	stringFlag(fs, &kid, "signing-kid", "", "", "kid of the verification key: a kbs:/// URI or a file name in the guest's key directory (required)")
	stringFlag(fs, &jwkPath, "signing-jwk-path", "", "", "P-256 private JWK to sign with (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if kid == "" || jwkPath == "" {
		return errors.New("seal: --signing-kid and --signing-jwk-path are required")
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return errors.New("seal: name the secret type: vault or envelope")
	}
	jwk, err := readBounded(jwkPath, 64<<10)
	if err != nil {
		return fmt.Errorf("reading the signing JWK: %w", err)
	}
	key, err := sealedsecret.ParsePrivateJWK(jwk)
	if err != nil {
		return fmt.Errorf("signing JWK: %w", err)
	}
	var s *sealedsecret.Secret
	switch rest[0] {
	case "vault":
		vs := newFlags("seal vault", stderr)
		var uri, provider, settings, annotations string
		stringFlag(vs, &uri, "resource-uri", "r", "", "name of the secret at the provider, e.g. kbs:///default/sealed-secret/test (required)")
		stringFlag(vs, &provider, "provider", "p", "", "vault provider, e.g. kbs (required)")
		stringFlag(vs, &settings, "provider-settings", "", "", "provider settings (JSON object)")
		stringFlag(vs, &annotations, "annotations", "a", "", "annotations (JSON object)")
		if err := vs.Parse(rest[1:]); err != nil {
			return err
		}
		if uri == "" || provider == "" {
			return errors.New("seal vault: --resource-uri and --provider are required")
		}
		ps, err := jsonObject("--provider-settings", settings)
		if err != nil {
			return err
		}
		an, err := jsonObject("--annotations", annotations)
		if err != nil {
			return err
		}
		fmt.Fprintln(stderr, "Warning: Secrets must be provisioned to provider separately.")
		s = &sealedsecret.Secret{Version: sealedsecret.Version, Vault: &sealedsecret.VaultSecret{
			Name: uri, Provider: provider, ProviderSettings: ps, Annotations: an}}
	case "envelope":
		s, err = sealEnvelope(rest[1:], stderr)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("seal: unknown secret type %q (vault or envelope)", rest[0])
	}
	out, err := sealedsecret.Seal(s, key, kid, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	return nil
}

func sealEnvelope(args []string, stderr io.Writer) (*sealedsecret.Secret, error) {
	es := newFlags("seal envelope", stderr)
	var keyID, file string
	stringFlag(es, &keyID, "key-id", "k", "", "ID of the KEK at the KMS; for kbs a kbs:/// URI (required)")
	stringFlag(es, &file, "file-path", "f", "", "file holding the secret (required)")
	if err := es.Parse(args); err != nil {
		return nil, err
	}
	if keyID == "" || file == "" {
		return nil, errors.New("seal envelope: --key-id and --file-path are required")
	}
	rest := es.Args()
	if len(rest) == 0 {
		return nil, errors.New("seal envelope: name the KMS provider: kbs")
	}
	plaintext, err := readBounded(file, sealedsecret.MaxSealedBytes/2)
	if err != nil {
		return nil, err
	}
	defer clear(plaintext)
	switch rest[0] {
	case "kbs":
		ks := newFlags("seal envelope kbs", stderr)
		var kekPath string
		stringFlag(ks, &kekPath, "kek-path", "", "", "file holding the 32-byte KEK stored in the KBS at --key-id (required)")
		if err := ks.Parse(rest[1:]); err != nil {
			return nil, err
		}
		if kekPath == "" {
			return nil, errors.New("seal envelope kbs: --kek-path is required")
		}
		if !sealedsecret.IsResourceURI(keyID) {
			return nil, fmt.Errorf("seal envelope kbs: --key-id %q is not a kbs:/// URI", keyID)
		}
		kek, err := readBounded(kekPath, 64)
		if err != nil {
			return nil, err
		}
		defer clear(kek)
		if len(kek) != 32 {
			return nil, fmt.Errorf("the KEK in %s has %d bytes, want 32", kekPath, len(kek))
		}
		return sealedsecret.NewEnvelope(plaintext, "kbs", keyID, nil,
			func(dek []byte) ([]byte, sealedsecret.Map, error) { return sealedsecret.WrapKeyKBS(kek, dek, nil) }, nil)
	case "ali", "aws", "ehsm", "dummy":
		return nil, fmt.Errorf("seal envelope: the %s KMS is not supported by this build; use kbs", rest[0])
	}
	return nil, fmt.Errorf("seal envelope: unknown KMS provider %q", rest[0])
}

func unseal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("unseal", stderr)
	var file, keyPath, kbcParams, keyDir string
	var skip bool
	stringFlag(fs, &file, "file-path", "f", "", "file holding the sealed secret (required)")
	stringFlag(fs, &keyPath, "key-path", "k", "", "credential directory of the aliyun, ehsm and aws KMSes (not in this build)")
	stringFlag(fs, &kbcParams, "aa-kbc-params", "a", "", "KBC for kbs:// kids and the kbs provider: cc_kbc::<url> or offline_fs_kbc::null (default $AA_KBC_PARAMS)")
	stringFlag(fs, &keyDir, "key-dir", "", sealedsecret.DefaultKeyDir, "directory of the JWKs of local kids")
	fs.BoolVar(&skip, "skip-verification", false, "do not verify the signature (insecure)")
	fs.BoolVar(&skip, "s", false, "do not verify the signature (insecure)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if file == "" {
		return errors.New("unseal: --file-path is required")
	}
	if kbcParams == "" {
		kbcParams = os.Getenv("AA_KBC_PARAMS")
	}
	raw, err := readBounded(file, sealedsecret.MaxSealedBytes+1024)
	if err != nil {
		return fmt.Errorf("reading the sealed secret: %w", err)
	}
	opts := sealedsecret.Options{KeyDir: keyDir, SkipVerification: skip}
	if kbcParams != "" {
		kbc, err := newKBC(kbcParams)
		if err != nil {
			return err
		}
		opts.KBS = kbc
	}
	u, err := sealedsecret.New(opts)
	if err != nil {
		return err
	}
	blob, err := u.Unseal(ctx, []byte(strings.TrimSpace(string(raw))))
	if err != nil {
		return fmt.Errorf("unseal failed: %w", err)
	}
	defer clear(blob)
	out := file + ".unsealed"
	if err := writeNew(out, blob, 0o600); err != nil {
		return fmt.Errorf("writing the unsealed secret: %w", err)
	}
	fmt.Fprintf(stdout, "unseal success, secret is saved in newly generated file: '%s'\n", out)
	return nil
}

// newKBC builds the KBC of "<kbc>::<url>".
func newKBC(params string) (cdh.KBC, error) {
	name, url, err := cdh.ParseKBCParams(params)
	if err != nil {
		return nil, err
	}
	switch name {
	case cdh.KBCOfflineFS:
		return cdh.NewOfflineFS(cdh.OfflineFiles(os.Getenv), nil)
	case cdh.KBCCC:
		sock := os.Getenv("AA_SOCKET")
		if sock == "" {
			sock = aa.DefaultSocket
		}
		aac, err := aa.NewClient(sock)
		if err != nil {
			return nil, err
		}
		return cdh.NewCC(cdh.CCOptions{URL: url, Tokens: cdh.TokenFunc(aac.GetToken)})
	}
	return nil, fmt.Errorf("unknown kbc %q (cc_kbc or offline_fs_kbc)", name)
}
