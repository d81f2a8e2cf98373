package image

import "errors"

// Sentinel errors of the image pull. Callers match them with errors.Is.
var (
	// ErrInvalidConfig: the [image] configuration, registry configuration or
	// auth.json is malformed.
	ErrInvalidConfig = errors.New("image: invalid configuration")
	// ErrInvalidReference: the image reference does not parse.
	ErrInvalidReference = errors.New("image: invalid image reference")
	// ErrBlocked: the registry configuration blocks the reference.
	ErrBlocked = errors.New("image: registry blocked by the registry configuration")
	// ErrNotPermitted: the image security policy denied the image (no or
	// no valid signature, or a reject requirement).
	ErrNotPermitted = errors.New("image: image denied by the security policy")
	// ErrTooLarge: a manifest or image config exceeds its bound.
	ErrTooLarge = errors.New("image: image metadata too large")
	// ErrLayerTooLarge: a layer has too many entries.
	ErrLayerTooLarge = errors.New("image: layer too large")
	// ErrUnsupportedMediaType: a manifest or layer media type is not
	// supported (e.g. encrypted layers without a decrypter).
	ErrUnsupportedMediaType = errors.New("image: unsupported media type")
	// ErrDigestMismatch: a layer's uncompressed sha256 differs from the
	// config's diff_id, or a blob differs from its descriptor.
	ErrDigestMismatch = errors.New("image: digest mismatch")
	// ErrBadLayer: a layer stream is corrupt (decompression or tar).
	ErrBadLayer = errors.New("image: corrupt layer")
	// ErrUnsafeEntry: a layer entry would escape the rootfs or create a
	// device node; the whole pull is refused.
	ErrUnsafeEntry = errors.New("image: unsafe layer entry")
	// ErrBundle: the bundle path is unusable (not absolute, or rootfs
	// already populated).
	ErrBundle = errors.New("image: invalid bundle path")
	// ErrRegistry: the registry could not be reached or refused a request.
	ErrRegistry = errors.New("image: registry request failed")
)
