package resourcepolicy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/go-trustee/go-trustee/internal/limits"
)

// Bounds of a deny explanation.

// policyMeta describes the allow rules of a policy in source terms: where
// each body expression is and what it says.
type policyMeta struct {
	defaultRow int // row of "default allow", 0 when none
	rules      []allowRule
	index      map[[2]int]exprRef // (row, col) of a body expression
	rows       map[int][]exprRef  // row of a body expression
}

type allowRule struct {
	row   int
	exprs []exprInfo
}

type exprInfo struct {
	row  int
	text string
}

type exprRef struct{ rule, idx int }

var allowName = ast.Var("allow")

func newPolicyMeta(m *ast.Module) *policyMeta {
	pm := &policyMeta{index: map[[2]int]exprRef{}, rows: map[int][]exprRef{}}
	if m.Package.Path.String() != "data.policy" {
		return pm
	}
	for _, r := range m.Rules {
		ref := r.Head.Ref()
		if len(ref) != 1 || ref[0].Value.Compare(allowName) != 0 {
			continue
		}
		if r.Default {
			pm.defaultRow = r.Location.Row
			continue
		}
		for rr := r; rr != nil; rr = rr.Else {
			ar := allowRule{row: rr.Location.Row}
			for _, e := range rr.Body {
				if e.Location == nil || len(e.Location.Text) == 0 {
					// A generated body (e.g. "allow = true" without one).
					continue
				}
				ref := exprRef{rule: len(pm.rules), idx: len(ar.exprs)}
				pm.index[[2]int{e.Location.Row, e.Location.Col}] = ref
				pm.rows[e.Location.Row] = append(pm.rows[e.Location.Row], ref)
				ar.exprs = append(ar.exprs, exprInfo{row: e.Location.Row, text: oneLine(string(e.Location.Text))})
			}
			pm.rules = append(pm.rules, ar)
		}
	}
	return pm
}

func (pm *policyMeta) lookup(loc *ast.Location) (exprRef, bool) {
	if loc == nil {
		return exprRef{}, false
	}
	if r, ok := pm.index[[2]int{loc.Row, loc.Col}]; ok {
		return r, true
	}
	// Compiler rewrites (e.g. a nested call lifted out) may point into the
	// expression; accept the row when it holds exactly one expression.
	if rs := pm.rows[loc.Row]; len(rs) == 1 {
		return rs[0], true
	}
	return exprRef{}, false
}

// failTracer records, for each allow rule, the furthest body expression
// that failed, with its local variables plugged in at the time of failure.
type failTracer struct {
	meta  *policyMeta
	fails map[int]failure
}

type failure struct {
	idx  int
	expr *ast.Expr // compiled, locals plugged
}

func (t *failTracer) Enabled() bool { return true }

func (t *failTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{PlugLocalVars: true} }

func (t *failTracer) TraceEvent(evt topdown.Event) {
	if evt.Op != topdown.FailOp {
		return
	}
	e, ok := evt.Node.(*ast.Expr)
	if !ok {
		return
	}
	loc := evt.Location
	if loc == nil {
		loc = e.Location
	}
	ref, ok := t.meta.lookup(loc)
	if !ok {
		return
	}
	if prev, seen := t.fails[ref.rule]; seen && prev.idx > ref.idx {
		return
	}
	pe := e.Copy()
	switch x := pe.Terms.(type) {
	case *ast.Term:
		pe.Terms = evt.Plug(x)
	case []*ast.Term:
		for i := range x {
			x[i] = evt.Plug(x[i])
		}
	}
	t.fails[ref.rule] = failure{idx: ref.idx, expr: pe}
}

