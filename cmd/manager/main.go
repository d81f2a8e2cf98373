// Command manager is the Trustee operator (upstream trustee-operator's
// manager binary): it reconciles KbsConfig and TrusteeConfig objects in
// its namespace ($POD_NAMESPACE, default trustee-operator-system) into a
// running Trustee. Container images are read from the environment as
// upstream: KBS_IMAGE_NAME, KBS_IMAGE_NAME_MICROSERVICES, AS_IMAGE_NAME,
// RVPS_IMAGE_NAME and OPERATOR_IMAGE_NAME.
//
// Usage: manager [--metrics-bind-address ADDR] [--metrics-secure]
//
//	[--health-probe-bind-address ADDR] [--leader-elect] [--kubeconfig FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/go-trustee/go-trustee/operator/controller"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	metricsAddr := fs.String("metrics-bind-address", "0", "address of the metrics endpoint (:8443 with --metrics-secure, :8080 without); 0 disables it")
	metricsSecure := fs.Bool("metrics-secure", true, "serve metrics over HTTPS with authentication and authorization")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader, so that only one manager replica reconciles")
	opts := zap.Options{}
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts), zap.WriteTo(stderr)))

	ns := getenv("POD_NAMESPACE")
	if ns == "" {
		ns = controller.DefaultNamespace
	}
	scheme, err := controller.NewScheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no Kubernetes API configuration: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr, SecureServing: *metricsSecure},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "trustee-operator.confidentialcontainers.org",
		// The operator works in its own namespace only: its cache, and so
		// its read permissions, stay there.
		Cache:  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Client: client.Options{Cache: &client.CacheOptions{}},
	})
	if err != nil {
		return err
	}
	if err := controller.Setup(mgr, ns, controller.ImagesFromEnv(getenv)); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("starting the Trustee operator", "namespace", ns)
	return mgr.Start(ctx)
}
