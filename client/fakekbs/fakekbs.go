// Package fakekbs is an in-memory KBS for tests of guest code: it speaks
// the KBS protocol 0.4.0 on the wire (RCAR handshake, session cookie,
// Bearer tokens, JWE resource responses, admin endpoints) and verifies the
// report-data binding of SAMPLE evidence only.
//
// It is NOT a KBS. Its tokens are unsigned stand-ins it recognises by
// value, it trusts sample evidence, and it keeps everything in memory. Use
// it with httptest.NewServer; bend it with Options.Hook and Options.Deny to
// serve the faults a client must survive.
//
// Answers follow Trustee's rules: 404 only for an invalid path or an
// unknown plugin, 401 with an ErrorInformation for everything else.
package fakekbs

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-trustee/go-trustee/guest/attester/sample"
	"github.com/go-trustee/go-trustee/protocol"
)

// Options configure a KBS. Zero values take the documented defaults.
type Options struct {
	// Now is the clock of sessions and tokens; nil is time.Now.
	Now func() time.Time
	// Rand feeds session ids, nonces and JWE encryption; nil is crypto/rand.
	Rand io.Reader
	// Nonce, when set, is the challenge nonce of every handshake.
	Nonce string
	// ExtraParams is the challenge's extra-params; nil is the JSON string
	// "" Trustee sends for every TEE but se.
	ExtraParams json.RawMessage
	// TokenLifetime is the exp of issued tokens after iat; 0 is 5 minutes.
	TokenLifetime time.Duration
	// AdminToken, when set, is the only Bearer value admin endpoints
	// accept; "" accepts every admin request (InsecureAllowAll).
	AdminToken string
	// Deny, when set, is asked before a resource is released; true answers
	// 401 PolicyDeny "Access denied by policy".
	Deny func(plugin string, path []string) bool
	// Hook, when set, sees every request first (its body already read and
	// restored); returning true means it wrote the answer itself.
	Hook func(w http.ResponseWriter, r *http.Request) bool
}

// Record is one request the KBS received.
type Record struct {
	Method, Path, Query string
	// Cookie is the kbs-session-id sent, "" when none.
	Cookie string
	// Bearer is the Authorization Bearer value sent, "" when none.
	Bearer string
	Body   []byte
}

// KBS is the fake server; it is an http.Handler.
type KBS struct {
	opts Options

	mu                  sync.Mutex
	sessions            map[string]*session
	tokens              map[string]issued
	resources           map[string][]byte
	resourcePolicy      []byte
	attestationPolicies map[string][]byte
	referenceValues     map[string]json.RawMessage
	records             []Record
}

type session struct {
	tee       protocol.Tee
	nonce     string
	hash      protocol.HashAlgorithm
	token     string
	expiresAt time.Time
}

type issued struct {
	key protocol.TeePubKey
	exp time.Time
}

// maxBody bounds request bodies (upstream's default payload limit).
const maxBody = 2 << 20

// New returns an empty fake KBS.
func New(opts Options) *KBS {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.ExtraParams == nil {
		opts.ExtraParams = json.RawMessage(protocol.EmptyExtraParams)
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = 5 * time.Minute
	}
	return &KBS{
		opts:                opts,
		sessions:            map[string]*session{},
		tokens:              map[string]issued{},
		resources:           map[string][]byte{},
		attestationPolicies: map[string][]byte{},
		referenceValues:     map[string]json.RawMessage{},
	}
}

// SetResource stores a resource at "repo/type/tag".
func (k *KBS) SetResource(path string, data []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.resources[path] = append([]byte(nil), data...)
}

// Resource returns the resource at path.
func (k *KBS) Resource(path string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.resources[path]
	return b, ok
}

// ResourcePolicy returns the last resource policy set (decoded).
func (k *KBS) ResourcePolicy() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resourcePolicy
}

// AttestationPolicy returns the attestation policy set under id (decoded).
func (k *KBS) AttestationPolicy(id string) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.attestationPolicies[id]
	return b, ok
}

// Requests returns the requests received so far.
func (k *KBS) Requests() []Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Record(nil), k.records...)
}