// explain builds the Reason of a deny. It never fails: what it cannot
// find out it leaves out.
func explain(ctx context.Context, c *compiled, input ast.Value, res *dataResolvers, defined bool, got any) string {
	var parts []string
	ev := &termEvaluator{ctx: ctx, c: c, input: input, res: res}
	if s := policyReason(ctx, c, input, res); s != "" {
		parts = append(parts, "policy: "+s)
	}
	tr := &failTracer{meta: c.meta, fails: map[int]failure{}}
	_, traceErr := c.pq.Eval(ctx, res.evalOptions(rego.EvalParsedInput(input), rego.EvalQueryTracer(tr),
		rego.EvalRuleIndexing(false), rego.EvalEarlyExit(false))...)

	meta := c.meta
	switch {
	case defined:
		if _, isBool := got.(bool); !isBool {
			parts = append(parts, fmt.Sprintf("%s evaluated to %s, not a boolean", Rule, renderGo(got)))
			break
		}
		if len(meta.rules) == 0 {
			if meta.defaultRow > 0 {
				parts = append(parts, fmt.Sprintf("%s:%d: default allow = false and the policy has no other allow rule", PolicyKey, meta.defaultRow))
			} else {
				parts = append(parts, Rule+" is false")
			}
			break
		}
		parts = append(parts, ruleDetails(meta, tr, ev, meta.defaultRow > 0))
	default:
		if len(meta.rules) == 0 {
			parts = append(parts, fmt.Sprintf("the policy defines no rule %s (package policy, rule allow)", Rule))
			break
		}
		parts = append(parts, Rule+" is undefined (no default) and "+ruleDetails(meta, tr, ev, false))
	}
	if traceErr != nil {
		parts = append(parts, "tracing failed: "+traceErr.Error())
	}
	return truncate(strings.Join(parts, "; "), limits.MaxDenyReasonBytes)
}

func ruleDetails(meta *policyMeta, tr *failTracer, ev *termEvaluator, hasDefault bool) string {
	type item struct {
		progress float64
		row      int
		text     string
	}
	var items []item
	for i, r := range meta.rules {
		f, ok := tr.fails[i]
		if !ok || len(r.exprs) == 0 {
			items = append(items, item{progress: -1, row: r.row,
				text: fmt.Sprintf("%s:%d: rule \"allow\" did not grant access", PolicyKey, r.row)})
			continue
		}
		ex := r.exprs[f.idx]
		verdict, detail := ev.describe(f.expr)
		text := fmt.Sprintf("%s:%d: rule \"allow\": expression '%s' was %s", PolicyKey, ex.row, ex.text, verdict)
		if detail != "" {
			text += " (" + detail + ")"
		}
		items = append(items, item{progress: float64(f.idx+1) / float64(len(r.exprs)), row: r.row, text: text})
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if c := cmp.Compare(b.progress, a.progress); c != 0 {
			return c
		}
		return cmp.Compare(a.row, b.row)
	})
	prefix := ""
	if hasDefault {
		prefix = "default allow = false: "
	}
	if len(items) == 1 {
		return prefix + items[0].text
	}
	var b strings.Builder
	b.WriteString(prefix + "no allow rule matched; closest: " + items[0].text)
	for i, it := range items[1:] {
		if i+1 >= limits.MaxDenyReasonRules {
			fmt.Fprintf(&b, "; and %d more", len(items)-limits.MaxDenyReasonRules)
			break
		}
		b.WriteString("; also " + it.text)
	}
	return b.String()
}

// policyReason evaluates data.policy.deny_reason (or reason) if the policy
// defines it: a string, or strings in an array or set.
func policyReason(ctx context.Context, c *compiled, input ast.Value, res *dataResolvers) string {
	if c.reason == nil {
		return ""
	}
	rs, err := c.reason.Eval(ctx, res.evalOptions(rego.EvalParsedInput(input))...)
	if err != nil || len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return ""
	}
	switch v := rs[0].Expressions[0].Value.(type) {
	case string:
		return oneLine(v)
	case []any:
		var ss []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				ss = append(ss, oneLine(s))
			}
		}
		slices.Sort(ss)
		return strings.Join(ss, "; ")
	}
	return ""
}

