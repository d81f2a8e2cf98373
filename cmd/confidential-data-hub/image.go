//go:build containers_image_openpgp

package main

import (
	"fmt"
	"log/slog"

	"github.com/containerd/ttrpc"

	"github.com/go-trustee/go-trustee/guest/cdh"
)

// registerImageService serves api.ImagePullService/PullImage: signature
// policy first, then streamed decrypt → decompress → untar.
func registerImageService(srv *ttrpc.Server, hub *cdh.Hub, m cdh.Measurer, log *slog.Logger) (func(), error) {
	svc, err := cdh.NewImageService(hub, cdh.ImageOptions{AA: m, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("image pull service: %w", err)
	}
	svc.Register(srv)
	return func() { svc.Close() }, nil
}
