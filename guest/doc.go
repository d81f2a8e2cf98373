// Package guest is the root of everything that runs inside the TEE, beside
// the workload: the processes kata-agent starts in a confidential pod and
// the libraries only they use. Nothing under guest/ is linked into the
// server (kbs, restful-as), and nothing here imports a server package: the
// guest reaches the server only over the KBS protocol (package client) and
// shares only wire forms with it (protocol, protocol/evidence/...).
//
//	guest/aa          attestation-agent: evidence, tokens, init-data, runtime measurements (ttRPC)
//	guest/aael        the AA event log writer (AAEL records, WAL recovery, CCEL trimming)
//	guest/attester    how evidence is obtained, one package per TEE, with detection
//	guest/cdh         confidential-data-hub: resources, sealed secrets, key unwrapping, image pull (ttRPC)
//	guest/asr         api-server-rest: the workload's HTTP API on 127.0.0.1:8006
//	guest/image       image pull into a bundle: policy.json signatures, decrypt, unpack
//	guest/proto       generated ttRPC code of upstream's AA and CDH protos
//
// The binaries keep upstream's names: cmd/attestation-agent,
// cmd/confidential-data-hub, cmd/api-server-rest.
package guest
