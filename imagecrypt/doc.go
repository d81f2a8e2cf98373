// Package imagecrypt encrypts and decrypts OCI image layers the way
// Confidential Containers does: the layer is encrypted by
// github.com/containers/ocicrypt with its AES_256_CTR_HMAC_SHA256 block
// cipher, and the layer key options ("optsdata") are wrapped under a
// key-encryption key (KEK) that the KBS releases, after attestation, at the
// kbs:/// resource URI named "kid" in the layer's
// org.opencontainers.image.enc.keys.provider.attestation-agent annotation
// packet (v1 or v2, see ParseAnnotationPacket).
//
// The package wraps and unwraps in process (no keyprovider RPC) and
// registers nothing in ocicrypt's process-wide key wrapper registry: it uses
// ocicrypt's block cipher directly and reads and writes the two annotations
// itself, so a process may hold any number of decrypters with different
// KeySources. An ocicrypt user in the same process keeps whatever
// OCICRYPT_KEYPROVIDER_CONFIG configured for "attestation-agent".
//
// Invariants:
//   - Decrypt streams: memory use does not depend on the layer size. The
//     HMAC over the ciphertext is checked at EOF, and a mismatch (a
//     corrupted, truncated or foreign layer) fails the final Read with an
//     error matching both ErrIntegrity and io.ErrUnexpectedEOF; io.EOF is
//     only returned after the HMAC matched. Bytes handed out before EOF
//     are unauthenticated: consumers must stage them and discard all of
//     them when the stream fails.
//   - Every failure is closed: a missing, wrong or refused KEK, a malformed
//     packet or pubopts annotation, a wrong wrap type all make Decrypt fail
//     before a single byte is produced.
//   - KEKs and layer keys are never logged; buffers holding them are
//     cleared after use where this package owns them.
//   - Annotations read from a descriptor are size-bounded before parsing.
//
// The A256CTR wrap type is accepted for compatibility with coco_keyprovider;
// it does not authenticate the wrapped key options (A256GCM does), so
// tools in this repository default to A256GCM.
package imagecrypt
