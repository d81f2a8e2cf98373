// Package keyprovider is the ttrpc binding of the ocicrypt keyprovider
// service (package keyprovider, service KeyProviderService) that the
// confidential-data-hub serves for image decryption.
//
// The messages are ocicrypt's own generated types, aliased here: the wire
// definitions are identical (one bytes field each), and registering a
// second copy of "keyprovider.KeyProviderKeyWrapProtocolInput" in the
// protobuf registry would make every binary that also links ocicrypt
// (the image pull engine) panic at start. Only the ttrpc service file is
// generated (gen.sh).
package keyprovider

import ocikp "github.com/containers/ocicrypt/utils/keyprovider"

// KeyProviderKeyWrapProtocolInput carries the keyprovider JSON request.
type KeyProviderKeyWrapProtocolInput = ocikp.KeyProviderKeyWrapProtocolInput

// KeyProviderKeyWrapProtocolOutput carries the keyprovider JSON reply.
type KeyProviderKeyWrapProtocolOutput = ocikp.KeyProviderKeyWrapProtocolOutput
