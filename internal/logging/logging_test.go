package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"trace": LevelTrace, "DEBUG": slog.LevelDebug, "": slog.LevelInfo, "info": slog.LevelInfo,
		"warning": slog.LevelWarn, "Warn": slog.LevelWarn, "error": slog.LevelError, "off": slog.LevelError,
		"DEBUG+2": slog.LevelDebug + 2,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Error("ParseLevel accepted an unknown level")
	}
}

func TestNew(t *testing.T) {
	var b bytes.Buffer
	log, err := Parse(&b, "warn", "JSON")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.HasPrefix(out, `{"time":`) || !strings.Contains(out, `"k":"v"`) {
		t.Fatalf("json logger wrote %q", out)
	}
	b.Reset()
	log, _ = Parse(&b, "info", FormatText)
	log.Info("m")
	if !strings.Contains(b.String(), "level=INFO msg=m") {
		t.Fatalf("text logger wrote %q", b.String())
	}
	if _, err := New(&b, slog.LevelInfo, "xml"); err == nil {
		t.Error("New accepted an unknown format")
	}
}

// TestLongValuesClipped: a client-sized string (a 500 KB request path, an
// error quoting it) never makes a record of that size, in either format;
// the length left out is said, and short values are untouched.
func TestLongValuesClipped(t *testing.T) {
	long := "/kbs/v0/" + strings.Repeat("a", 500<<10)
	for _, f := range []Format{FormatJSON, FormatText} {
		var b bytes.Buffer
		log, err := New(&b, slog.LevelInfo, f)
		if err != nil {
			t.Fatal(err)
		}
		log.Info(long, "path", long, "error", errors.New(long), "short", "kept")
		out := b.String()
		if len(out) > 4*MaxValueBytes+512 {
			t.Fatalf("%s: record of %d bytes", f, len(out))
		}
		if !strings.Contains(out, fmt.Sprintf("...(%d more bytes)", len(long)-MaxValueBytes)) || !strings.Contains(out, "kept") {
			t.Fatalf("%s: %.300s", f, out)
		}
	}
	if got := Clip("aé", 2); got != "a...(2 more bytes)" {
		t.Fatalf("Clip on a rune boundary = %q", got)
	}
	if got := Clip("short", 10); got != "short" {
		t.Fatalf("Clip = %q", got)
	}
}
