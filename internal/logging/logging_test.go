package logging

import (
	"bytes"
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
