package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/resourcepolicy"
	"github.com/go-trustee/go-trustee/token/jwt"
)

// builtinPolicy returns a built-in resource policy of package
// resourcepolicy: allow_all, deny_all, affirming or default. Unlike
// upstream's binary, which sends deny_all for --default, "default" is the
// KBS's default policy, as the flag's help says.
func builtinPolicy(name string) []byte {
	switch name {
	case "allow_all":
		return resourcepolicy.AllowAllPolicy()
	case "deny_all":
		return resourcepolicy.DenyAllPolicy()
	case "affirming":
		return resourcepolicy.AffirmingPolicy()
	case "default":
		return resourcepolicy.DefaultPolicy()
	}
	panic("kbs-client: no built-in policy " + name)
}

// dockerComposeAdminTokenPath is upstream's first fallback, relative to the
// working directory (a Trustee checkout running docker compose).
const dockerComposeAdminTokenPath = "kbs/config/docker-compose/admin-token"

type configFlags struct {
	adminTokenFile string
	authPrivateKey string
}

// adminToken resolves the admin token as upstream: --admin-token-file, then
// ./kbs/config/docker-compose/admin-token, then ~/.trustee/admin-token,
// else anonymous. --auth-private-key (legacy servers ≤ v0.15) signs one.
func (a *app) adminToken(f *configFlags, now time.Time) (string, error) {
	switch {
	case f.adminTokenFile != "" && f.authPrivateKey != "":
		return "", errors.New("--admin-token-file and --auth-private-key are mutually exclusive")
	case f.adminTokenFile != "":
		b, err := readFile(f.adminTokenFile, limits.MaxTokenBytes)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case f.authPrivateKey != "":
		b, err := readFile(f.authPrivateKey, limits.MaxConfigBytes)
		if err != nil {
			return "", err
		}
		return signLegacyAdminToken(b, now)
	}
	if b, err := readFile(dockerComposeAdminTokenPath, limits.MaxTokenBytes); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if home := a.getenv("HOME"); home != "" {
		p := filepath.Join(home, ".trustee", "admin-token")
		if _, err := os.Stat(p); err == nil {
			b, err := readFile(p, limits.MaxTokenBytes)
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(b)), nil
		}
	}
	a.log.Warn("No admin token configured. Sending anonymous admin requests; this only works when KBS admin authorization_mode is InsecureAllowAll.")
	return "", nil
}

// signLegacyAdminToken signs the admin JWT old kbs-client versions made on
// the fly with an Ed25519 key (PKCS#8 PEM): jwt.SignAdminToken with
// jwt.AdminTokenLifetime. Servers since v0.21 also want "role".
func signLegacyAdminToken(pemBytes []byte, now time.Time) (string, error) {
	key, err := jwt.ParseAdminKeyPEM(pemBytes)
	if err != nil {
		return "", fmt.Errorf("--auth-private-key: %w", err)
	}
	return jwt.SignAdminToken(key, now, jwt.AdminTokenLifetime)
}

