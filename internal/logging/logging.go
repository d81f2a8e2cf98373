// Package logging is the one logger set-up of every command: one level
// parser (upstream's RUST_LOG names and slog's own forms) and one handler
// choice (json or text), so a flag spelt the same way means the same thing
// in kbs, restful-as and the guest agents.
//
// Invariant: nothing here logs by itself; a secret reaches a log only if a
// caller passes it, which the callers never do.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelTrace is below debug: upstream's "trace".
const LevelTrace = slog.LevelDebug - 4

// ParseLevel reads a log level: trace, debug, info (or empty), warn
// (warning), error, off (errors only, as close as slog gets), any case; and
// slog's own forms such as "DEBUG+2".
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "off":
		return slog.LevelError, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", s)
	}
	return l, nil
}

// Format names a handler: FormatJSON or FormatText.
type Format string

// The formats New accepts.
const (
	FormatJSON Format = "json"
	FormatText Format = "text"
)

// New returns a logger writing to w at level in format ("json" or "text",
// any case).
func New(w io.Writer, level slog.Level, format Format) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch Format(strings.ToLower(string(format))) {
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// Parse is ParseLevel then New: the usual --log-level/--log-format pair.
func Parse(w io.Writer, level string, format Format) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return New(w, l, format)
}
