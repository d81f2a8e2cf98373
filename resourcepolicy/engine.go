// Package resourcepolicy is the KBS resource policy engine: it decides
// whether a requester holding verified attestation claims may use a plugin
// path (e.g. read resource repo/type/tag).
//
// # Contract (upstream kbs/src/api_server.rs, deps/policy-engine)
//
//   - The policy is Rego, stored in the KV store under namespace "kbs", key
//     "resource-policy.rego". New stores DefaultPolicy with overwrite=false,
//     so a persisted policy wins.
//   - input is the token's claims; data is {"plugin", "resource-path",
//     "query"}. The decision is data.policy.allow: true allows; false
//     denies; undefined or non-boolean denies and sets Decision.RuleError
//     (upstream counts it as a policy error).
//   - Policies in Rego v1 syntax and in v0 syntax are both accepted (v1 is
//     tried first), as regorus accepts both.
//
// # Beyond upstream
//
//   - A deny carries a Reason naming the allow rule(s) that failed, the
//     failing expression with its location and the values it compared, e.g.
//     `resource-policy.rego:16: rule "allow": expression 'plugin ==
//     "resource"' was false ("kms" == "resource")`. A policy may add its own
//     text through a string rule data.policy.deny_reason (or
//     data.policy.reason). The reason is computed only on the deny path, by
//     evaluating again with a tracer; the allow path runs a prepared query.
//   - The prepared query is cached per policy content (SHA-256 of the
//     stored bytes). The store is re-read at most once per ReloadInterval
//     (default 1 s) and after SetPolicy, so a policy set through another
//     replica sharing the store takes effect within that interval.
//   - Builtins that reach the network or the host (http.send,
//     net.lookup_ip_addr, opa.runtime) are not available to policies;
//     regorus has none of them either.
//
// An Engine is safe for concurrent use.
package resourcepolicy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/resolver"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
)

// Storage location and rule of the resource policy, as upstream.
const (
	// PolicyID is the ID ListPolicies reports.
	PolicyID = "resource-policy"
	// PolicyKey is the key in storage.NamespaceKBS.
	PolicyKey = PolicyID + policySuffix
	// Rule is the decision rule.
	Rule = "data.policy.allow"

	policySuffix = ".rego"
)

// DefaultReloadInterval is how long a cached policy is used before the
// store is checked for a newer one.
const DefaultReloadInterval = time.Second

var (
	// ErrInvalidPolicy is returned for a policy that is too large, not
	// UTF-8, or does not compile.
	ErrInvalidPolicy = errors.New("resourcepolicy: invalid resource policy")
	// ErrPolicyEngine is returned when a policy cannot be loaded or
	// evaluated (storage failure, evaluation error such as a conflict).
	ErrPolicyEngine = errors.New("resourcepolicy: resource policy engine error")
)

// Options are the non-configuration inputs of an Engine. Zero values are
// production defaults.
type Options struct {
	// Logger receives load and evaluation problems; nil discards. Claims
	// are not logged.
	Logger *slog.Logger
	// Now is the clock of the reload check; nil: time.Now.
	Now func() time.Time
	// ReloadInterval bounds how stale the cached policy may be relative to
	// the store; 0 means DefaultReloadInterval.
	ReloadInterval time.Duration
}

// Data is the request description the policy sees as data.
type Data struct {
	Plugin       string            // data.plugin
	ResourcePath []string          // data["resource-path"]
	Query        map[string]string // data.query
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allowed bool
	// Reason explains a deny (empty when allowed).
	Reason string
	// RuleError is set when data.policy.allow was undefined or not a
	// boolean; the request is denied and upstream counts a policy error.
	RuleError bool
}

// Engine evaluates the stored resource policy. See the package
// documentation.
type Engine struct {
	store    storage.Store
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration

	cur     atomic.Pointer[compiled]
	checked atomic.Int64 // UnixNano of the last successful store check
	mu      sync.Mutex   // serializes reloads
}

// New returns an Engine over store, installing DefaultPolicy unless a
// policy is already stored. A stored policy that does not compile does not
// stop New (the admin API must stay usable to replace it); Evaluate then
// fails until it is replaced.
func New(ctx context.Context, store storage.Store, opts Options) (*Engine, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrPolicyEngine)
	}
	e := &Engine{store: store, log: opts.Logger, now: opts.Now, interval: opts.ReloadInterval}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.interval <= 0 {
		e.interval = DefaultReloadInterval
	}
	if _, err := store.Set(ctx, storage.NamespaceKBS, PolicyKey, DefaultPolicy(), false); err != nil {
		return nil, fmt.Errorf("%w: installing the default resource policy: %w", ErrPolicyEngine, err)
	}
	if _, err := e.current(ctx); err != nil {
		if !errors.Is(err, ErrInvalidPolicy) {
			return nil, err
		}
		e.log.Error("the stored resource policy does not compile; every resource request will fail until it is replaced", "error", err.Error())
	}
	return e, nil
}