// Count returns how many requests had method and a path starting with
// prefix.
func (k *KBS) Count(method, prefix string) int {
	n := 0
	for _, r := range k.Requests() {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// ErrorBody returns the ErrorInformation JSON of kind with detail.
func ErrorBody(kind, detail string) []byte {
	b, _ := json.Marshal(protocol.ErrorInformation{Type: protocol.ErrorTypePrefix + kind, Detail: detail})
	return b
}

// WriteError answers status with an ErrorInformation of kind and detail.
func WriteError(w http.ResponseWriter, status int, kind, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(ErrorBody(kind, detail))
}

func (k *KBS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		WriteError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", "payload reached size limit")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := Record{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body}
	if c, err := r.Cookie(protocol.CookieName); err == nil {
		rec.Cookie = c.Value
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		rec.Bearer = v
	}
	k.mu.Lock()
	k.records = append(k.records, rec)
	k.mu.Unlock()
	if k.opts.Hook != nil && k.opts.Hook(w, r) {
		return
	}

	rest, ok := strings.CutPrefix(r.URL.Path, "/kbs/v0/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	segs := strings.Split(rest, "/")
	switch {
	case rest == "auth" && r.Method == http.MethodPost:
		k.auth(w, body)
	case rest == "attest" && r.Method == http.MethodPost:
		k.attest(w, rec, body)
	case rest == "resource-policy" || rest == "attestation-policy" || segs[0] == "reference-value":
		if !k.admitted(w, rec) {
			return
		}
		k.adminAPI(w, r.Method, segs, body)
	case segs[0] == "resource":
		if len(segs) != 4 || segs[1] == "" || segs[2] == "" || segs[3] == "" {
			WriteError(w, http.StatusNotFound, "InvalidRequestPath", "Invalid Request Path: "+r.URL.Path)
			return
		}
		path := strings.Join(segs[1:], "/")
		switch r.Method {
		case http.MethodGet:
			k.getResource(w, rec, segs[0], segs[1:], path)
		case http.MethodPost, http.MethodDelete:
			if !k.admitted(w, rec) {
				return
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			if r.Method == http.MethodPost {
				k.resources[path] = body
			} else if _, ok := k.resources[path]; !ok {
				WriteError(w, http.StatusUnauthorized, "PluginInternalError", "Plugin internal error: resource not found")
				return
			} else {
				delete(k.resources, path)
			}
		default:
			WriteError(w, http.StatusUnauthorized, "PluginInternalError", "method not allowed")
		}
	default:
		WriteError(w, http.StatusNotFound, "PluginNotFound", fmt.Sprintf("Plugin %s not found", segs[0]))
	}
}

func (k *KBS) randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(k.opts.Rand, b); err != nil {
		panic(fmt.Sprintf("fakekbs: reading randomness: %v", err))
	}
	return b
}

func (k *KBS) auth(w http.ResponseWriter, body []byte) {
	var req protocol.Request
	if err := json.Unmarshal(body, &req); err != nil {
		WriteError(w, http.StatusUnauthorized, "SerdeError", "Serde Json Error: "+err.Error())
		return
	}
	if req.Version != protocol.Version {
		WriteError(w, http.StatusUnauthorized, "AttestationError",
			"Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is "+req.Version)
		return
	}
	h, err := protocol.SelectedHashAlgorithm(k.opts.ExtraParams)
	if err != nil {
		WriteError(w, http.StatusUnauthorized, "AttestationError", err.Error())
		return
	}
	k.mu.Lock()
	id := hex.EncodeToString(k.randomBytes(16))
	nonce := k.opts.Nonce
	if nonce == "" {
		nonce = base64.StdEncoding.EncodeToString(k.randomBytes(32))
	}
	exp := k.opts.Now().Add(5 * time.Minute)
	k.sessions[id] = &session{tee: req.Tee, nonce: nonce, hash: h, expiresAt: exp}
	k.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: protocol.CookieName, Value: id, Expires: exp})
	writeJSON(w, protocol.Challenge{Nonce: nonce, ExtraParams: k.opts.ExtraParams})
}

func (k *KBS) session(id string) *session {
	s := k.sessions[id]
	if s == nil || k.opts.Now().After(s.expiresAt) {
		return nil
	}
	return s
}

func (k *KBS) attest(w http.ResponseWriter, rec Record, body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rec.Cookie == "" {
		WriteError(w, http.StatusUnauthorized, "AttestationError", "Attestation error: cookie not found")
		return
	}
	s := k.session(rec.Cookie)
	if s == nil {
		WriteError(w, http.StatusUnauthorized, "AttestationError", "Attestation error: invalid session")
		return
	}
	if s.token != "" {
		http.SetCookie(w, &http.Cookie{Name: protocol.CookieName, Value: rec.Cookie, Expires: s.expiresAt})
		writeJSON(w, protocol.AttestationResponse{Token: s.token})
		return
	}
	var att protocol.Attestation
	if err := json.Unmarshal(body, &att); err != nil {
		WriteError(w, http.StatusUnauthorized, "SerdeError", "Serde Json Error: "+err.Error())
		return
	}
	if att.RuntimeData.Nonce != s.nonce {
		WriteError(w, http.StatusUnauthorized, "AttestationError", "Attestation error: nonce mismatch")
		return
	}
	if err := verifySample(s, att); err != nil {
		WriteError(w, http.StatusUnauthorized, "AttestationError", "Attestation error: "+err.Error())
		return
	}
	now := k.opts.Now()
	exp := now.Add(k.opts.TokenLifetime)
	token, err := k.token(s.tee, att, now, exp)
	if err != nil {
		WriteError(w, http.StatusUnauthorized, "AttestationError", err.Error())
		return
	}
	s.token = token
	k.tokens[token] = issued{key: att.RuntimeData.TeePubKey, exp: exp}
	http.SetCookie(w, &http.Cookie{Name: protocol.CookieName, Value: rec.Cookie, Expires: s.expiresAt})
	writeJSON(w, protocol.AttestationResponse{Token: token})
}

// verifySample checks sample evidence against the expected report data.
func verifySample(s *session, att protocol.Attestation) error {
	if s.tee != protocol.TeeSample {
		return fmt.Errorf("fake KBS verifies sample evidence only, got %s", s.tee)
	}
	rd := att.RuntimeData
	want, err := protocol.ReportData(s.hash, rd.Nonce, rd.TeePubKey, att.TeeEvidence.AdditionalEvidence)
	if err != nil {
		return err
	}
	if err := checkSampleEvidence(att.TeeEvidence.PrimaryEvidence, want); err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	if att.TeeEvidence.AdditionalEvidence == "" {
		return nil
	}
	var devs map[protocol.Tee]json.RawMessage
	if err := json.Unmarshal([]byte(att.TeeEvidence.AdditionalEvidence), &devs); err != nil {
		return fmt.Errorf("additional evidence: %w", err)
	}
	wantDev, err := protocol.DeviceReportData(s.hash, rd.Nonce, rd.TeePubKey)
	if err != nil {
		return err
	}
	for tee, ev := range devs {
		if tee != protocol.TeeSampleDevice {
			return fmt.Errorf("fake KBS verifies sampledevice only, got %s", tee)
		}
		if err := checkSampleEvidence(ev, wantDev); err != nil {
			return fmt.Errorf("sampledevice: %w", err)
		}
	}
	return nil
}

func checkSampleEvidence(raw json.RawMessage, want []byte) error {
	var ev sample.Evidence
	if err := json.Unmarshal(raw, &ev); err != nil {
		return err
	}
	got, err := base64.StdEncoding.DecodeString(ev.ReportData)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("report data mismatch")
	}
	return nil
}

