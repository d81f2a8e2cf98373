package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// Bounds of a run.
const (
	defaultDuration = 10 * time.Second
	maxDuration     = 24 * time.Hour
	maxFlows        = 10_000_000
	maxConcurrency  = 4096
	// maxErrorSamples is how many distinct error texts are reported.
	maxErrorSamples = 5
)

type config struct {
	url, path, certFile string
	keyAlg              protocol.KeyAlgorithm
	concurrency         int
	duration            time.Duration
	flows               int
	timeout             time.Duration
	allowRemote         bool
}

func newCmd(stdout io.Writer) *cobra.Command {
	var (
		cfg     config
		keyAlg  string
		asJSON  bool
		durFlag string
	)
	cmd := &cobra.Command{
		Use:           "kbs-load",
		Short:         "Load a KBS with full guest flows (auth, attest, Bearer resource read, decrypt)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.keyAlg, err = parseKeyAlg(keyAlg); err != nil {
				return err
			}
			if durFlag != "" {
				if cfg.duration, err = time.ParseDuration(durFlag); err != nil {
					return fmt.Errorf("-d: %w", err)
				}
			}
			if err := cfg.validate(); err != nil {
				return err
			}
			rep, err := load(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				rep.writeText(stdout)
			}
			if rep.Errors > 0 {
				return fmt.Errorf("%d of %d flows failed", rep.Errors, rep.Flows)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.url, "url", "http://127.0.0.1:8080", "KBS root URL")
	f.StringVar(&cfg.path, "path", "default/key/1", "resource to read: repo/type/tag or kbs:///... URI")
	f.StringVar(&cfg.certFile, "cert-file", "", "extra root certificate (PEM) for an https KBS")
	f.StringVar(&keyAlg, "key-alg", "ec256", "TEE key: ec256, ec521, rsa2048 (or upstream names ECDH-ES+A256KW-P256, ...)")
	f.IntVarP(&cfg.concurrency, "concurrency", "c", 4, "concurrent clients")
	f.StringVarP(&durFlag, "duration", "d", "", "run time, e.g. 30s (default 10s unless -n is given; at most 24h)")
	f.IntVarP(&cfg.flows, "flows", "n", 0, "stop after this many flows (at most 10000000)")
	f.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "deadline of each HTTP request")
	f.BoolVar(&cfg.allowRemote, "allow-remote", false, "allow a KBS that is not on a loopback address")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func parseKeyAlg(s string) (protocol.KeyAlgorithm, error) {
	switch strings.ToLower(s) {
	case "ec256", "p256", "p-256":
		return protocol.KeyEC256, nil
	case "ec521", "p521", "p-521":
		return protocol.KeyEC521, nil
	case "rsa2048", "rsa":
		return protocol.KeyRSA2048, nil
	}
	a, err := protocol.ParseKeyAlgorithm(s)
	if err != nil {
		return 0, fmt.Errorf("--key-alg: %w", err)
	}
	return a, nil
}