// termEvaluator evaluates the operands of a failed expression, so that a
// reason can show what was compared.
type termEvaluator struct {
	ctx   context.Context
	c     *compiled
	input ast.Value
	res   *dataResolvers
	evals int
}

var infix = map[string]string{
	// The compiler turns a failed == into a unification (eq); both read
	// best as ==.
	"equal": "==", "eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
}

// describe returns "false" or "undefined" for a failed expression, and the
// compared values.
func (ev *termEvaluator) describe(e *ast.Expr) (verdict, detail string) {
	switch x := e.Terms.(type) {
	case *ast.Term:
		v, ok := ev.value(x)
		switch {
		case e.Negated && ok:
			return "false", fmt.Sprintf("%s is %s", termText(x), v)
		case e.Negated:
			return "false", ""
		case !ok:
			return "undefined", termText(x) + " is undefined"
		default:
			return "false", fmt.Sprintf("%s is %s", termText(x), v)
		}
	case []*ast.Term:
		if len(x) == 0 {
			return "false", ""
		}
		op := x[0].String()
		args := make([]string, len(x)-1)
		undefined := ""
		for i, t := range x[1:] {
			v, ok := ev.value(t)
			if !ok {
				v = "undefined"
				if undefined == "" {
					undefined = termText(t)
				}
			}
			args[i] = v
		}
		var call string
		if sym, ok := infix[op]; ok && len(args) == 2 {
			call = args[0] + " " + sym + " " + args[1]
		} else {
			call = op + "(" + strings.Join(args, ", ") + ")"
		}
		switch {
		case e.Negated:
			return "false", "not " + call
		case undefined != "":
			return "undefined", undefined + " is undefined"
		}
		return "false", call
	}
	return "false", ""
}

// value renders a term's value: constants directly, references by
// evaluating them against the same input and data.
func (ev *termEvaluator) value(t *ast.Term) (string, bool) {
	if ast.IsConstant(t.Value) {
		return render(t.Value), true
	}
	ref, ok := t.Value.(ast.Ref)
	if !ok || !ref.IsGround() && !groundTail(ref) {
		return termText(t), true
	}
	if ev.evals >= limits.MaxDenyReasonSubEvals {
		return termText(t), true
	}
	ev.evals++
	x := ast.VarTerm("x")
	q := ast.NewBody(ast.Equality.Expr(x, t))
	opts := append(ev.res.regoOptions(), rego.ParsedQuery(q), rego.Compiler(ev.c.compiler),
		rego.ParsedInput(ev.input), rego.SetRegoVersion(ev.c.version))
	rs, err := rego.New(opts...).Eval(ev.ctx)
	if err != nil || len(rs) == 0 {
		return "", false
	}
	v, err := ast.InterfaceToValue(rs[0].Bindings["x"])
	if err != nil {
		return "", false
	}
	return render(v), true
}

// groundTail reports whether a ref is a data or input ref with constant
// operands after its head (the head var itself is not ground).
func groundTail(r ast.Ref) bool {
	if !r.HasPrefix(ast.DefaultRootRef) && !r.HasPrefix(ast.InputRootRef) {
		return false
	}
	for _, p := range r[1:] {
		if !ast.IsConstant(p.Value) {
			return false
		}
	}
	return true
}

var policyRef = ast.MustParseRef("data.policy")

func termText(t *ast.Term) string {
	if r, ok := t.Value.(ast.Ref); ok && r.HasPrefix(policyRef) && len(r) > 2 {
		// A rule of the policy itself: show it as the policy names it.
		return truncate(r[2:].String(), limits.MaxDenyReasonValueRunes)
	}
	return truncate(t.String(), limits.MaxDenyReasonValueRunes)
}

func render(v ast.Value) string { return truncate(v.String(), limits.MaxDenyReasonValueRunes) }

func renderGo(v any) string {
	av, err := ast.InterfaceToValue(v)
	if err != nil {
		return fmt.Sprintf("%T", v)
	}
	return render(av)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