// SetPolicy validates and stores a new policy (overwriting), and makes it
// current in this Engine at once.
func (e *Engine) SetPolicy(ctx context.Context, src []byte) error {
	c, err := compile(ctx, src)
	if err != nil {
		return err
	}
	if _, err := e.store.Set(ctx, storage.NamespaceKBS, PolicyKey, src, true); err != nil {
		return fmt.Errorf("%w: storing the resource policy: %w", ErrPolicyEngine, err)
	}
	e.mu.Lock()
	e.cur.Store(c)
	e.checked.Store(e.now().UnixNano())
	e.mu.Unlock()
	return nil
}

// ListPolicies returns the IDs of the policies in namespace "kbs" (the
// stored key without ".rego"), e.g. ["resource-policy"]; a key without the
// suffix is an error, as upstream.
func (e *Engine) ListPolicies(ctx context.Context) ([]string, error) {
	keys, err := e.store.List(ctx, storage.NamespaceKBS)
	if err != nil {
		return nil, fmt.Errorf("%w: listing policies: %w", ErrPolicyEngine, err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, ok := strings.CutSuffix(k, policySuffix)
		if !ok {
			return nil, fmt.Errorf("%w: stored policy %q has no %s suffix", ErrPolicyEngine, k, policySuffix)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Evaluate decides a request. An error means no decision could be made
// (the caller must deny); a deny is a Decision with Allowed false.
func (e *Engine) Evaluate(ctx context.Context, claims map[string]any, data Data) (Decision, error) {
	c, err := e.current(ctx)
	if err != nil {
		return Decision{}, err
	}
	input, err := inputValue(claims)
	if err != nil {
		return Decision{}, err
	}
	res := newDataResolvers(data)
	rs, err := c.pq.Eval(ctx, res.evalOptions(rego.EvalParsedInput(input))...)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: evaluating %s: %w", ErrPolicyEngine, Rule, err)
	}
	var (
		d       Decision
		got     any
		defined = len(rs) > 0 && len(rs[0].Expressions) > 0
	)
	if defined {
		got = rs[0].Expressions[0].Value
		b, ok := got.(bool)
		d.Allowed, d.RuleError = ok && b, !ok
	} else {
		d.RuleError = true
	}
	if d.Allowed {
		return d, nil
	}
	d.Reason = explain(ctx, c, input, res, defined, got)
	if d.RuleError {
		e.log.Warn("the resource policy did not produce a boolean allow; denying", "reason", d.Reason)
	}
	return d, nil
}

// current returns the compiled policy, re-reading the store when the last
// check is older than the reload interval.
func (e *Engine) current(ctx context.Context) (*compiled, error) {
	c := e.cur.Load()
	if c != nil && e.now().Sub(time.Unix(0, e.checked.Load())) < e.interval {
		return c, nil
	}
	if c != nil {
		if !e.mu.TryLock() {
			return c, nil // another request is reloading
		}
	} else {
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if c2 := e.cur.Load(); c2 != nil && e.now().Sub(time.Unix(0, e.checked.Load())) < e.interval {
		return c2, nil // reloaded meanwhile
	}
	c = e.cur.Load()
	src, err := e.store.Get(ctx, storage.NamespaceKBS, PolicyKey)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the resource policy: %w", ErrPolicyEngine, err)
	}
	sum := sha256.Sum256(src)
	if c == nil || c.sum != sum {
		nc, err := compile(ctx, src)
		if err != nil {
			// Fail closed: never keep deciding with a policy the store no
			// longer holds.
			e.cur.Store(nil)
			return nil, fmt.Errorf("stored policy: %w", err)
		}
		if c != nil {
			e.log.Info("resource policy changed in the store; reloaded", "sha256", fmt.Sprintf("%x", sum[:8]))
		}
		c = nc
		e.cur.Store(c)
	}
	e.checked.Store(e.now().UnixNano())
	return c, nil
}

// compiled is one policy version, ready to evaluate.
type compiled struct {
	sum      [32]byte
	version  ast.RegoVersion
	compiler *ast.Compiler
	pq       rego.PreparedEvalQuery
	reason   *rego.PreparedEvalQuery // data.policy.deny_reason or reason, if defined
	meta     *policyMeta
}

var (
	ruleRef = ast.MustParseRef(Rule)
	// Builtins a resource policy must not use: they reach the network or
	// expose the host. regorus, behind upstream, has none of them.
	deniedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}
	capabilities   = func() *ast.Capabilities {
		caps := ast.CapabilitiesForThisVersion()
		caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
			return slices.Contains(deniedBuiltins, b.Name)
		})
		return caps
	}()
)

// compile parses src as Rego v1, then v0, and prepares the decision query.
func compile(ctx context.Context, src []byte) (*compiled, error) {
	if len(src) > limits.MaxPolicyBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidPolicy, len(src), limits.MaxPolicyBytes)
	}
	if !utf8.Valid(src) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrInvalidPolicy)
	}
	var firstErr error
	for _, v := range []ast.RegoVersion{ast.RegoV1, ast.RegoV0} {
		c, err := compileVersion(ctx, src, v)
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrInvalidPolicy, firstErr)
}

