// Package logging is the one logger set-up of every command: one level
// parser (upstream's RUST_LOG names and slog's own forms) and one handler
// choice (json or text), so a flag spelt the same way means the same thing
// in kbs, restful-as and the guest agents.
//
// Invariants: nothing here logs by itself; a secret reaches a log only if a
// caller passes it, which the callers never do. No string attribute of a
// record is longer than MaxValueBytes (a 500 KB request target or error
// detail is cut, with its length said), so a client cannot make a log line
// of its choosing size.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"
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

// MaxValueBytes bounds a string attribute (and the message) of a record.
const MaxValueBytes = 2048

// Clip returns s cut to at most n bytes (on a UTF-8 boundary) followed by
// a note of the bytes left out; s itself when it fits.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := s[:n]
	for len(cut) > 0 && !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return fmt.Sprintf("%s...(%d more bytes)", cut, len(s)-len(cut))
}

// clipAttr is the handlers' ReplaceAttr: long strings and errors cut.
func clipAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if len(a.Value.String()) > MaxValueBytes {
			a.Value = slog.StringValue(Clip(a.Value.String(), MaxValueBytes))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok && len(err.Error()) > MaxValueBytes {
			a.Value = slog.StringValue(Clip(err.Error(), MaxValueBytes))
		}
	}
	return a
}

// New returns a logger writing to w at level in format ("json" or "text",
// any case).
func New(w io.Writer, level slog.Level, format Format) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: clipAttr}
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
