package fakekds

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-trustee/go-trustee/internal/testwait"
)

func TestRecordedData(t *testing.T) {
	const milanPath = "/vcek/v1/Milan/c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
	if MilanVCEKPath() != milanPath {
		t.Errorf("MilanVCEKPath() = %s", MilanVCEKPath())
	}
	for name, der := range map[string][]byte{"milan": MilanVCEK(), "genoa": GenoaVCEK()} {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s VCEK: %v", name, err)
		}
		if c.Subject.CommonName != "SEV-VCEK" {
			t.Errorf("%s CN %q", name, c.Subject.CommonName)
		}
	}
	// Accessors return copies.
	b := MilanReport()
	b[0] ^= 0xff
	if bytes.Equal(b, MilanReport()) {
		t.Error("MilanReport shares its buffer")
	}
	if _, err := VCEKPath("Milan", b[:10]); err == nil {
		t.Error("VCEKPath of a short report")
	}
	if _, err := VCEKPath("Naples", MilanReport()); err == nil {
		t.Error("VCEKPath of an unknown product")
	}
}

func TestServe(t *testing.T) {
	k := New()
	srv := httptest.NewServer(k)
	defer srv.Close()
	get := func(path string) (int, string, []byte) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), b
	}
	if code, _, body := get(GenoaVCEKPath()); code != 200 || !bytes.Equal(body, GenoaVCEK()) {
		t.Fatalf("Genoa VCEK: %d", code)
	}
	if code, _, body := get("/vcek/v1/Turin/cert_chain"); code != 200 || !bytes.Contains(body, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("Turin chain: %d", code)
	}
	// The query must be exactly the KDS one.
	if code, _, _ := get(GenoaVCEKPath() + "&x=1"); code != 404 {
		t.Fatalf("extra parameter: %d", code)
	}
	k.Inject(Fault{Status: 429, RetryAfter: "7"}, Fault{Status: 502}, Fault{Body: []byte("junk")})
	if code, ra, _ := get(GenoaVCEKPath()); code != 429 || ra != "7" {
		t.Errorf("fault 1: %d %q", code, ra)
	}
	if code, _, _ := get(GenoaVCEKPath()); code != 502 {
		t.Errorf("fault 2: %d", code)
	}
	if code, _, body := get(GenoaVCEKPath()); code != 200 || string(body) != "junk" {
		t.Errorf("fault 3: %d %q", code, body)
	}
	if k.Requests() != 6 || k.RequestsFor(GenoaVCEKPath()) != 4 {
		t.Errorf("counts %d %d", k.Requests(), k.RequestsFor(GenoaVCEKPath()))
	}
	resp, err := srv.Client().Post(srv.URL+GenoaVCEKPath(), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestGetter(t *testing.T) {
	k := New()
	ctx := context.Background()
	body, err := k.Get(ctx, "https://kdsintf.amd.com"+MilanVCEKPath())
	if err != nil || !bytes.Equal(body, MilanVCEK()) {
		t.Fatalf("Get: %v", err)
	}
	k.Inject(Fault{Status: 503, RetryAfter: "1"})
	_, err = k.Get(ctx, "https://kdsintf.amd.com"+MilanVCEKPath())
	var se *StatusError
	if !errors.As(err, &se) || se.HTTPStatus() != 503 || se.RetryAfter() != "1" {
		t.Fatalf("fault: %v", err)
	}
	k.Add("/custom?a=1", []byte("x"))
	if b, err := k.Get(ctx, "http://h/custom?a=1"); err != nil || string(b) != "x" {
		t.Fatalf("Add: %v", err)
	}

	release := k.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := k.Get(ctx, "http://h"+GenoaVCEKPath())
		done <- err
	}()
	testwait.Until(t, "the request in flight", func() bool { return k.InFlight() == 1 })
	select {
	case <-done:
		t.Fatal("held request answered")
	default:
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	release = k.Hold()
	cancel()
	if _, err := k.Get(cctx, "http://h"+GenoaVCEKPath()); err == nil {
		t.Error("held request with a cancelled context answered 200")
	}
	release()
}
