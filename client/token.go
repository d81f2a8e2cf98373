package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// tokenTimes holds the validity window read from an attestation token. The
// guest never verifies the token's signature (the KBS does); it only reads
// "exp" and "nbf" to know when to attest again, as upstream does.
type tokenTimes struct {
	exp, nbf       time.Time
	hasExp, hasNbf bool
}

// parseTokenTimes decodes the claims of a JWT (header.payload.signature,
// payload base64url without padding) and returns its exp and nbf. Both are
// optional; when present they must be numbers of seconds since the epoch.
func parseTokenTimes(token string) (tokenTimes, error) {
	var t tokenTimes
	if len(token) > limits.MaxTokenBytes {
		return t, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidToken, len(token), limits.MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return t, fmt.Errorf("%w: not a JWT (%d parts)", ErrInvalidToken, len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return t, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
		Nbf *json.Number `json:"nbf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return t, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if claims.Exp != nil {
		if t.exp, err = unixTime(*claims.Exp); err != nil {
			return t, fmt.Errorf("%w: exp: %v", ErrInvalidToken, err)
		}
		t.hasExp = true
	}
	if claims.Nbf != nil {
		if t.nbf, err = unixTime(*claims.Nbf); err != nil {
			return t, fmt.Errorf("%w: nbf: %v", ErrInvalidToken, err)
		}
		t.hasNbf = true
	}
	return t, nil
}

func unixTime(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("not a valid timestamp: %s", n)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// nbfLeeway tolerates a guest clock behind the KBS's: a token whose nbf is
// at most this far in the future is used rather than re-attesting in a loop.
const nbfLeeway = time.Minute

// valid reports whether the token may be used at now: not expired, and not
// before its validity (with nbfLeeway).
func (t tokenTimes) valid(now time.Time) bool {
	if t.hasExp && t.exp.Before(now) {
		return false
	}
	if t.hasNbf && t.nbf.After(now.Add(nbfLeeway)) {
		return false
	}
	return true
}
