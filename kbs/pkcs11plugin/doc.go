// Package pkcs11plugin is upstream Trustee's pkcs11 KBS plugin
// (kbs/src/plugins/implementations/pkcs11.rs, cargo feature "pkcs11"):
// resources kept in a PKCS#11 token (an HSM, or SoftHSM2), and an RSA key
// pair of the token that wraps and unwraps data. It is built on
// github.com/ThalesGroup/crypto11 and so needs cgo; a build without cgo
// has the same API, but Open fails with ErrNoCgo ("the pkcs11 plugin
// needs a build with cgo (CGO_ENABLED=1)").
//
//	[[plugins]]
//	name = "pkcs11"
//	module = "/usr/lib/softhsm/libsofthsm2.so" # the PKCS#11 library, required
//	slot_index = 0                  # index among the slots holding a token, default 0
//	pin = "12345678"                # user PIN, required
//	rsa_mechanism = "RsaPkcsOaep"   # or "RsaPkcsTest"; default "RsaPkcsOaep"
//	lookup_label = "trustee-wrap"   # CKA_LABEL of the wrap key pair; default "": none
//
// rsa_mechanism "RsaPkcsOaep" is RSA-OAEP with SHA-256 and MGF1-SHA-256,
// "RsaPkcsTest" RSA-OAEP with SHA-1 and MGF1-SHA-1 (upstream's enum doc
// says PKCS#1 v1.5; its code, which this follows, says OAEP-SHA-1); both
// with an empty OAEP label. The names are case-sensitive, as upstream's
// serde.
//
// # Endpoints (under /kbs/v0/pkcs11/)
//
//   - GET resource/<repository>/<type>/<tag>: attested guest (token and
//     resource policy with plugin "pkcs11"); the value, sealed to the TEE
//     key as a JWE like the resource plugin.
//   - POST resource/<repository>/<type>/<tag>: admin; the body is stored.
//   - DELETE resource/<repository>/<type>/<tag>: admin (upstream has it in
//     code, not in its docs).
//   - POST wrap-key: admin; the body is encrypted with the public key
//     labelled lookup_label (RSA-OAEP per rsa_mechanism) and the
//     ciphertext (modulus-size bytes) returned as is.
//   - GET wrap-key: attested guest; the body is a ciphertext of POST
//     wrap-key, decrypted in the token with the private key labelled
//     lookup_label; the plaintext is returned sealed to the TEE key.
//   - Any other method (PUT, ...) and DELETE wrap-key: upstream's "invalid
//     method" (PluginInternalError, 401). Route has upstream's dispatch and
//     texts ("accessed path is invalid", "invalid path", "invalid path:
//     illegal ResourceDesc format.").
//
// # Objects in the token (readable by upstream and written as upstream does)
//
// A resource is one object with CKA_LABEL "<repository>/<type>/<tag>":
// upstream's template CKA_CLASS CKO_SECRET_KEY, CKA_KEY_TYPE
// CKK_GENERIC_SECRET, CKA_EXTRACTABLE true, CKA_PRIVATE true, CKA_VALUE
// the bytes, plus CKA_TOKEN true (see below). Reading takes the first
// object with the label whose class is CKO_SECRET_KEY or CKO_DATA (what
// `pkcs11-tool --write-object --type secrkey|data --label ...` makes) and
// returns its CKA_VALUE; a value the token will not reveal (CKA_SENSITIVE)
// is upstream's "Key does not have value attribute available.". The wrap
// key is an RSA key pair whose private key has CKA_LABEL lookup_label and
// whose public key has the same CKA_LABEL (and CKA_ID, when set), as
// upstream's test script makes with `pkcs11-tool --keypairgen --key-type
// rsa:4096 --label <lookup_label> --usage-decrypt`.
//
// # Invariants
//
//   - Sizes: a resource is at most MaxResourceBytes (256 KiB) written and
//     read; above that a write is refused before the token is touched
//     (ErrTooLarge, 413 in the KBS). A wrap plaintext is at most the OAEP
//     bound of the key (modulus - 2 x hash - 2 bytes: 446 for RSA-4096 and
//     SHA-256) and an unwrap body exactly the modulus size; anything else
//     is ErrInvalidInput before the private key is used. The KBS payload
//     limit bounds every body first. A label lookup considers at most 64
//     objects.
//   - The PIN is passed to C_Login (through crypto11) and nowhere else: it
//     is never logged, never in an error (start-up errors are also scrubbed
//     of a PIN of 4 or more characters), and Config.String/GoString print
//     it as <redacted>. A
//     resource value or a wrap plaintext is never logged or put in an
//     error.
//   - Sessions: crypto11 holds one logged-in session and a pool of at most
//     16 for the key-pair operations; resource operations open their own
//     session (at most 16 at once, waiting for a slot honours the request's
//     context) and close it when done; C_FindObjectsFinal always follows
//     C_FindObjectsInit. Close waits for running operations, logs out,
//     closes every session and releases the module (C_Finalize when no
//     other context of the process holds it); later calls fail with
//     ErrClosed; Close is idempotent. The KBS calls it from Server.Close.
//   - Concurrency: every method is safe for concurrent use. Writes and
//     deletes of resources exclude each other and reads within the process,
//     so a reader sees the old or the new value, never none or two.
//     Several KBS replicas sharing a token are not coordinated (neither
//     are upstream's).
//   - Start-up (Open) either returns a working plugin or a clear error,
//     never a panic, and leaves nothing open: a missing module file ("unable
//     to open pkcs11 module: stat ..."), a file that is no PKCS#11 library,
//     slot_index past the slots with a token (upstream's "Slot index out of
//     range", with the count) or naming an uninitialised token (SoftHSM's
//     free slot), a wrong PIN ("the pin is wrong: CKR_PIN_INCORRECT"; one
//     C_Login, so a token's retry counter moves by one per start), and,
//     with lookup_label set, a token without that RSA key pair or one that
//     cannot unwrap with rsa_mechanism (below). In the KBS these are
//     ErrInvalidConfig "Initialize 'pkcs11' plugin failed: ...".
//     CheckConfig only runs Config.Validate: no library is loaded.
//     PKCS#11 login is per process: while another context of this process
//     is logged in to the same token, crypto11 takes the answer
//     CKR_USER_ALREADY_LOGGED_IN as success, so a second plugin's PIN is
//     then not checked.
//   - A token that goes away later (removed, logged out, device error) makes
//     the requests fail (InternalError, 500, in the KBS); there is no
//     re-login. PKCS#11 calls cannot be cancelled: a hung token blocks the
//     requests that reach it (crypto11's pool wait is bounded at 30 s).
//
// # Where we differ from upstream, and why
//
//   - Resources are token objects (CKA_TOKEN true). Upstream's template
//     leaves CKA_TOKEN out, so its resources are session objects of its one
//     session: gone when the KBS stops, and invisible to other processes.
//     Objects we write are read by upstream, and the token objects an admin
//     provisions for upstream are read by us.
//   - A POST replaces: the new object is created, then the older objects of
//     the label are destroyed. Upstream creates one more object per POST
//     and reads whichever the token lists first. DELETE destroys every
//     object of the label (upstream: the first).
//   - Lookups are restricted to CKO_SECRET_KEY and CKO_DATA objects
//     (upstream: any object with the label, so a key pair labelled like a
//     resource would be "read" or deleted).
//   - Wrapping encrypts in software with the public key exported from the
//     token (crypto11 has no C_Encrypt; the result is the same RSA-OAEP
//     ciphertext upstream's C_Encrypt gives); unwrapping decrypts in the
//     token. So that a wrap that can never be unwrapped is impossible,
//     Open wraps and unwraps a random probe when lookup_label is set: a
//     token that cannot do rsa_mechanism (SoftHSM 2.6 has no OAEP-SHA-256:
//     upstream's own test expects that failure) fails start-up, where
//     upstream starts and fails every wrap. Upstream's docs say a key pair
//     is generated at start-up; its code does not, nor do we: a missing key
//     pair is a start-up error (upstream panics on the first wrap-key
//     request). The key pair is looked up on each request, as upstream, so
//     a key replaced in the token is used without a restart.
//   - Errors: upstream answers every plugin failure PluginInternalError
//     (401) with the detail "Plugin internal error". Here, as for the
//     KBS's other plugins, the detail carries upstream's text ("Plugin
//     internal error: Could not find object with label default/a/b"); a
//     malformed path is InvalidRequestPath (404), found before any
//     authentication; an oversized resource is 413; a failure of the
//     token itself is InternalError (500) so that the guest does not
//     re-attest for it.
//   - pin must not be empty (upstream accepts pin = ""); slot_index is
//     checked against 0..255 (upstream's u8) by CheckConfig.
//
// Left out, as upstream: key generation, token initialisation, token
// selection by label or serial and PKCS#11 URIs (slot_index is the only
// selector).
package pkcs11plugin
