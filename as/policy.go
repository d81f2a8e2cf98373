package as

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
	"golang.org/x/sync/singleflight"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/rvps"
	"github.com/go-trustee/go-trustee/storage"
)

// Rules read from an attestation policy (package policy).
const (
	// TrustClaimsRule yields the trustworthiness vector: an object of AR4SI
	// claim name → integer.
	TrustClaimsRule = "data.policy.trust_claims"
	// ExtensionsRule optionally yields EAR appraisal extensions:
	// [{"name": string, "key": int32, "value": any}].
	ExtensionsRule = "data.policy.extensions"
	// QueryReferenceValueBuiltin is the Rego builtin through which policies
	// read reference values from the RVPS (null when absent).
	QueryReferenceValueBuiltin = "query_reference_value"
)

// policySuffix is appended to a policy id to form its storage key, as
// upstream ("default_cpu" is stored as "default_cpu.rego").
const policySuffix = ".rego"

// rvpsQueryTimeout bounds one query_reference_value call, as upstream.
const rvpsQueryTimeout = 10 * time.Second

// policyCacheSize bounds the number of compiled policy versions kept.
const policyCacheSize = 64

// evalQuery evaluates both rules in one pass (so reference values are
// queried once) and tells "undefined" apart from a value: each
// comprehension yields [] or [value].
var evalQuery = "[[x | x := " + TrustClaimsRule + "], [x | x := " + ExtensionsRule + "]]"

//go:embed policies/*.rego
var defaultPolicyFS embed.FS

// DefaultPolicies returns the built-in attestation policies by id
// (default_cpu, default_gpu, default_switch, default_ppcie).
func DefaultPolicies() map[string][]byte {
	out := map[string][]byte{}
	entries, _ := defaultPolicyFS.ReadDir("policies")
	for _, e := range entries {
		b, err := defaultPolicyFS.ReadFile("policies/" + e.Name())
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(e.Name(), policySuffix)] = b
	}
	return out
}

// compiledPolicy is one prepared policy version.
type compiledPolicy struct {
	query rego.PreparedEvalQuery
	// hasTrustClaims and hasExtensions record whether the policy defines
	// the rules at all: an absent rule and a defined-but-undefined one are
	// different cases upstream.
	hasTrustClaims bool
	hasExtensions  bool
}

// policyEngine compiles attestation policies once per version and
// evaluates them. Compiled versions are cached by the SHA-256 of the stored
// bytes, so a policy changed by SetPolicy here, or by another replica
// sharing the store, is picked up on the next evaluation, while an
// unchanged policy is never recompiled.
type policyEngine struct {
	store storage.Store
	rvps  rvps.Provider
	log   *slog.Logger

	mu    sync.Mutex
	cache map[[32]byte]*list.Element // of *cacheEntry
	lru   *list.List
	group singleflight.Group
}

type cacheEntry struct {
	hash [32]byte
	cp   *compiledPolicy
}

func newPolicyEngine(store storage.Store, rv rvps.Provider, log *slog.Logger) *policyEngine {
	return &policyEngine{store: store, rvps: rv, log: log, cache: map[[32]byte]*list.Element{}, lru: list.New()}
}

// policyKey validates a policy id and returns its storage key.
func policyKey(id string) (string, error) {
	key := id + policySuffix
	if id == "" || storage.ValidateKey(storage.NamespaceAttestationPolicy, key) != nil {
		return "", fmt.Errorf("%w: illegal policy id %q", ErrInvalidPolicy, id)
	}
	return key, nil
}

// capabilities are OPA's, minus the builtins that reach the network: an
// attestation policy is evaluated on every attestation and must neither
// stall on nor leak to remote hosts (regorus, upstream's engine, has none).
var capabilities = func() map[ast.RegoVersion]*ast.Capabilities {
	out := map[ast.RegoVersion]*ast.Capabilities{}
	for _, v := range []ast.RegoVersion{ast.RegoV1, ast.RegoV0} {
		c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(v))
		c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
			return b.Name == "http.send" || b.Name == "net.lookup_ip_addr"
		})
		out[v] = c
	}
	return out
}()

