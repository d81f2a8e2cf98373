package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/protocol"
)

// GetResource reads a resource and returns its plaintext. uri is a bare
// "repo/type/tag[?query]" path of the resource plugin or a
// kbs[+plugin]:///... URI (see ParseResourceURI).
//
// It attests first when needed. The request carries the session cookie, or
// the token as Bearer in token mode. A 401 re-attests and retries, up to
// MaxResourceAttempts requests in all, except a 401 PolicyDeny, which
// fails at once with ErrPolicyDeny and the server's detail; 404 fails with
// ErrResourceNotFound; another status fails with ErrServer. The answer is a
// JWE decrypted with the client's key pair.
func (c *Client) GetResource(ctx context.Context, uri string) ([]byte, error) {
	u, err := ParseResourceURI(uri)
	if err != nil {
		return nil, err
	}
	path, query := u.endpoint()
	var last error
	for attempt := 1; attempt <= c.maxResource; attempt++ {
		cr, err := c.credentials(ctx)
		if err != nil {
			if last != nil {
				return nil, fmt.Errorf("get resource %s: %w (after %w)", u, err, last)
			}
			return nil, fmt.Errorf("get resource %s: %w", u, err)
		}
		r := request{op: "get resource", method: http.MethodGet, path: path, query: query}
		if c.bearer {
			r.bearer = cr.token
		} else {
			r.cookie = cr.session
		}
		resp, err := c.do(ctx, r)
		if err != nil {
			return nil, err
		}
		switch resp.status {
		case http.StatusOK:
			return c.decrypt(resp.body)
		case http.StatusUnauthorized:
			e := statusError("get resource", resp)
			if errors.Is(e, ErrPolicyDeny) || errors.Is(e, ErrVersionMismatch) {
				return nil, e
			}
			c.log.Warn("KBS refused the credentials; attesting again", "attempt", attempt, "max", c.maxResource, "err", e)
			c.invalidate(cr.gen)
			last = e
		default:
			return nil, statusError("get resource", resp)
		}
	}
	return nil, fmt.Errorf("get resource %s: %w after %d attempts: %w", u, ErrUnauthorized, c.maxResource, last)
}

func (c *Client) decrypt(body []byte) ([]byte, error) {
	jwe, err := protocol.ParseResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: resource JWE: %w", ErrInvalidResponse, err)
	}
	pt, err := c.kp.Decrypt(jwe)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypting resource: %w", ErrInvalidResponse, err)
	}
	return pt, nil
}

// Admin calls. adminToken is sent as "Authorization: Bearer"; "" sends the
// request anonymously, which only a KBS with authorization_mode
// InsecureAllowAll accepts. Any answer but 200 is an *Error.

// SetResource stores data at path ("repo/type/tag" or a kbs:/// URI), sent
// raw as application/octet-stream.
func (c *Client) SetResource(ctx context.Context, adminToken, path string, data []byte) error {
	u, err := ParseResourceURI(path)
	if err != nil {
		return err
	}
	if len(data) > limits.MaxResourceBytes {
		return fmt.Errorf("set resource %s: %d bytes exceeds %d", u, len(data), limits.MaxResourceBytes)
	}
	p, q := u.endpoint()
	if data == nil {
		data = []byte{}
	}
	_, err = c.admin(ctx, request{op: "set resource", method: http.MethodPost, path: p, query: q, body: data, contentType: "application/octet-stream"}, adminToken)
	return err
}

// DeleteResource deletes the resource at path.
func (c *Client) DeleteResource(ctx context.Context, adminToken, path string) error {
	u, err := ParseResourceURI(path)
	if err != nil {
		return err
	}
	p, q := u.endpoint()
	_, err = c.admin(ctx, request{op: "delete resource", method: http.MethodDelete, path: p, query: q}, adminToken)
	return err
}

