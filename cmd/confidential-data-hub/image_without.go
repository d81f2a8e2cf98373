//go:build !containers_image_openpgp

package main

import (
	"log/slog"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/cdh"
)

// registerImageService: this build has no image pull. Signature
// verification needs go.podman.io/image's pure-Go OpenPGP, selected by the
// build tag containers_image_openpgp (scripts/test.sh and the release build
// set it); without it PullImage answers "not implemented", as an upstream
// data hub built without its image feature does.
func registerImageService(_ *ttrpc.Server, _ *cdh.Hub, _ cdh.Measurer, log *slog.Logger) (func(), error) {
	log.Warn("built without the containers_image_openpgp tag: PullImage (signed and encrypted images) is not available")
	return func() {}, nil
}
