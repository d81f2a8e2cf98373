package cdh

import (
	"encoding/base64"
	"os"
	"testing"
)

// FuzzKeyProviderInput feeds arbitrary keyprovider requests (and the
// annotation packets inside them) to the decoders: they must never panic
// and must keep their size bounds.
func FuzzKeyProviderInput(f *testing.F) {
	v1, err := os.ReadFile(gcTestdata + "confidential-data-hub/hub/src/image/test/v1.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"attestation-agent":["YQ=="]}},"annotation":"` + base64.StdEncoding.EncodeToString(v1) + `"}}`))
	f.Add([]byte(`{"op":"keyunwrap","keyunwrapparams":{"annotation":[123,125]}}`))
	f.Add(v1)
	f.Fuzz(func(t *testing.T, in []byte) {
		if kp, err := ParseKeyProviderInput(in); err == nil {
			if len(kp.Annotation) > MaxAnnotationPacket {
				t.Fatalf("annotation of %d bytes passed the bound", len(kp.Annotation))
			}
			ParseAnnotationPacket(kp.Annotation)
		}
		if p, err := ParseAnnotationPacket(in); err == nil && (p.ProviderSettings == nil || p.Annotations == nil) {
			t.Fatal("packet without default maps")
		}
		for _, shape := range []ReplyShape{ReplyRust, ReplyGo} {
			if _, err := MarshalUnwrapReply(in, shape); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzConfig feeds arbitrary TOML and JSON to the configuration decoder:
// it must never panic, and what it accepts must validate.
func FuzzConfig(f *testing.F) {
	for _, p := range []string{gcTestdata + "confidential-data-hub/hub/tests/cdh.toml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Add([]byte("[kbc]\nname = \"cc_kbc\"\nurl = \"http://kbs:8080\"\n[[credentials]]\npath = \"/run/confidential-containers/cdh/kbs/a\"\nresource_uri = \"kbs:///a/b/c\"\n"), false)
	f.Add([]byte(`{"kbc":{"name":"offline_fs_kbc"},"credentials":[{"path":"/x","resource_uri":"kbs:///a/b/c"}]}`), true)
	f.Fuzz(func(t *testing.T, in []byte, asJSON bool) {
		format := FormatTOML
		if asJSON {
			format = FormatJSON
		}
		c, err := DecodeConfig(in, format)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		for _, cr := range c.Credentials {
			if ValidateCredentialPath(DefaultCredentialDir, cr.Path) != nil {
				t.Fatalf("accepted credential path %q", cr.Path)
			}
		}
	})
}

// FuzzOfflineFile feeds arbitrary offline_fs_kbc files to their decoder.
func FuzzOfflineFile(f *testing.F) {
	b, err := os.ReadFile(offlineFiles + "aa-offline_fs_kbc-keys.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) { DecodeOfflineFile(in) })
}