// parsePolicy parses Rego as v1 (import rego.v1 / if / contains) and, if
// that fails, as v0 (e.g. `allow { ... }`), so that policies written for
// either dialect keep working.
func parsePolicy(src []byte) (*ast.Module, ast.RegoVersion, error) {
	if len(src) > limits.MaxPolicyBytes {
		return nil, 0, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrInvalidPolicy, len(src), limits.MaxPolicyBytes)
	}
	if !utf8.Valid(src) {
		return nil, 0, fmt.Errorf("%w: policy is not a UTF-8 string", ErrInvalidPolicy)
	}
	m, errV1 := ast.ParseModuleWithOpts("policy.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if errV1 == nil {
		return m, ast.RegoV1, nil
	}
	m, errV0 := ast.ParseModuleWithOpts("policy.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV0})
	if errV0 == nil {
		return m, ast.RegoV0, nil
	}
	return nil, 0, fmt.Errorf("%w: %v", ErrInvalidPolicy, errV1)
}

// compile parses and prepares a policy.
func (e *policyEngine) compile(ctx context.Context, src []byte) (*compiledPolicy, error) {
	m, version, err := parsePolicy(src)
	if err != nil {
		return nil, err
	}
	r := rego.New(
		rego.Query(evalQuery),
		rego.ParsedModule(m),
		rego.SetRegoVersion(version),
		rego.Capabilities(capabilities[version]),
		rego.Function1(&rego.Function{
			Name:    QueryReferenceValueBuiltin,
			Decl:    types.NewFunction(types.Args(types.A), types.A),
			Memoize: true,
		}, e.queryReferenceValue),
	)
	pq, err := r.PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	cp := &compiledPolicy{query: pq}
	if m.Package.Path.String() == "data.policy" {
		for _, rule := range m.Rules {
			switch rule.Head.Ref()[0].Value.String() {
			case "trust_claims":
				cp.hasTrustClaims = true
			case "extensions":
				cp.hasExtensions = true
			}
		}
	}
	return cp, nil
}

// queryReferenceValue implements query_reference_value(id): the RVPS value
// of id, or null. A storage failure aborts the evaluation (fail closed).
func (e *policyEngine) queryReferenceValue(bctx rego.BuiltinContext, a *ast.Term) (*ast.Term, error) {
	id, ok := a.Value.(ast.String)
	if !ok {
		return nil, rego.NewHaltError(fmt.Errorf("%s extension parameter must be a string", QueryReferenceValueBuiltin))
	}
	ctx, cancel := context.WithTimeout(bctx.Context, rvpsQueryTimeout)
	defer cancel()
	raw, found, err := e.rvps.Query(ctx, string(id))
	if err != nil {
		return nil, rego.NewHaltError(fmt.Errorf("get reference value %q from RVPS failed: %w", string(id), err))
	}
	if !found {
		e.log.Warn("no reference value found, using null", "id", string(id))
		return ast.NullTerm(), nil
	}
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, rego.NewHaltError(fmt.Errorf("reference value %q: %w", string(id), err))
	}
	return ast.NewTerm(v), nil
}

// load returns the compiled current version of the policy id.
func (e *policyEngine) load(ctx context.Context, id string) (*compiledPolicy, error) {
	key, err := policyKey(id)
	if err != nil {
		return nil, err
	}
	src, err := e.store.Get(ctx, storage.NamespaceAttestationPolicy, key)
	if errors.Is(err, storage.ErrNotFound) {
		src, err = e.reseed(ctx, id, key)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: Policy `%s` not found", ErrPolicyNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("reading policy %q: %w", id, err)
	}
	cp, err := e.compiled(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", id, err)
	}
	return cp, nil
}

