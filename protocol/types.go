package protocol

import (
	"encoding/json"
	"fmt"
)

// Version is the only KBS protocol version spoken, by server and client.
const Version = "0.4.0"

// CookieName is the name of the session cookie set by /kbs/v0/auth.
const CookieName = "kbs-session-id"

// Tee names a TEE type as it appears in Request.tee.
type Tee string

// The TEE types of kbs-types. Unknown names are rejected when decoding.
const (
	TeeAzSnpVtpm    Tee = "az-snp-vtpm"
	TeeAzTdxVtpm    Tee = "az-tdx-vtpm"
	TeeNvidia       Tee = "nvidia"
	TeeNvidiaDPU    Tee = "nvidia-dpu"
	TeeSgx          Tee = "sgx"
	TeeSnp          Tee = "snp"
	TeeTdx          Tee = "tdx"
	TeeCca          Tee = "cca"
	TeeCsv          Tee = "csv"
	TeeSe           Tee = "se"
	TeeHygonDCU     Tee = "hygondcu"
	TeeTpm          Tee = "tpm"
	TeeSample       Tee = "sample"
	TeeSampleDevice Tee = "sampledevice"
)

var knownTees = map[Tee]bool{
	TeeAzSnpVtpm: true, TeeAzTdxVtpm: true, TeeNvidia: true, TeeNvidiaDPU: true,
	TeeSgx: true, TeeSnp: true, TeeTdx: true, TeeCca: true, TeeCsv: true,
	TeeSe: true, TeeHygonDCU: true, TeeTpm: true, TeeSample: true, TeeSampleDevice: true,
}

// Known reports whether t is a TEE type of the protocol.
func (t Tee) Known() bool { return knownTees[t] }

// UnmarshalJSON accepts only the TEE names of kbs-types.
func (t *Tee) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("tee: %w", err)
	}
	if !Tee(s).Known() {
		return fmt.Errorf("unknown variant `%s`", s)
	}
	*t = Tee(s)
	return nil
}

// Request is the body of POST /kbs/v0/auth.
type Request struct {
	Version     string          `json:"version"`
	Tee         Tee             `json:"tee"`
	ExtraParams json.RawMessage `json:"extra-params"`
}

// Challenge is the body of a successful /kbs/v0/auth response.
type Challenge struct {
	Nonce       string          `json:"nonce"`
	ExtraParams json.RawMessage `json:"extra-params"`
}

// EmptyExtraParams is the JSON string "" that upstream sends as the
// challenge's extra-params for every TEE but se (a constant: use
// json.RawMessage(EmptyExtraParams)).
const EmptyExtraParams = `""`

// InitData is the optional init-data of an Attestation.
type InitData struct {
	Format string `json:"format"`
	Body   string `json:"body"`
}

// RuntimeData is the runtime-data of an Attestation.
type RuntimeData struct {
	Nonce     string    `json:"nonce"`
	TeePubKey TeePubKey `json:"tee-pubkey"`
}

// CompositeEvidence is the tee-evidence of an Attestation: the primary TEE
// evidence and a JSON string mapping additional device TEEs to evidence
// (or "" when there is none).
type CompositeEvidence struct {
	PrimaryEvidence    json.RawMessage `json:"primary_evidence"`
	AdditionalEvidence string          `json:"additional_evidence"`
}

// Attestation is the body of POST /kbs/v0/attest.
type Attestation struct {
	InitData    *InitData         `json:"init-data"`
	RuntimeData RuntimeData       `json:"runtime-data"`
	TeeEvidence CompositeEvidence `json:"tee-evidence"`
}

// AttestationResponse is the body of a successful /kbs/v0/attest response.
type AttestationResponse struct {
	Token string `json:"token"`
}

// ErrorTypePrefix is the prefix of ErrorInformation.Type.
const ErrorTypePrefix = "https://github.com/confidential-containers/kbs/errors/"

// ErrorInformation is the body of every KBS error response.
type ErrorInformation struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// Kind returns the error variant named by Type ("PolicyDeny", ...), or ""
// when Type does not carry the upstream prefix.
func (e ErrorInformation) Kind() string {
	if len(e.Type) > len(ErrorTypePrefix) && e.Type[:len(ErrorTypePrefix)] == ErrorTypePrefix {
		return e.Type[len(ErrorTypePrefix):]
	}
	return ""
}