func (c *config) validate() error {
	switch {
	case c.concurrency < 1 || c.concurrency > maxConcurrency:
		return fmt.Errorf("-c must be 1..%d", maxConcurrency)
	case c.flows < 0 || c.flows > maxFlows:
		return fmt.Errorf("-n must be 0..%d", maxFlows)
	case c.duration < 0 || c.duration > maxDuration:
		return fmt.Errorf("-d must be at most %s", maxDuration)
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	if c.duration == 0 && c.flows == 0 {
		c.duration = defaultDuration
	}
	if _, err := client.ParseResourceURI(c.path); err != nil {
		return fmt.Errorf("--path: %w", err)
	}
	u, err := url.Parse(c.url)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("--url %q: not a URL", c.url)
	}
	if !c.allowRemote && !isLoopback(u.Hostname()) {
		return fmt.Errorf("--url %s is not a loopback address; pass --allow-remote to load another host", u.Host)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpClient returns the one client all flows share.
func (c *config) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = c.concurrency * 2
	tr.MaxIdleConnsPerHost = c.concurrency * 2
	if c.certFile != "" {
		f, err := os.Open(c.certFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		pemBytes, err := io.ReadAll(io.LimitReader(f, limits.MaxConfigBytes))
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("--cert-file %s: no PEM certificate found", c.certFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: c.timeout}, nil
}

// report is the outcome of a run.
type report struct {
	URL            string        `json:"url"`
	Path           string        `json:"path"`
	KeyAlgorithm   string        `json:"key_algorithm"`
	Concurrency    int           `json:"concurrency"`
	Flows          int           `json:"flows"`
	OK             int           `json:"ok"`
	Errors         int           `json:"errors"`
	ElapsedSeconds float64       `json:"elapsed_seconds"`
	FlowsPerSecond float64       `json:"flows_per_second"`
	LatencyMS      latency       `json:"latency_ms"`
	ErrorSamples   []errorSample `json:"error_samples"`
}

type latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type errorSample struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "target:     %s (%s), key %s, %d clients\n", r.URL, r.Path, r.KeyAlgorithm, r.Concurrency)
	fmt.Fprintf(w, "flows:      %d in %.2fs: %d ok, %d errors\n", r.Flows, r.ElapsedSeconds, r.OK, r.Errors)
	fmt.Fprintf(w, "throughput: %.1f ok flows/s\n", r.FlowsPerSecond)
	l := r.LatencyMS
	fmt.Fprintf(w, "latency:    p50 %.1fms  p95 %.1fms  p99 %.1fms  max %.1fms (ok flows)\n", l.P50, l.P95, l.P99, l.Max)
	if len(r.ErrorSamples) > 0 {
		fmt.Fprintln(w, "errors (first distinct):")
		for _, e := range r.ErrorSamples {
			fmt.Fprintf(w, "  %6d× %s\n", e.Count, e.Error)
		}
	}
}

// tally collects flow outcomes from the workers.
type tally struct {
	mu        sync.Mutex
	durations []time.Duration
	errors    int
	samples   []errorSample
}

func (t *tally) add(d time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.durations = append(t.durations, d)
		return
	}
	t.errors++
	msg := err.Error()
	for i := range t.samples {
		if t.samples[i].Error == msg {
			t.samples[i].Count++
			return
		}
	}
	if len(t.samples) < maxErrorSamples {
		t.samples = append(t.samples, errorSample{Error: msg, Count: 1})
	}
}

// percentile returns the nearest-rank p-th percentile of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// load runs the flows and returns the report. Flows already started when
// the duration ends are completed (each request has --timeout).
func load(ctx context.Context, cfg config) (*report, error) {
	hc, err := cfg.httpClient()
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	var deadline time.Time
	start := time.Now()
	if cfg.duration > 0 {
		deadline = start.Add(cfg.duration)
	}
	var claimed atomic.Int64
	next := func() bool {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return false
		}
		return cfg.flows == 0 || claimed.Add(1) <= int64(cfg.flows)
	}
	var t tally
	var wg sync.WaitGroup
	for range cfg.concurrency {
		wg.Go(func() {
			for next() {
				t0 := time.Now()
				err := flow(ctx, cfg, hc)
				t.add(time.Since(t0), err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	slices.Sort(t.durations)
	ok := len(t.durations)
	rep := &report{
		URL: cfg.url, Path: cfg.path, KeyAlgorithm: cfg.keyAlg.String(), Concurrency: cfg.concurrency,
		Flows: ok + t.errors, OK: ok, Errors: t.errors,
		ElapsedSeconds: elapsed.Seconds(),
		FlowsPerSecond: float64(ok) / elapsed.Seconds(),
		LatencyMS: latency{
			P50: ms(percentile(t.durations, 0.50)), P95: ms(percentile(t.durations, 0.95)),
			P99: ms(percentile(t.durations, 0.99)), Max: ms(percentile(t.durations, 1)),
		},
		ErrorSamples: t.samples,
	}
	if rep.ErrorSamples == nil {
		rep.ErrorSamples = []errorSample{}
	}
	return rep, nil
}

// discard drops the client's log records: errors are tallied instead.
var discard = slog.New(slog.DiscardHandler)

// flow is one guest: new key pair, RCAR, Bearer read, decrypt. Neither the
// handshake nor the read is retried: a load run counts failures.
func flow(ctx context.Context, cfg config, hc *http.Client) error {
	c, err := client.New(client.Options{
		URL:                 cfg.url,
		HTTPClient:          hc,
		Attester:            &sample.Attester{},
		KeyAlgorithm:        cfg.keyAlg,
		Bearer:              true,
		MaxAttestRetries:    1,
		MaxResourceAttempts: 1,
		RequestTimeout:      cfg.timeout,
		Logger:              discard,
	})
	if err != nil {
		return err
	}
	if _, err := c.Attest(ctx); err != nil {
		return err
	}
	_, err = c.GetResource(ctx, cfg.path)
	return err
}
