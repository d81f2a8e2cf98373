package snp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
	snpev "github.com/go-trustee/go-trustee/protocol/evidence/snp"
)

const (
	// kdsFetchTimeout bounds one shared VCEK fetch, back-offs included.
	kdsFetchTimeout = 2 * time.Minute
	// kdsAttempts bounds the KDS requests of one fetch (429/503 retries).
	kdsAttempts = 4
	// kdsMaxBackoff is the longest Retry-After the verifier waits for;
	// beyond it the fetch fails at once (and the next source is tried).
	kdsMaxBackoff = time.Minute
	// kdsDefaultBackoff is the wait after a 429/503 without Retry-After
	// (AMD throttles repeated requests to one per 10 seconds).
	kdsDefaultBackoff = 10 * time.Second
	// defaultHTTPTimeout is the timeout of the default HTTP client.
	defaultHTTPTimeout = 30 * time.Second
)

// NewHTTPGetter returns a Getter that uses c (nil: a client with a
// 30-second timeout) and reads bodies of at most 64 KiB. Answers other
// than 200 are *HTTPError.
func NewHTTPGetter(c *http.Client) Getter {
	if c == nil {
		c = &http.Client{Timeout: defaultHTTPTimeout}
	}
	return httpGetter{c: c}
}

type httpGetter struct{ c *http.Client }

func (g httpGetter) Get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, int64(limits.MaxSNPCertBytes)))
		return nil, &HTTPError{URL: url, StatusCode: resp.StatusCode, RetryAfterHeader: resp.Header.Get("Retry-After")}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limits.MaxSNPCertBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	if len(body) > limits.MaxSNPCertBytes {
		return nil, fmt.Errorf("GET %s: body exceeds %d bytes", url, limits.MaxSNPCertBytes)
	}
	return body, nil
}

// tcbPrefix is upstream's format_tcb_prefix: the file name prefix of a VCEK
// in an OfflineStore, e.g. "bl02_tee00_snp06_ucode21" or, on Turin,
// "bl03_tee01_snp08_ucode15_fmc05".
func tcbPrefix(t snpev.TCBVersion) string {
	s := fmt.Sprintf("bl%02d_tee%02d_snp%02d_ucode%02d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
	if t.FMC != nil {
		s += fmt.Sprintf("_fmc%02d", *t.FMC)
	}
	return s
}

// vcekURL is the KDS URL of the VCEK for the chip and reported TCB of rep,
// as upstream builds it: {base}/vcek/v1/{product}/{hwid}?[fmcSPL=..&]
// blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=.. with two-digit SPLs.
func vcekURL(base string, prod *product, rep *snpev.Report) (string, error) {
	t := rep.ReportedTCB
	hwid := hex.EncodeToString(prod.kdsHWID(&rep.ChipID))
	q := fmt.Sprintf("blSPL=%02d&teeSPL=%02d&snpSPL=%02d&ucodeSPL=%02d", t.Bootloader, t.TEE, t.SNP, t.Microcode)
	if prod.name == "Turin" {
		if t.FMC == nil {
			return "", fmt.Errorf("a Turin processor must report an FMC SVN")
		}
		q = fmt.Sprintf("fmcSPL=%02d&", *t.FMC) + q
	}
	return fmt.Sprintf("%s/vcek/v1/%s/%s?%s", base, prod.name, hwid, q), nil
}

// storePaths are the OfflineStore (and cache) paths of rep's VCEK: the
// TCB-specific file first, then the flat one.
func storePaths(dir string, prod *product, rep *snpev.Report) (tcbPath, flatPath string) {
	d := filepath.Join(dir, "vcek", hex.EncodeToString(prod.kdsHWID(&rep.ChipID)))
	return filepath.Join(d, tcbPrefix(rep.ReportedTCB)+"_vcek.der"), filepath.Join(d, "vcek.der")
}

// endorsementFromSources returns the VCEK of rep's chip and TCB from the
// memory cache or, once for all concurrent callers, from the sources.
func (v *Verifier) endorsementFromSources(ctx context.Context, prod *product, rep *snpev.Report) (*endorsement, error) {
	key := "src\x00" + prod.name + "\x00" + hex.EncodeToString(prod.kdsHWID(&rep.ChipID)) + "\x00" + tcbPrefix(rep.ReportedTCB)
	if e := v.mem.get(key); e != nil {
		return e, nil
	}
	if len(v.sources) == 0 {
		return nil, fmt.Errorf("%w: the evidence has no cert_chain and no VCEK source is configured", ErrEndorsementKey)
	}
	// The fetch is shared: it must outlive the first caller's context.
	repCopy := *rep
	ch := v.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kdsFetchTimeout)
		defer cancel()
		e, err := v.fetchEndorsement(fctx, prod, &repCopy)
		if err == nil {
			v.mem.put(key, e)
		}
		return e, err
	})
	v.joined.add()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the VCEK: %w", ErrEndorsementKey, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*endorsement), nil
	}
}