func newConfigCmd(a *app) *cobra.Command {
	f := &configFlags{}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Set and Config KBS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("config needs a subcommand; see kbs-client config --help")
		},
	}
	cmd.PersistentFlags().StringVar(&f.adminTokenFile, "admin-token-file", "", "Admin bearer token file path. If omitted, tries kbs/config/docker-compose/admin-token (relative to cwd), then ~/.trustee/admin-token, then sends unauthenticated admin requests")
	cmd.PersistentFlags().StringVar(&f.authPrivateKey, "auth-private-key", "", "Legacy (KBS <= v0.15): Ed25519 private key (PKCS#8 PEM) to sign an admin token with")

	// admin wraps a subcommand body with a client and the admin token.
	admin := func(body func(cmd *cobra.Command, args []string, c *client.Client, token string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			token, err := a.adminToken(f, time.Now())
			if err != nil {
				return err
			}
			opts, err := a.clientOptions()
			if err != nil {
				return err
			}
			c, err := client.New(opts)
			if err != nil {
				return err
			}
			return body(cmd, args, c, token)
		}
	}

	var apType, apID, apFile string
	setAP := &cobra.Command{
		Use:   "set-attestation-policy --policy-file FILE",
		Short: "Set attestation verification policy",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			policy, err := readFile(apFile, limits.MaxPolicyBytes)
			if err != nil {
				return err
			}
			if apID == "" {
				a.log.Warn("no policy_id set; using default_cpu")
			}
			if err := c.SetAttestationPolicy(cmd.Context(), token, apType, apID, policy); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Set attestation policy success \n policy: %s\n", base64.StdEncoding.EncodeToString(policy))
			return nil
		}),
	}
	setAP.Flags().StringVar(&apType, "type", "", `Policy format type, e.g "rego" (default "rego")`)
	setAP.Flags().StringVar(&apID, "id", "", `Policy ID, e.g "default_cpu" (default "default_cpu")`)
	setAP.Flags().StringVar(&apFile, "policy-file", "", "Policy file path")
	setAP.MarkFlagRequired("policy-file")

	var rpFile string
	var rpAllowAll, rpDenyAll, rpAffirming, rpDefault bool
	setRP := &cobra.Command{
		Use:   "set-resource-policy (--policy-file FILE | --allow-all | --deny-all | --affirming | --default)",
		Short: "Set resource policy",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			var policy []byte
			switch {
			case rpFile != "":
				b, err := readFile(rpFile, limits.MaxPolicyBytes)
				if err != nil {
					return err
				}
				policy = b
			case rpAllowAll:
				policy = builtinPolicy("allow_all")
			case rpDenyAll:
				policy = builtinPolicy("deny_all")
			case rpAffirming:
				policy = builtinPolicy("affirming")
			case rpDefault:
				policy = builtinPolicy("default")
			default:
				return errors.New("no policy specified")
			}
			if err := c.SetResourcePolicy(cmd.Context(), token, policy); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Set resource policy success \n policy: %s\n", base64.StdEncoding.EncodeToString(policy))
			return nil
		}),
	}
	setRP.Flags().StringVar(&rpFile, "policy-file", "", "Policy file path")
	setRP.Flags().BoolVar(&rpAllowAll, "allow-all", false, "Use built-in policy that allows access to all resources")
	setRP.Flags().BoolVar(&rpDenyAll, "deny-all", false, "Use built-in policy that does not allow access to any resources")
	setRP.Flags().BoolVar(&rpAffirming, "affirming", false, "Use built-in policy that only releases resources if the attestation token is affirming (i.e. the attestation policy is met)")
	setRP.Flags().BoolVar(&rpDefault, "default", false, "Use built-in default policy that allows access to all resources unless the sample evidence is provided")
	setRP.MarkFlagsMutuallyExclusive("policy-file", "allow-all", "deny-all", "affirming", "default")

	getRP := &cobra.Command{
		Use:   "get-resource-policy",
		Short: "List the resource policies of the KBS (upstream answers their IDs)",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			b, err := c.GetResourcePolicy(cmd.Context(), token)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(bytes.TrimSpace(b)))
			return nil
		}),
	}

	var srPath, srFile string
	setRes := &cobra.Command{
		Use:   "set-resource --path REPO/TYPE/TAG --resource-file FILE",
		Short: "Set confidential resource",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			data, err := readFile(srFile, limits.MaxResourceBytes)
			if err != nil {
				return err
			}
			if err := c.SetResource(cmd.Context(), token, srPath, data); err != nil {
				return err
			}
			// Upstream echoes the resource in base64 here; a secret does not
			// belong in terminal scrollback or CI logs, so we do not.
			fmt.Fprintf(a.stdout, "Set resource success \n resource: %d bytes\n", len(data))
			return nil
		}),
	}
	setRes.Flags().StringVar(&srPath, "path", "", "KBS Resource path, e.g my_repo/resource_type/123abc")
	setRes.Flags().StringVar(&srFile, "resource-file", "", "Resource file path")
	setRes.MarkFlagRequired("path")
	setRes.MarkFlagRequired("resource-file")

	var drPath string
	delRes := &cobra.Command{
		Use:   "delete-resource --path REPO/TYPE/TAG",
		Short: "Delete confidential resource",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			if err := c.DeleteResource(cmd.Context(), token, drPath); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Delete resource success")
			return nil
		}),
	}
	delRes.Flags().StringVar(&drPath, "path", "", "KBS Resource path, e.g my_repo/resource_type/123abc")
	delRes.MarkFlagRequired("path")

	var rvID string
	getRV := &cobra.Command{
		Use:   "get-reference-value --id ID",
		Short: "Get reference value from RVPS given reference value ID",
		Args:  cobra.NoArgs,
		RunE: admin(func(cmd *cobra.Command, _ []string, c *client.Client, token string) error {
			b, err := c.GetReferenceValue(cmd.Context(), token, rvID)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(bytes.TrimSpace(b)))
			return nil
		}),
	}
	getRV.Flags().StringVar(&rvID, "id", "", "The ID of the reference value.")
	getRV.MarkFlagRequired("id")

	var asInteger, asBool, asSingle bool
	setRV := &cobra.Command{
		Use:   "set-sample-reference-value NAME VALUE",
		Short: "Add a sample reference value to the RVPS (proxied by the KBS; the RVPS must enable the sample extractor)",
		Args:  cobra.ExactArgs(2),
		RunE: admin(func(cmd *cobra.Command, args []string, c *client.Client, token string) error {
			msg, err := sampleReferenceValueMessage(args[0], args[1], asInteger, asBool, asSingle)
			if err != nil {
				return err
			}
			if err := c.SetReferenceValue(cmd.Context(), token, msg); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Reference Values Updated")
			return nil
		}),
	}
	setRV.Flags().BoolVar(&asInteger, "as-integer", false, "If set, the value will be parsed as an integer.")
	setRV.Flags().BoolVar(&asBool, "as-bool", false, "If set, the value will be parsed as a bool.")
	setRV.Flags().BoolVar(&asSingle, "as-single-value", false, "By default the reference value will be a single member in a list. If this argument is set, the reference value will be a single value.")
	setRV.MarkFlagsMutuallyExclusive("as-integer", "as-bool")

	cmd.AddCommand(setAP, setRP, getRP, setRes, delRes, getRV, setRV)
	return cmd
}

