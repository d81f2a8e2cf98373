package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// TokenTimes is the validity window of an attestation token, read from its
// "exp" and "nbf" claims. The guest never verifies the token's signature
// (the KBS does); it reads the window only to know when to attest again, as
// upstream does.
//
// A zero Exp or Nbf means the claim is absent. A present claim is never the
// zero time.Time: claims count seconds from 1970 and the zero Time is in
// year 1.
type TokenTimes struct {
	// Exp is the expiry: on and after it the KBS refuses the token.
	Exp time.Time
	// Nbf is the start of the token's validity.
	Nbf time.Time
}

// maxTokenTime bounds exp and nbf (in seconds since 1970, about the year
// 36800): any larger value is a malformed token, not a long-lived one.
const maxTokenTime = limits.MaxTokenTimeSeconds

// ParseTokenTimes reads the exp and nbf claims of a JWT without verifying
// it. token must be at most limits.MaxTokenBytes long and have three
// dot-separated parts, the second a base64url (unpadded) JSON object. Both
// claims are optional; a present one must be a JSON number (not a string,
// not null) of seconds since 1970 in [0, 2^40], fractions kept. Any
// other input fails with an error wrapping ErrInvalidToken.
func ParseTokenTimes(token string) (TokenTimes, error) {
	var t TokenTimes
	if len(token) > limits.MaxTokenBytes {
		return t, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidToken, len(token), limits.MaxTokenBytes)
	}
	if n := strings.Count(token, ".") + 1; n != 3 {
		return t, fmt.Errorf("%w: not a JWT (%d parts)", ErrInvalidToken, n)
	}
	parts := strings.SplitN(token, ".", 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return t, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return t, fmt.Errorf("%w: claims are not a JSON object", ErrInvalidToken)
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return t, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if t.Exp, err = numericDate(claims.Exp); err != nil {
		return TokenTimes{}, fmt.Errorf("%w: exp: %v", ErrInvalidToken, err)
	}
	if t.Nbf, err = numericDate(claims.Nbf); err != nil {
		return TokenTimes{}, fmt.Errorf("%w: nbf: %v", ErrInvalidToken, err)
	}
	return t, nil
}

// numericDate decodes a JWT NumericDate (RFC 7519 §2); nil raw, an absent
// claim, is the zero time.
func numericDate(raw json.RawMessage) (time.Time, error) {
	if raw == nil {
		return time.Time{}, nil
	}
	// raw is valid JSON (Unmarshal checked it): a leading '-' or digit
	// makes it a number, anything else a string, null, array, object or
	// boolean.
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, fmt.Errorf("%.32s is not a number", raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxTokenTime {
		return time.Time{}, fmt.Errorf("%.32s is not a valid timestamp", raw)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// nbfLeeway tolerates a guest clock behind the KBS's: a token whose nbf is
// at most this far in the future is used rather than fetched again and
// again.
const nbfLeeway = time.Minute

// UsableAt reports whether the token may be sent at now and still be
// valid margin later: its nbf, when present, is at most nbfLeeway after
// now, and its exp, when present, is not before now+margin. With margin 0 a
// token is usable up to and including the instant of its exp.
//
// A token without exp is usable: whether to reuse one is the caller's
// decision (see TokenCacheOptions.ReuseWithoutExp).
func (t TokenTimes) UsableAt(now time.Time, margin time.Duration) bool {
	if !t.Nbf.IsZero() && t.Nbf.After(now.Add(nbfLeeway)) {
		return false
	}
	if !t.Exp.IsZero() && t.Exp.Before(now.Add(margin)) {
		return false
	}
	return true
}