// fetchEndorsement tries each source in order.
func (v *Verifier) fetchEndorsement(ctx context.Context, prod *product, rep *snpev.Report) (*endorsement, error) {
	var errs []error
	for _, src := range v.sources {
		var e *endorsement
		var err error
		switch src.Type {
		case SourceOfflineStore:
			e, err = v.fromOfflineStore(prod, rep, src.Path)
			err = wrapSource("OfflineStore "+src.Path, err)
		default:
			e, err = v.fromKDS(ctx, prod, rep, src.BaseURL)
			err = wrapSource("KDS "+src.BaseURL, err)
		}
		if err == nil {
			return e, nil
		}
		v.log.Debug("no VCEK from source", "source", src.Type, "error", err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: no VCEK from any configured source: %w", ErrEndorsementKey, errors.Join(errs...))
}

func wrapSource(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// candidate verifies a VCEK from a source and checks that it is the one
// of rep's chip and TCB.
func (v *Verifier) candidate(prod *product, rep *snpev.Report, der []byte) (*endorsement, error) {
	vek, err := parseCert(der)
	if err != nil {
		return nil, fmt.Errorf("%w: VCEK: %v", ErrEndorsementKey, err)
	}
	e, err := buildEndorsement(prod, kindVCEK, vek, prod.ask)
	if err != nil {
		return nil, err
	}
	if err := e.checkTCB(rep); err != nil {
		return nil, fmt.Errorf("the VCEK is not the one of the report's chip and TCB: %w", err)
	}
	return e, nil
}

// fromOfflineStore reads <dir>/vcek/<hwid>/<tcb>_vcek.der, falling back to
// <dir>/vcek/<hwid>/vcek.der when the former does not exist (upstream's
// layout).
func (v *Verifier) fromOfflineStore(prod *product, rep *snpev.Report, dir string) (*endorsement, error) {
	tcbPath, flatPath := storePaths(dir, prod, rep)
	path := tcbPath
	if _, err := os.Stat(tcbPath); errors.Is(err, fs.ErrNotExist) {
		path = flatPath
	} else if err != nil {
		return nil, fmt.Errorf("stat %s: %w", tcbPath, err)
	}
	der, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return v.candidate(prod, rep, der)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limits.MaxSNPCertBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > limits.MaxSNPCertBytes {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, limits.MaxSNPCertBytes)
	}
	return b, nil
}

// fromKDS returns the VCEK from the durable cache or, failing that, from
// the KDS at base, and caches a verified answer.
func (v *Verifier) fromKDS(ctx context.Context, prod *product, rep *snpev.Report, base string) (*endorsement, error) {
	url, err := vcekURL(base, prod, rep)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEndorsementKey, err)
	}
	var cachePath string
	if v.cache != "" {
		cachePath, _ = storePaths(v.cache, prod, rep)
		if der, err := readBounded(cachePath); err == nil {
			e, err := v.candidate(prod, rep, der)
			if err == nil {
				return e, nil
			}
			v.log.Warn("discarding an invalid cached VCEK", "path", cachePath, "error", err)
			_ = os.Remove(cachePath)
		} else if !errors.Is(err, fs.ErrNotExist) {
			v.log.Warn("reading the VCEK cache", "path", cachePath, "error", err)
		}
	}
	start := time.Now()
	der, err := v.kdsGet(ctx, url)
	if err != nil {
		return nil, err
	}
	e, err := v.candidate(prod, rep, der)
	if err != nil {
		return nil, fmt.Errorf("the KDS answered %s with an unusable VCEK: %w", url, err)
	}
	v.log.Info("fetched a VCEK from the KDS", "url", url, "duration", time.Since(start))
	if cachePath != "" {
		if err := writeAtomic(cachePath, der); err != nil {
			v.log.Warn("caching the VCEK", "path", cachePath, "error", err)
		}
	}
	return e, nil
}

// kdsGet fetches url, waiting out any pending back-off first and retrying
// 429 and 503 answers after their Retry-After.
func (v *Verifier) kdsGet(ctx context.Context, url string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		if err := v.waitBackoff(ctx); err != nil {
			return nil, err
		}
		body, err := v.getter.Get(ctx, url)
		if err == nil {
			return body, nil
		}
		var se StatusError
		if !errors.As(err, &se) || (se.HTTPStatus() != http.StatusTooManyRequests && se.HTTPStatus() != http.StatusServiceUnavailable) {
			return nil, fmt.Errorf("%w: %w", ErrKDS, err)
		}
		wait := v.retryAfter(se.RetryAfter())
		v.setBackoff(wait)
		v.log.Warn("the KDS is throttling", "status", se.HTTPStatus(), "retry_after", wait, "attempt", attempt)
		if attempt >= kdsAttempts || wait > kdsMaxBackoff {
			return nil, fmt.Errorf("%w: %w (after %d attempts; retry after %s)", ErrKDS, err, attempt, wait)
		}
	}
}

// retryAfter interprets a Retry-After header (seconds or an HTTP date).
func (v *Verifier) retryAfter(h string) time.Duration {
	if h == "" {
		return kdsDefaultBackoff
	}
	if s, err := strconv.ParseUint(h, 10, 32); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(v.clock()), 0)
	}
	return kdsDefaultBackoff
}

func (v *Verifier) setBackoff(d time.Duration) {
	until := v.clock().Add(d)
	v.gateMu.Lock()
	defer v.gateMu.Unlock()
	if until.After(v.notBefore) {
		v.notBefore = until
	}
}

// waitBackoff waits until no back-off is pending; a back-off longer than
// kdsMaxBackoff fails at once instead.
func (v *Verifier) waitBackoff(ctx context.Context) error {
	v.gateMu.Lock()
	d := v.notBefore.Sub(v.clock())
	v.gateMu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	if d > kdsMaxBackoff {
		return fmt.Errorf("%w: the KDS asked to wait %s", ErrKDS, d.Round(time.Second))
	}
	if err := v.sleep(ctx, d); err != nil {
		return fmt.Errorf("%w: waiting %s for the KDS: %w", ErrKDS, d, err)
	}
	return nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// writeAtomic writes data to path through a synced temporary file in the
// same directory and a rename, so that readers see the old file, the new
// one, or none, never a partial one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".vcek-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