func compileVersion(ctx context.Context, src []byte, v ast.RegoVersion) (*compiled, error) {
	popts := ast.ParserOptions{RegoVersion: v, ProcessAnnotation: false}
	mod, err := ast.ParseModuleWithOpts(PolicyKey, string(src), popts)
	if err != nil {
		return nil, err
	}
	// A second parse keeps pristine source locations and text for
	// explanations; the compiler rewrites the first.
	orig, err := ast.ParseModuleWithOpts(PolicyKey, string(src), popts)
	if err != nil {
		return nil, err
	}
	comp := ast.NewCompiler().WithCapabilities(capabilities).WithDefaultRegoVersion(v)
	comp.Compile(map[string]*ast.Module{PolicyKey: mod})
	if comp.Failed() {
		return nil, comp.Errors
	}
	pq, err := rego.New(rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ruleRef)))), rego.Compiler(comp),
		rego.SetRegoVersion(v)).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	c := &compiled{sum: sha256.Sum256(src), version: v, compiler: comp, pq: pq, meta: newPolicyMeta(orig)}
	for _, name := range []string{"deny_reason", "reason"} {
		ref := ast.MustParseRef("data.policy." + name)
		if len(comp.GetRulesExact(ref)) == 0 {
			continue
		}
		rq, err := rego.New(rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))), rego.Compiler(comp),
			rego.SetRegoVersion(v)).PrepareForEval(ctx)
		if err != nil {
			return nil, err
		}
		c.reason = &rq
		break
	}
	return c, nil
}

// inputValue converts the claims to a Rego value, bounding their nesting.
func inputValue(claims map[string]any) (ast.Value, error) {
	if claims == nil {
		claims = map[string]any{}
	}
	if depth(claims, 0) > limits.MaxJSONDepth {
		return nil, fmt.Errorf("%w: claims nest deeper than %d levels", ErrPolicyEngine, limits.MaxJSONDepth)
	}
	v, err := ast.InterfaceToValue(claims)
	if err != nil {
		return nil, fmt.Errorf("%w: converting claims: %w", ErrPolicyEngine, err)
	}
	return v, nil
}

func depth(v any, d int) int {
	if d > limits.MaxJSONDepth {
		return d
	}
	m := d
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			m = max(m, depth(e, d+1))
		}
	case []any:
		for _, e := range x {
			m = max(m, depth(e, d+1))
		}
	}
	return m
}

var (
	refPlugin = ast.MustParseRef("data.plugin")
	refPath   = ast.MustParseRef(`data["resource-path"]`)
	refQuery  = ast.MustParseRef("data.query")
)

// DataValue is the Rego document data for d: {"plugin": ..., "resource-path":
// [...], "query": {...}} (nil path and query become [] and {}).
func DataValue(d Data) ast.Object {
	path := make([]*ast.Term, len(d.ResourcePath))
	for i, s := range d.ResourcePath {
		path[i] = ast.StringTerm(s)
	}
	q := ast.NewObject()
	for k, v := range d.Query {
		q.Insert(ast.StringTerm(k), ast.StringTerm(v))
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("plugin"), ast.StringTerm(d.Plugin)},
		[2]*ast.Term{ast.StringTerm("resource-path"), ast.ArrayTerm(path...)},
		[2]*ast.Term{ast.StringTerm("query"), ast.NewTerm(q)},
	)
}

// dataResolvers hands the per-request data documents to OPA without a
// store write: the prepared query is shared by concurrent requests.
type dataResolvers struct {
	plugin, path, query ast.Value
}

func newDataResolvers(d Data) *dataResolvers {
	obj := DataValue(d)
	return &dataResolvers{
		plugin: obj.Get(ast.StringTerm("plugin")).Value,
		path:   obj.Get(ast.StringTerm("resource-path")).Value,
		query:  obj.Get(ast.StringTerm("query")).Value,
	}
}

type constResolver struct{ v ast.Value }

func (r constResolver) Eval(context.Context, resolver.Input) (resolver.Result, error) {
	return resolver.Result{Value: r.v}, nil
}

func (r *dataResolvers) evalOptions(extra ...rego.EvalOption) []rego.EvalOption {
	return append([]rego.EvalOption{
		rego.EvalResolver(refPlugin, constResolver{r.plugin}),
		rego.EvalResolver(refPath, constResolver{r.path}),
		rego.EvalResolver(refQuery, constResolver{r.query}),
	}, extra...)
}

func (r *dataResolvers) regoOptions() []func(*rego.Rego) {
	return []func(*rego.Rego){
		rego.Resolver(refPlugin, constResolver{r.plugin}),
		rego.Resolver(refPath, constResolver{r.path}),
		rego.Resolver(refQuery, constResolver{r.query}),
	}
}

// Check reports whether src would be accepted as the resource policy: it
// is compiled exactly as SetPolicy compiles it, without storing it.
func Check(ctx context.Context, src []byte) error {
	_, err := compile(ctx, src)
	return err
}
