//go:build containers_image_openpgp

package cdh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-trustee/go-trustee/guest/aa"
	"github.com/go-trustee/go-trustee/guest/image"
	"github.com/go-trustee/go-trustee/guest/image/signature"
	"github.com/go-trustee/go-trustee/guest/proto/cdhproto/api"
	"github.com/go-trustee/go-trustee/imagecrypt"
)

// Runtime-measurement event of a successful pull (upstream CDH).
const (
	PullImageDomain    = "github.com/confidential-containers"
	PullImageOperation = "PullImage"
	// MeasurementTimeout bounds the ExtendRuntimeMeasurement call.
	MeasurementTimeout = 10 * time.Second
)

// ImageOptions configure NewImageService.
type ImageOptions struct {
	// AA receives a PullImage event after each successful pull; nil
	// skips it (upstream: no AA socket).
	AA Measurer
	// Decrypter decrypts encrypted layers; nil is imagecrypt with layer
	// keys fetched through the hub (GetResource of the packet's kid).
	Decrypter image.LayerDecrypter
	// Puller overrides the puller built from the hub's [image] table.
	Puller *image.Puller
	// Timeout bounds one PullImage; 0 is DefaultPullTimeout.
	Timeout time.Duration
	// Logger receives guest-side records; nil discards them.
	Logger *slog.Logger
}

// DefaultPullTimeout bounds one PullImage unless ImageOptions.Timeout says
// otherwise.
const DefaultPullTimeout = 10 * time.Minute

// ImageService serves api.ImagePullService: image-rs inside the hub. The
// image configuration ([image]) resources behind kbs:/// URIs are fetched
// through the hub at the first pull, i.e. after attestation.
type ImageService struct {
	puller  *image.Puller
	aa      Measurer
	timeout time.Duration
	log     *slog.Logger
}

// NewImageService builds the image pull service of hub from its [image]
// configuration table.
func NewImageService(hub *Hub, opts ImageOptions) (*ImageService, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultPullTimeout
	}
	p := opts.Puller
	if p == nil {
		if hub == nil {
			return nil, fmt.Errorf("%w: image service without a hub", ErrInvalidConfig)
		}
		cfg, err := image.ParseConfig(hub.Config().Image)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		dec := opts.Decrypter
		if dec == nil {
			dec = imagecrypt.NewLayerDecrypter(imagecrypt.KeySourceFunc(hub.GetResource))
		}
		if p, err = image.NewPuller(cfg, image.Options{Resources: hub, Decrypter: dec, Logger: opts.Logger}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	return &ImageService{puller: p, aa: opts.AA, timeout: opts.Timeout, log: opts.Logger}, nil
}

// Register adds api.ImagePullService to srv.
func (s *ImageService) Register(srv *ttrpc.Server) {
	api.RegisterImagePullServiceService(srv, s)
}

// Close releases the puller's files.
func (s *ImageService) Close() error { return s.puller.Close() }

// PullImage implements api.ImagePullServiceService.
func (s *ImageService) PullImage(ctx context.Context, req *api.ImagePullRequest) (*api.ImagePullResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	d, err := s.Pull(ctx, req.GetImageUrl(), req.GetBundlePath())
	if err != nil {
		s.log.Error("CDH request failed", "op", "pull image", "image", req.GetImageUrl(), "err", err, "elapsed", time.Since(start))
		return nil, imageRPCError(err)
	}
	s.log.Info("image pulled", "image", req.GetImageUrl(), "digest", d, "elapsed", time.Since(start))
	return &api.ImagePullResponse{ManifestDigest: d}, nil
}

// Pull pulls imageURL into bundlePath and records the PullImage event.
func (s *ImageService) Pull(ctx context.Context, imageURL, bundlePath string) (string, error) {
	d, err := s.puller.Pull(ctx, imageURL, bundlePath)
	if err != nil {
		return "", err
	}
	if s.aa == nil {
		return d, nil
	}
	mctx, cancel := context.WithTimeout(ctx, MeasurementTimeout)
	defer cancel()
	res, err := s.aa.ExtendRuntimeMeasurement(mctx, PullImageDomain, PullImageOperation, PullImageEvent(imageURL, d))
	if err != nil {
		return "", fmt.Errorf("extending the runtime measurement: %w", err)
	}
	switch res {
	case aa.MeasurementNotSupported:
		s.log.Warn("the platform does not support runtime measurement; PullImage remains successful")
	case aa.MeasurementNotEnabled:
		s.log.Warn("AA runtime measurement is disabled; PullImage remains successful")
	}
	return d, nil
}

// PullImageEvent is the event content upstream CDH records:
// {"image":"<url>", "digest":"<manifest digest>"}.
func PullImageEvent(imageURL, digest string) string {
	u, _ := json.Marshal(imageURL)
	d, _ := json.Marshal(digest)
	return `{"image":` + string(u) + `, "digest":` + string(d) + `}`
}

// imageRPCError maps pull errors to a ttRPC status naming the category.
func imageRPCError(err error) error {
	const op = "pull image"
	for _, m := range []struct {
		err  error
		code codes.Code
	}{
		{image.ErrNotPermitted, codes.PermissionDenied},
		{signature.ErrDenied, codes.PermissionDenied},
		{image.ErrBlocked, codes.PermissionDenied},
		{image.ErrInvalidReference, codes.InvalidArgument},
		{image.ErrBundle, codes.InvalidArgument},
		{image.ErrDigestMismatch, codes.DataLoss},
		{image.ErrUnsafeEntry, codes.InvalidArgument},
		{image.ErrBadLayer, codes.DataLoss},
		{image.ErrTooLarge, codes.ResourceExhausted},
		{image.ErrLayerTooLarge, codes.ResourceExhausted},
		{image.ErrUnsupportedMediaType, codes.Unimplemented},
		{image.ErrInvalidConfig, codes.FailedPrecondition},
		{signature.ErrPolicy, codes.FailedPrecondition},
		{image.ErrRegistry, codes.Unavailable},
	} {
		if errors.Is(err, m.err) {
			return status.Error(m.code, rpcErrorPrefix+op+" failed: "+m.err.Error())
		}
	}
	return rpcError(op, err)
}

// PullImage asks the hub at the client's socket to pull imageURL into
// bundlePath; it returns the manifest digest.
func (c *Client) PullImage(ctx context.Context, imageURL, bundlePath string) (string, error) {
	var out *api.ImagePullResponse
	err := c.conn.Call(ctx, func(cl *ttrpc.Client) (err error) {
		out, err = api.NewImagePullServiceClient(cl).PullImage(ctx, &api.ImagePullRequest{ImageUrl: imageURL, BundlePath: bundlePath})
		return err
	})
	if err != nil {
		return "", err
	}
	return out.GetManifestDigest(), nil
}