// reseed handles a built-in policy missing from the store (a Redis that
// came back empty, a wiped directory): the built-in version is written
// back, if absent (a version another replica or the operator writes at the
// same time wins), and the stored version returned. Without that, every
// attestation would fail until a restart seeded it again. If the write
// fails the built-in version is served all the same. Other ids stay
// ErrNotFound.
func (e *policyEngine) reseed(ctx context.Context, id, key string) ([]byte, error) {
	def, ok := DefaultPolicies()[id]
	if !ok {
		return nil, storage.ErrNotFound
	}
	if _, err := e.store.Set(ctx, storage.NamespaceAttestationPolicy, key, def, false); err != nil {
		e.log.Warn("built-in attestation policy missing from the store and not written back; serving the built-in version", "policy", id, "error", err)
		return def, nil
	}
	e.log.Warn("built-in attestation policy was missing from the store (store emptied?); written back", "policy", id)
	src, err := e.store.Get(ctx, storage.NamespaceAttestationPolicy, key)
	if err != nil {
		return def, nil
	}
	return src, nil
}

// compiled returns the compiled form of src from the cache, compiling it
// (once, however many callers ask at the same time) on a miss.
func (e *policyEngine) compiled(ctx context.Context, src []byte) (*compiledPolicy, error) {
	h := sha256.Sum256(src)
	e.mu.Lock()
	if el, ok := e.cache[h]; ok {
		e.lru.MoveToFront(el)
		cp := el.Value.(*cacheEntry).cp
		e.mu.Unlock()
		return cp, nil
	}
	e.mu.Unlock()
	v, err, _ := e.group.Do(string(h[:]), func() (any, error) {
		// The compilation must not be cut short by one caller's context.
		cp, err := e.compile(context.WithoutCancel(ctx), src)
		if err != nil {
			return nil, err
		}
		e.put(h, cp)
		return cp, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*compiledPolicy), nil
}

func (e *policyEngine) put(h [32]byte, cp *compiledPolicy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if el, ok := e.cache[h]; ok {
		e.lru.MoveToFront(el)
		return
	}
	e.cache[h] = e.lru.PushFront(&cacheEntry{hash: h, cp: cp})
	for e.lru.Len() > policyCacheSize {
		old := e.lru.Back()
		e.lru.Remove(old)
		delete(e.cache, old.Value.(*cacheEntry).hash)
	}
}

// policyResult is what one evaluation yields.
type policyResult struct {
	trust      trustVector
	extensions []extension
}

// evaluate runs a compiled policy on input (the annotated evidence) and
// interprets trust_claims and extensions as upstream:
//   - trust_claims not defined by the policy: every claim is set to 0;
//     defined but undefined for this input: an error;
//   - each claim name must be one of the eight AR4SI names and its value an
//     integer (stored as int8, wrapping like Rust's `as i8`);
//   - at least one claim must end up set;
//   - extensions not defined: none; otherwise an array of
//     {"name","key","value"} with unique names and keys.
func (e *policyEngine) evaluate(ctx context.Context, cp *compiledPolicy, input ast.Value) (policyResult, error) {
	rs, err := cp.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return policyResult{}, fmt.Errorf("%w: %v", ErrPolicyEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return policyResult{}, fmt.Errorf("%w: unexpected result set", ErrPolicyEvaluation)
	}
	pair, ok := rs[0].Expressions[0].Value.([]any)
	if !ok || len(pair) != 2 {
		return policyResult{}, fmt.Errorf("%w: unexpected result %T", ErrPolicyEvaluation, rs[0].Expressions[0].Value)
	}
	tcs, _ := pair[0].([]any)
	exts, _ := pair[1].([]any)

	var res policyResult
	switch {
	case len(tcs) == 1:
		obj, ok := tcs[0].(map[string]any)
		if !ok {
			return policyResult{}, fmt.Errorf("%w: Trust claims is not an object", ErrPolicyEvaluation)
		}
		for k, v := range obj {
			idx := slices.Index(trustClaimNames[:], k)
			if idx < 0 {
				return policyResult{}, fmt.Errorf("%w: unknown trust claim %q", ErrPolicyEvaluation, k)
			}
			n, err := integer(v)
			if err != nil {
				return policyResult{}, fmt.Errorf("%w: Trust claim value not number: %s: %v", ErrPolicyEvaluation, k, err)
			}
			res.trust.set(idx, int8(n))
		}
	case cp.hasTrustClaims:
		return policyResult{}, fmt.Errorf("%w: rule %s is undefined for this evidence", ErrPolicyEvaluation, TrustClaimsRule)
	default:
		e.log.Warn("policy has no trust claims rule, setting every trust vector claim to 0", "rule", TrustClaimsRule)
		res.trust.setAll(0)
	}
	if !res.trust.anySet() {
		return policyResult{}, fmt.Errorf("%w: at least one policy claim must be set", ErrPolicyEvaluation)
	}

	switch {
	case len(exts) == 1:
		res.extensions, err = parseExtensions(exts[0])
		if err != nil {
			return policyResult{}, err
		}
	case cp.hasExtensions:
		return policyResult{}, fmt.Errorf("%w: rule %s is undefined for this evidence", ErrPolicyEvaluation, ExtensionsRule)
	}
	return res, nil
}

// integer converts a policy result number to int64; fractions are errors.
func integer(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%T is not a number", v)
	}
	return n.Int64()
}