// sampleReferenceValueMessage builds the RVPS message of upstream's
// set-sample-reference-value: {"payload":<b64 std of {"<name>":[value]}>,
// "type":"sample","version":"0.1.0"} (keys sorted as serde_json writes a
// json! map). The value is a string unless asInteger (a 32-bit integer) or
// asBool ("true"/"false"); asSingle drops the enclosing list.
func sampleReferenceValueMessage(name, value string, asInteger, asBool, asSingle bool) ([]byte, error) {
	var v any = value
	switch {
	case asInteger && asBool:
		return nil, errors.New("--as-integer and --as-bool are mutually exclusive")
	case asInteger:
		n, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("value %q is not a 32-bit integer", value)
		}
		v = n
	case asBool:
		switch value {
		case "true":
			v = true
		case "false":
			v = false
		default:
			return nil, fmt.Errorf("value %q is not a bool (true or false)", value)
		}
	}
	if !asSingle {
		v = []any{v}
	}
	payload, err := marshalNoEscape(map[string]any{name: v})
	if err != nil {
		return nil, err
	}
	return marshalNoEscape(struct {
		Payload string `json:"payload"`
		Type    string `json:"type"`
		Version string `json:"version"`
	}{base64.StdEncoding.EncodeToString(payload), "sample", "0.1.0"})
}

// marshalNoEscape encodes like serde_json: compact, no HTML escaping.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
