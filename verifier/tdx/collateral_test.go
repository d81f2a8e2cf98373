package tdx

import (
	"bytes"
	"strings"
	"testing"

	tdxtesting "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
)

func chainHeader(m map[string][]string) []byte {
	for _, v := range m {
		return []byte(v[0])
	}
	return nil
}

// TestCollateralSignatures verifies real Intel collateral documents with
// the recorded TCB signing chain: go-tdx-guest's (FMSPC 50806f000000) and
// upstream's tcbInfo.json (FMSPC 00A06D080000) and enclaveIdentity.json,
// signed by the same Intel TCB signing key.
func TestCollateralSignatures(t *testing.T) {
	root := IntelRootCA()
	key, err := uncompressedKey(root)
	if err != nil {
		t.Fatal(err)
	}
	tcbChain := chainHeader(tdxtesting.TcbInfoHeader)
	qeChain := chainHeader(tdxtesting.QeIdentityHeader)
	tests := []struct {
		name  string
		doc   []byte
		chain []byte
		build func(doc, chain, key []byte) error
	}{
		{"recorded TCB info", testdata.TcbInfoBody, tcbChain, func(d, c, k []byte) error { _, err := buildTCBInfo(d, c, k); return err }},
		{"upstream tcbInfo.json", readVector(t, "tcbInfo.json"), tcbChain, func(d, c, k []byte) error { _, err := buildTCBInfo(d, c, k); return err }},
		{"recorded QE identity", testdata.QeIdentityBody, qeChain, func(d, c, k []byte) error { _, err := buildQEIdentity(d, c, k); return err }},
		{"upstream enclaveIdentity.json", readVector(t, "enclaveIdentity.json"), qeChain, func(d, c, k []byte) error { _, err := buildQEIdentity(d, c, k); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.build(tc.doc, tc.chain, key); err != nil {
				t.Fatal(err)
			}
			// Any change to the signed body breaks the signature.
			i := bytes.Index(tc.doc, []byte(`"nextUpdate":"20`)) + len(`"nextUpdate":"20`)
			tampered := append([]byte(nil), tc.doc...)
			tampered[i]++
			if err := tc.build(tampered, tc.chain, key); err == nil || !strings.Contains(err.Error(), "signature") {
				t.Fatalf("tampered document: %v", err)
			}
			// So does another trust anchor.
			if err := tc.build(tc.doc, tc.chain, append([]byte{4}, make([]byte, 64)...)); err == nil {
				t.Fatal("accepted with another root key")
			}
		})
	}
	if it, err := buildTCBInfo(readVector(t, "tcbInfo.json"), tcbChain, key); err != nil || len(it.info.TDXModuleIdentities) != 2 {
		t.Fatalf("tcbInfo.json module identities: %v", err)
	}
}