// reservedAppraisalKeys are the members of an EAR appraisal that an
// extension must not shadow.
var reservedAppraisalKeys = []string{
	"ear.status", "ear.trustworthiness-vector", "ear.appraisal-policy-id",
	"ear.veraison.annotated-evidence", "ear.veraison.policy-claims", "ear.veraison.key-attestation",
}

// extension is one EAR appraisal extension.
type extension struct {
	name  string
	key   int32
	value any
}

func parseExtensions(v any) ([]extension, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not an array", ErrPolicyEvaluation, ExtensionsRule)
	}
	out := make([]extension, 0, len(list))
	for i, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: extension %d is not an object", ErrPolicyEvaluation, i)
		}
		name, ok := obj["name"].(string)
		if !ok {
			return nil, fmt.Errorf("%w: extension %d: name is not a string", ErrPolicyEvaluation, i)
		}
		k, err := integer(obj["key"])
		if err != nil || k < -1<<31 || k > 1<<31-1 {
			return nil, fmt.Errorf("%w: extension %q: key is not a 32-bit integer", ErrPolicyEvaluation, name)
		}
		value, ok := obj["value"]
		if !ok {
			return nil, fmt.Errorf("%w: extension %q: missing field `value`", ErrPolicyEvaluation, name)
		}
		if slices.Contains(reservedAppraisalKeys, name) {
			return nil, fmt.Errorf("%w: extension name %q is reserved", ErrPolicyEvaluation, name)
		}
		for _, prev := range out {
			if prev.name == name {
				return nil, fmt.Errorf("%w: extension name %s already registered", ErrPolicyEvaluation, name)
			}
			if prev.key == int32(k) {
				return nil, fmt.Errorf("%w: extension key %d already registered", ErrPolicyEvaluation, k)
			}
		}
		out = append(out, extension{name: name, key: int32(k), value: value})
	}
	slices.SortFunc(out, func(a, b extension) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// CheckPolicy reports whether src would be accepted as an attestation
// policy: it parses (Rego v1, then v0) and prepares it exactly as
// Service.SetPolicy does, without storing it. The operator uses it to
// refuse a policy ConfigMap before a pod would.
func CheckPolicy(ctx context.Context, src []byte) error {
	_, err := (&policyEngine{}).compile(ctx, src)
	return err
}
