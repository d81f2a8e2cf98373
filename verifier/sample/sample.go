// Package sample implements the verifiers of upstream Trustee's "sample"
// and "sampledevice" TEEs: software-only stand-ins for a CPU and a device
// TEE that let the whole attestation flow be exercised without hardware.
//
// # Security
//
// Sample evidence carries no signature: anyone can produce it. The only
// check is the binding of the expected report data, compared byte for byte
// (no padding). The claims are fixed values that the shipped default
// attestation policy never accepts as genuine hardware, so a sample
// attestation is "contraindicated" unless an operator registers reference
// values for it. Never enable sample reference values in production.
//
// # Evidence
//
//	{"svn":"1","report_data":"<standard base64 of the report data>"}
//
// svn is a required string; report_data defaults to "". Unknown members are
// ignored. Evidence is size-bounded by limits.MaxEvidenceBytes.
package sample

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/verifier"
)

// Evidence is the evidence document of both sample TEEs.
type Evidence struct {
	SVN        string `json:"svn"`
	ReportData string `json:"report_data"`
}

// ParseEvidence decodes sample evidence the way upstream's serde types do:
// a JSON object whose "svn" is a string and whose optional "report_data" is
// a string; member names are matched exactly.
func ParseEvidence(evidence []byte) (Evidence, error) {
	if len(evidence) > limits.MaxEvidenceBytes {
		return Evidence{}, fmt.Errorf("%w: %d bytes exceeds the limit of %d", verifier.ErrMalformedEvidence, len(evidence), limits.MaxEvidenceBytes)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(evidence, &fields); err != nil || fields == nil {
		return Evidence{}, fmt.Errorf("%w: Deserialize Quote failed: not a JSON object", verifier.ErrMalformedEvidence)
	}
	var ev Evidence
	raw, ok := fields["svn"]
	if !ok {
		return Evidence{}, fmt.Errorf("%w: Deserialize Quote failed: missing field `svn`", verifier.ErrMalformedEvidence)
	}
	if err := decodeString(raw, &ev.SVN); err != nil {
		return Evidence{}, fmt.Errorf("%w: Deserialize Quote failed: svn: %v", verifier.ErrMalformedEvidence, err)
	}
	if raw, ok := fields["report_data"]; ok {
		if err := decodeString(raw, &ev.ReportData); err != nil {
			return Evidence{}, fmt.Errorf("%w: Deserialize Quote failed: report_data: %v", verifier.ErrMalformedEvidence, err)
		}
	}
	return ev, nil
}

func decodeString(raw json.RawMessage, dst *string) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return fmt.Errorf("expected a string, got null")
	}
	return json.Unmarshal(raw, dst)
}

// checkReportData compares the expected report data with the evidence's,
// exactly. A nil expectation is not checked.
func checkReportData(ev Evidence, expected []byte) error {
	if expected == nil {
		return nil
	}
	// Standard padded base64 without line breaks, as Rust's STANDARD engine.
	if strings.ContainsAny(ev.ReportData, "\r\n") {
		return fmt.Errorf("%w: base64 decode report data for sample evidence: invalid character", verifier.ErrMalformedEvidence)
	}
	got, err := base64.StdEncoding.Strict().DecodeString(ev.ReportData)
	if err != nil {
		return fmt.Errorf("%w: base64 decode report data for sample evidence: %v", verifier.ErrMalformedEvidence, err)
	}
	if !bytes.Equal(got, expected) {
		return fmt.Errorf("%w: REPORT_DATA is different from that in Sample Quote", verifier.ErrReportDataMismatch)
	}
	return nil
}

type cpu struct{}

// New returns the verifier of the "sample" TEE (class cpu). Its claims are
// upstream's: svn, report_data (the evidence's base64 string),
// launch_digest "abcde", platform_version {major 1, minor 4}, debug false,
// and, when an init-data digest is expected, init_data: the standard base64
// of that digest. The sample TEE cannot bind init-data, so the digest is
// reported, not verified.
func New() verifier.Verifier { return cpu{} }

func (cpu) Evaluate(_ context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	if err := checkReportData(ev, exp.ReportData); err != nil {
		return nil, fmt.Errorf("evidence identity verification: %w", err)
	}
	claims := verifier.Claims{
		"svn":           ev.SVN,
		"report_data":   ev.ReportData,
		"launch_digest": "abcde",
		"platform_version": map[string]any{
			"major": 1,
			"minor": 4,
		},
		"debug": false,
	}
	if exp.InitDataDigest != nil {
		claims["init_data"] = base64.StdEncoding.EncodeToString(exp.InitDataDigest)
	}
	return []verifier.Result{{Claims: claims, Class: verifier.ClassCPU}}, nil
}

type device struct{}

// NewDevice returns the verifier of the "sampledevice" TEE (class gpu),
// whose claims are svn and report_data.
func NewDevice() verifier.Verifier { return device{} }

func (device) Evaluate(_ context.Context, evidence []byte, exp verifier.Expected) ([]verifier.Result, error) {
	ev, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	if err := checkReportData(ev, exp.ReportData); err != nil {
		return nil, fmt.Errorf("evidence identity verification: %w", err)
	}
	claims := verifier.Claims{"svn": ev.SVN, "report_data": ev.ReportData}
	return []verifier.Result{{Claims: claims, Class: verifier.ClassGPU}}, nil
}
