package image

import "errors"

// Sentinel errors of the image pull. Callers match them with errors.Is.
var (
	// ErrConfig: the [image] configuration, registry configuration or
	// auth.json is malformed.
	ErrConfig = errors.New("invalid image configuration")
	// ErrInvalidReference: the image reference does not parse.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrBlocked: the registry configuration blocks the reference.
	ErrBlocked = errors.New("registry blocked by the registry configuration")
	// ErrNotPermitted: the image security policy denied the image (no or
	// no valid signature, or a reject requirement).
	ErrNotPermitted = errors.New("image denied by the security policy")
	// ErrTooLarge: a manifest or image config exceeds its bound.
	ErrTooLarge = errors.New("image metadata too large")
	// ErrLayerTooLarge: a layer has too many entries.
	ErrLayerTooLarge = errors.New("layer too large")
	// ErrUnsupportedMediaType: a manifest or layer media type is not
	// supported (e.g. encrypted layers without a decrypter).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrDigestMismatch: a layer's uncompressed sha256 differs from the
	// config's diff_id, or a blob differs from its descriptor.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBadLayer: a layer stream is corrupt (decompression or tar).
	ErrBadLayer = errors.New("corrupt layer")
	// ErrUnsafeEntry: a layer entry would escape the rootfs or create a
	// device node; the whole pull is refused.
	ErrUnsafeEntry = errors.New("unsafe layer entry")
	// ErrBundle: the bundle path is unusable (not absolute, or rootfs
	// already populated).
	ErrBundle = errors.New("invalid bundle path")
	// ErrRegistry: the registry could not be reached or refused a request.
	ErrRegistry = errors.New("registry request failed")
)
