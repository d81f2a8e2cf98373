package protocol

import (
	"encoding/hex"
	"testing"
)

func TestCanonicalHashVectors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"attestation-service lib.rs vector", `{"b":1,"a":"test","c":{"d":"e"}}`,
			"e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"},
		{"primary runtime data", `{"tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"},"nonce":"bm9uY2U=","additional-evidence":""}`,
			"d20490d30e5f16cba693abc1ca3c31ed977d2722d0adf01a980972d16913dc38f103c1f12abf477df0523af2b12e4b43"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Canonicalize([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			got, err := SHA384.Sum(c)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tc.want {
				t.Fatalf("hash = %x, want %s", got, tc.want)
			}
		})
	}
}

func TestReportDataTypedKey(t *testing.T) {
	// Unknown JWK members (kid, use) must not change the report data.
	var withExtras TeePubKey
	if err := withExtras.UnmarshalJSON([]byte(`{"kty":"EC","kid":"k1","use":"enc","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AAAA","y":"BBBB"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := ReportData(SHA384, "bm9uY2U=", withExtras, "")
	if err != nil {
		t.Fatal(err)
	}
	const want = "d20490d30e5f16cba693abc1ca3c31ed977d2722d0adf01a980972d16913dc38f103c1f12abf477df0523af2b12e4b43"
	if hex.EncodeToString(got) != want {
		t.Fatalf("report data = %x, want %s", got, want)
	}
}

func TestSelectedHashAlgorithm(t *testing.T) {
	tests := []struct {
		extra   string
		want    HashAlgorithm
		wantErr bool
	}{
		{`""`, SHA384, false},
		{``, SHA384, false},
		{`{}`, SHA384, false},
		{`{"selected-hash-algorithm":"sha512"}`, SHA512, false},
		{`{"selected-hash-algorithm":"SHA256"}`, SHA256, false},
		{`{"selected-hash-algorithm":5}`, "", true},
		{`{"selected-hash-algorithm":"md5"}`, "", true},
	}
	for _, tc := range tests {
		got, err := SelectedHashAlgorithm([]byte(tc.extra))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("SelectedHashAlgorithm(%s) = %q, %v; want %q, err=%v", tc.extra, got, err, tc.want, tc.wantErr)
		}
	}
}