// token builds an unsigned stand-in JWT carrying EAR-like claims.
func (k *KBS) token(tee protocol.Tee, att protocol.Attestation, iat, exp time.Time) (string, error) {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	claims := map[string]any{
		"iat":        iat.Unix(),
		"exp":        exp.Unix(),
		"jti":        hex.EncodeToString(k.randomBytes(8)),
		"tee-pubkey": att.RuntimeData.TeePubKey,
		"submods": map[string]any{"cpu0": map[string]any{
			"ear.status":                      "affirming",
			"ear.veraison.annotated-evidence": map[string]any{string(tee): json.RawMessage(att.TeeEvidence.PrimaryEvidence)},
		}},
	}
	if att.InitData != nil {
		claims["init_data"] = att.InitData.Body
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return header + "." + base64.RawURLEncoding.EncodeToString(p) + ".", nil
}

func (k *KBS) getResource(w http.ResponseWriter, rec Record, plugin string, segs []string, path string) {
	k.mu.Lock()
	var key protocol.TeePubKey
	found := false
	if s := k.session(rec.Cookie); rec.Cookie != "" && s != nil && s.token != "" {
		key, found = k.tokens[s.token].key, true
	} else if rec.Bearer != "" {
		if t, ok := k.tokens[rec.Bearer]; ok && !k.opts.Now().After(t.exp) {
			key, found = t.key, true
		} else {
			k.mu.Unlock()
			WriteError(w, http.StatusUnauthorized, "TokenVerifierError", "Token Verifier error: invalid or expired token")
			return
		}
	}
	data, ok := k.resources[path]
	k.mu.Unlock()
	if !found {
		WriteError(w, http.StatusUnauthorized, "TokenNotFound", "Attestation Token not found")
		return
	}
	if k.opts.Deny != nil && k.opts.Deny(plugin, segs) {
		WriteError(w, http.StatusUnauthorized, "PolicyDeny", "Access denied by policy")
		return
	}
	if !ok {
		WriteError(w, http.StatusUnauthorized, "PluginInternalError", "Plugin internal error: resource not found")
		return
	}
	k.mu.Lock()
	jwe, err := protocol.Encrypt(key, data, k.opts.Rand)
	k.mu.Unlock()
	if err != nil {
		WriteError(w, http.StatusUnauthorized, "JweError", "JWE error: "+err.Error())
		return
	}
	writeJSON(w, jwe)
}

func (k *KBS) admitted(w http.ResponseWriter, rec Record) bool {
	if k.opts.AdminToken != "" && rec.Bearer != k.opts.AdminToken {
		WriteError(w, http.StatusUnauthorized, "AdminAuthAccess", "Admin auth error: unauthorized")
		return false
	}
	return true
}

func (k *KBS) adminAPI(w http.ResponseWriter, method string, segs []string, body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case segs[0] == "resource-policy" && method == http.MethodPost:
		var in struct {
			Policy string `json:"policy"`
		}
		p, err := decodePolicy(body, &in, &in.Policy)
		if err != nil {
			WriteError(w, http.StatusUnauthorized, "SerdeError", err.Error())
			return
		}
		k.resourcePolicy = p
	case segs[0] == "resource-policy" && method == http.MethodGet:
		ids := []string{}
		if k.resourcePolicy != nil {
			ids = append(ids, "resource-policy")
		}
		writeJSON(w, ids)
	case segs[0] == "attestation-policy" && method == http.MethodPost:
		var in struct {
			Type     string `json:"type"`
			PolicyID string `json:"policy_id"`
			Policy   string `json:"policy"`
		}
		p, err := decodePolicy(body, &in, &in.Policy)
		if err != nil {
			WriteError(w, http.StatusUnauthorized, "SerdeError", err.Error())
			return
		}
		k.attestationPolicies[in.PolicyID] = p
	case segs[0] == "reference-value" && method == http.MethodPost && len(segs) == 1:
		if err := k.registerSample(body); err != nil {
			WriteError(w, http.StatusUnauthorized, "RvpsError", "RVPS error: "+err.Error())
		}
	case segs[0] == "reference-value" && method == http.MethodGet && len(segs) > 1:
		v, ok := k.referenceValues[strings.Join(segs[1:], "/")]
		if !ok {
			WriteError(w, http.StatusUnauthorized, "RvpsError", "RVPS error: reference value not found")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(v)
	default:
		WriteError(w, http.StatusNotFound, "InvalidRequestPath", "Invalid Request Path")
	}
}

func decodePolicy(body []byte, in any, field *string) ([]byte, error) {
	if err := json.Unmarshal(body, in); err != nil {
		return nil, err
	}
	return base64.RawURLEncoding.Strict().DecodeString(*field)
}

// registerSample accepts an RVPS message of type "sample" whose payload is
// base64 (standard) of {"<name>": <value>}.
func (k *KBS) registerSample(body []byte) error {
	var msg struct {
		Version string `json:"version"`
		Type    string `json:"type"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		return err
	}
	if msg.Type != "sample" {
		return fmt.Errorf("fake KBS accepts sample messages only, got %q", msg.Type)
	}
	p, err := base64.StdEncoding.DecodeString(msg.Payload)
	if err != nil {
		return err
	}
	var rvs map[string]json.RawMessage
	if err := json.Unmarshal(p, &rvs); err != nil {
		return err
	}
	for name, v := range rvs {
		k.referenceValues[name] = v
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
