// Package limits collects, in one place, the bounds applied to every piece
// of untrusted input the KBS, the Attestation Service and the guest client
// parse. Raising one is a security decision: each says what it protects.
package limits

const (
	// DefaultPayloadMB is the default request body limit of the KBS HTTP server,
	// in MiB (upstream payload_request_size).
	DefaultPayloadMB = 2
	// MaxHeaderBytes bounds request headers; large enough for a verbose EAR
	// token with many GPUs as Bearer (upstream is stuck at 128 KiB).
	MaxHeaderBytes = 512 << 10
	// MaxTokenBytes bounds a JWT (EAR, admin token) before it is parsed.
	MaxTokenBytes = 512 << 10
	// MaxJSONDepth bounds the nesting of JSON documents we canonicalize or feed
	// to the policy engine.
	MaxJSONDepth = 64
	// MaxEvidenceBytes bounds one TEE evidence document.
	MaxEvidenceBytes = 2 << 20
	// MaxResourceBytes bounds a stored resource.
	MaxResourceBytes = 32 << 20
	// MaxPolicyBytes bounds a Rego policy.
	MaxPolicyBytes = 1 << 20
	// MaxResponseBytes bounds a KBS response read by the client.
	MaxResponseBytes = 48 << 20
	// MaxCertChain bounds the number of certificates in an x5c chain.
	MaxCertChain = 10
	// MaxConfigBytes bounds a configuration file.
	MaxConfigBytes = 1 << 20
	// MaxInitDataBytes bounds an init-data TOML document, on the guest and in
	// the Attestation Service. Real documents carry a Kata agent policy and are
	// tens of KiB; the KBS request limit bounds them anyway.
	MaxInitDataBytes = 1 << 20
	// MaxKeyProviderBytes bounds one ocicrypt keyprovider request JSON (a
	// keywrap or keyunwrap message of a key provider or the data hub).
	MaxKeyProviderBytes = 1 << 20
)