// SetResourcePolicy installs a Rego resource policy: {"policy":"<base64url
// without padding>"}.
func (c *Client) SetResourcePolicy(ctx context.Context, adminToken string, policy []byte) error {
	if len(policy) > limits.MaxPolicyBytes {
		return fmt.Errorf("set resource policy: %d bytes exceeds %d", len(policy), limits.MaxPolicyBytes)
	}
	body, err := json.Marshal(struct {
		Policy string `json:"policy"`
	}{base64.RawURLEncoding.EncodeToString(policy)})
	if err != nil {
		return err
	}
	_, err = c.admin(ctx, request{op: "set resource policy", method: http.MethodPost, path: "/kbs/v0/resource-policy", body: body, contentType: "application/json"}, adminToken)
	return err
}

// GetResourcePolicy returns the KBS answer to GET /kbs/v0/resource-policy
// as is: upstream answers a JSON array of policy IDs, not the policy text.
func (c *Client) GetResourcePolicy(ctx context.Context, adminToken string) ([]byte, error) {
	return c.admin(ctx, request{op: "get resource policy", method: http.MethodGet, path: "/kbs/v0/resource-policy"}, adminToken)
}

// DefaultAttestationPolicyType and DefaultAttestationPolicyID are what
// SetAttestationPolicy sends for empty arguments, as kbs-client does.
const (
	DefaultAttestationPolicyType = "rego"
	DefaultAttestationPolicyID   = "default_cpu"
)

// SetAttestationPolicy installs an Attestation Service policy:
// {"type":"rego","policy_id":"<id>","policy":"<base64url without padding>"}.
func (c *Client) SetAttestationPolicy(ctx context.Context, adminToken, policyType, policyID string, policy []byte) error {
	if policyType == "" {
		policyType = DefaultAttestationPolicyType
	}
	if policyID == "" {
		policyID = DefaultAttestationPolicyID
	}
	if len(policy) > limits.MaxPolicyBytes {
		return fmt.Errorf("set attestation policy: %d bytes exceeds %d", len(policy), limits.MaxPolicyBytes)
	}
	body, err := json.Marshal(struct {
		Type     string `json:"type"`
		PolicyID string `json:"policy_id"`
		Policy   string `json:"policy"`
	}{policyType, policyID, base64.RawURLEncoding.EncodeToString(policy)})
	if err != nil {
		return err
	}
	_, err = c.admin(ctx, request{op: "set attestation policy", method: http.MethodPost, path: "/kbs/v0/attestation-policy", body: body, contentType: "application/json"}, adminToken)
	return err
}

// SetReferenceValue posts an RVPS message (JSON, e.g.
// {"version":"0.1.0","type":"sample","payload":"..."}) to the KBS.
func (c *Client) SetReferenceValue(ctx context.Context, adminToken string, message json.RawMessage) error {
	if len(message) > limits.MaxConfigBytes || !json.Valid(message) {
		return errors.New("set reference value: message is not a JSON document within limits")
	}
	_, err := c.admin(ctx, request{op: "set reference value", method: http.MethodPost, path: "/kbs/v0/reference-value", body: message, contentType: "application/json"}, adminToken)
	return err
}

// GetReferenceValue returns the JSON of the reference value id (which may
// contain "/").
func (c *Client) GetReferenceValue(ctx context.Context, adminToken, id string) ([]byte, error) {
	segs := strings.Split(id, "/")
	for i, s := range segs {
		if !validSegment(s) {
			return nil, fmt.Errorf("get reference value: bad id %q", id)
		}
		segs[i] = url.PathEscape(s)
	}
	return c.admin(ctx, request{op: "get reference value", method: http.MethodGet, path: "/kbs/v0/reference-value/" + strings.Join(segs, "/"), contentType: "application/json"}, adminToken)
}

func (c *Client) admin(ctx context.Context, r request, adminToken string) ([]byte, error) {
	if adminToken != "" {
		if len(adminToken) > limits.MaxTokenBytes {
			return nil, fmt.Errorf("kbs %s: admin token exceeds %d bytes", r.op, limits.MaxTokenBytes)
		}
		r.bearer = adminToken
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, statusError(r.op, resp)
	}
	return resp.body, nil
}