// Bounds moved here from the packages that apply them (the package named
// in each comment).
const (
	// MaxAdminEndpointRegexBytes bounds an allowed_endpoints expression. (admin)
	MaxAdminEndpointRegexBytes = 4096
	// MaxJWKBytes bounds a verification or signing JWK. (sealedsecret)
	MaxJWKBytes = 64 << 10
	// MaxSealedSecretBytes bounds a sealed secret before it is decoded: a
	// Kubernetes Secret holds at most 1 MiB, so no legitimate sealed secret is
	// larger. (sealedsecret)
	MaxSealedSecretBytes = 1 << 20
	// MaxTeeKeyRSABits bounds the modulus of a guest RSA TEE key: upstream's
	// bound (rsa crate RsaPublicKey::new), so a key Trustee refuses is refused
	// here too. (protocol)
	MaxTeeKeyRSABits = 4096
	// MaxTeeKeyRSAExponent bounds the public exponent of a guest RSA TEE key (it
	// must fit a positive int32). (protocol)
	MaxTeeKeyRSAExponent = 1<<31 - 1
	// MaxJWEProtectedBytes bounds the encoded protected header. Real headers are
	// a few hundred bytes (an ML-KEM ciphertext would be ~1.5 KiB). (protocol)
	MaxJWEProtectedBytes = 16 << 10
	// MaxEndorsedTokenKeys bounds the endorsement cache; an Attestation Service
	// has one signing key, or a few during rotation. (token)
	MaxEndorsedTokenKeys = 64
	// MaxStoredValueBytes bounds a stored value (64 MiB). (storage)
	MaxStoredValueBytes = 64 << 20
	// MaxLocalJSONFileBytes bounds a namespace file: room for one value of
	// MaxStoredValueBytes in base64 plus many small ones. (storage/localjson)
	MaxLocalJSONFileBytes = 256 << 20
	// MaxRVPSMessageBytes bounds a register message before it is parsed. It
	// matches the KBS's default request body limit, through which messages
	// arrive. (rvps)
	MaxRVPSMessageBytes = 2 << 20
	// MaxImageKeyBytes bounds one fetched public key or keyring.
	// (guest/image/signature)
	MaxImageKeyBytes = 1 << 20
	// MaxUnqualifiedSearchRegistries bounds unqualified-search-registries in
	// registries.conf. (guest/image)
	MaxUnqualifiedSearchRegistries = 64
	// MaxRegistryEntries bounds the [[registry]] tables of registries.conf.
	// (guest/image)
	MaxRegistryEntries = 1024
	// MaxRegistryMirrors bounds the mirrors of one registry. (guest/image)
	MaxRegistryMirrors = 64
	// MaxExtraRootCertificates bounds the extra root certificates of the image
	// configuration. (guest/image)
	MaxExtraRootCertificates = 64
	// MaxIMDSResponseBytes bounds an IMDS response. (guest/attester/azsnpvtpm)
	MaxIMDSResponseBytes = 1 << 20
	// MaxTPMNVBytes bounds an NV index read (the Azure HCL report is ~2.6 KiB).
	// (guest/attester/tpm)
	MaxTPMNVBytes = 16 << 10
	// MaxTPMQuoteNonceBytes bounds the qualifying data of a TPM quote (a
	// TPM2B_DATA of at most a SHA-512 digest). (guest/attester/tpm)
	MaxTPMQuoteNonceBytes = 64
	// MaxSNPCertTableBytes bounds the certificate table the host returns.
	// (guest/attester/snp)
	MaxSNPCertTableBytes = 64 << 10
	// MaxEvidenceEventLogBytes bounds the event log (trimmed CCEL plus AAEL) put
	// in evidence: its base64 form must fit, with the quote, in
	// limits.MaxEvidenceBytes. (guest/aael)
	MaxEvidenceEventLogBytes = 1 << 20
	// MaxAAELTextBytes bounds one AAEL text ("<domain> <operation> <content>").
	// (guest/aael)
	MaxAAELTextBytes = 64 << 10
	// MaxHCLJWKs bounds the keys in the HCL report's variable data.
	// (verifier/tpmquote)
	MaxHCLJWKs = 64
	// MaxTPMRSAModulusBytes bounds an RSA modulus in an HCL key, in bytes
	// (RSA-16384). (verifier/tpmquote)
	MaxTPMRSAModulusBytes = 2048
	// MaxTPMAttestBytes bounds a TPMS_ATTEST (the TPM's own limit is the size of
	// TPM2B_ATTEST, well below this). (verifier/tpmquote)
	MaxTPMAttestBytes = 4096
	// MaxTPMSignatureBytes bounds a signature (an RSA-16384 signature is 2048
	// bytes). (verifier/tpmquote)
	MaxTPMSignatureBytes = 2048 + 6
	// MaxSNPCertBytes bounds one certificate (VCEK, VLEK, ASK, ARK) of SNP
	// evidence or a KDS answer. (verifier/snp)
	MaxSNPCertBytes = 64 << 10
	// MaxCachedEndorsements bounds the memory cache (upstream's HTTP cache holds
	// 1024 responses). (verifier/snp)
	MaxCachedEndorsements = 1024
	// MaxDenyReasonBytes bounds the deny reason put in an error detail.
	// (resourcepolicy)
	MaxDenyReasonBytes = 2048
	// MaxDenyReasonValueRunes bounds one input value quoted in a deny reason.
	// (resourcepolicy)
	MaxDenyReasonValueRunes = 96
	// MaxDenyReasonSubEvals bounds the rule evaluations explaining one deny.
	// (resourcepolicy)
	MaxDenyReasonSubEvals = 24
	// MaxDenyReasonRules bounds the rules a deny reason names. (resourcepolicy)
	MaxDenyReasonRules = 4
	// MaxImageKeysAnnotationBytes bounds the base64 keys annotation of an
	// encrypted layer. (imagecrypt)
	MaxImageKeysAnnotationBytes = 256 << 10
	// MaxImagePubOptsAnnotationBytes bounds the base64 pubopts annotation of an
	// encrypted layer. (imagecrypt)
	MaxImagePubOptsAnnotationBytes = 16 << 10
	// MaxImageAnnotationPacketBytes bounds one decoded annotation packet of an
	// encrypted layer, in the image tools and the data hub. (imagecrypt,
	// guest/cdh)
	MaxImageAnnotationPacketBytes = 64 << 10
	// MaxResourceURIBytes bounds a resource URI or path. (client)
	MaxResourceURIBytes = 4096
	// MaxTokenTimeSeconds bounds exp and nbf of a token (seconds since 1970,
	// about the year 36800): a larger value is a malformed token, not a long-
	// lived one. (client)
	MaxTokenTimeSeconds = 1 << 40
	// MaxErrorExcerptBytes bounds the excerpt of untrusted server text put in an
	// error. (client)
	MaxErrorExcerptBytes = 512
	// MaxAAELRequestBytes bounds the body of POST /aa/aael. (guest/asr)
	MaxAAELRequestBytes = 64 << 10
	// MaxASRequestBytes bounds a REST request body of the Attestation Service:
	// room for the largest evidence (MaxEvidenceBytes) once base64-encoded, with
	// its envelope. (as)
	MaxASRequestBytes = 4 << 20
	// MaxASVerificationRequests bounds the verification requests of one
	// evaluation. (as)
	MaxASVerificationRequests = 64
	// MaxEARSubmods bounds the EAR submodules of one token (upstream numbers
	// them with a u8 per class). (as)
	MaxEARSubmods = 256
	// MaxResourceCacheBytes is the default size of the data hub's resource
	// cache. (guest/cdh)
	MaxResourceCacheBytes = 4 << 20
	// MaxTDXCollateralBytes bounds one collateral response (a TCB info is ~10
	// KiB, a PCK CRL a few KiB). (verifier/tdx)
	MaxTDXCollateralBytes = 2 << 20
	// MaxTDXCollateralCacheEntries bounds the in-memory collateral cache (keys
	// are Intel-signed FMSPC URLs, so it is only a backstop). (verifier/tdx)
	MaxTDXCollateralCacheEntries = 512
	// MaxTDXQuoteBytes bounds a TDX quote (a real one is ~5 KiB, mostly the PCK
	// chain). (verifier/tdx)
	MaxTDXQuoteBytes = 64 << 10
	// MaxTDXVerifiedChains bounds the cache of verified PCK chains (one per
	// platform). (verifier/tdx)
	MaxTDXVerifiedChains = 1024
	// MaxTDXCollateralFileBytes bounds the offline collateral file, which holds
	// the collateral of every FMSPC of a fleet. (verifier/tdx)
	MaxTDXCollateralFileBytes = 64 << 20
)
