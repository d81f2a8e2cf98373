package resourcepolicy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/go-trustee/go-trustee/internal/limits"
	"github.com/go-trustee/go-trustee/storage"
	"github.com/go-trustee/go-trustee/storage/memory"
	"github.com/go-trustee/go-trustee/storage/storagetest"
)

func newEngine(t testing.TB, policy []byte) (*Engine, *storagetest.Faulty) {
	t.Helper()
	st := storagetest.NewFaulty(memory.New())
	e, err := New(context.Background(), st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if policy != nil {
		if err := e.SetPolicy(context.Background(), policy); err != nil {
			t.Fatal(err)
		}
	}
	return e, st
}

// sampleClaims is the input of upstream's deps/policy-engine tests.
func sampleClaims(productID string, svn int) map[string]any {
	return map[string]any{"submods": map[string]any{"cpu0": map[string]any{
		"ear.trustworthiness-vector": map[string]any{"executables": json.Number("2"), "hardware": json.Number("3")},
		"ear.veraison.annotated-evidence": map[string]any{
			"sample": map[string]any{"productId": productID, "svn": json.Number(fmt.Sprint(svn))},
		},
	}}}
}

func teeClaims(tee, status string) map[string]any {
	return map[string]any{"submods": map[string]any{"cpu0": map[string]any{
		"ear.status":                      status,
		"ear.veraison.annotated-evidence": map[string]any{tee: map[string]any{"measurement": "abcd"}},
	}}}
}

func resource(path ...string) Data {
	return Data{Plugin: "resource", ResourcePath: path, Query: map[string]string{}}
}

func TestNewInstallsDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	if _, err := New(ctx, st, Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, storage.NamespaceKBS, "resource-policy.rego")
	if err != nil || string(got) != string(DefaultPolicy()) {
		t.Fatalf("stored %q, %v", got, err)
	}
	// A persisted policy wins over the default.
	st2 := storagetest.NewFaulty(memory.New())
	st2.Set(ctx, storage.NamespaceKBS, PolicyKey, AllowAllPolicy(), true)
	e, err := New(ctx, st2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = st2.Get(ctx, storage.NamespaceKBS, PolicyKey)
	if string(got) != string(AllowAllPolicy()) {
		t.Fatal("New overwrote the stored policy")
	}
	d, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c"))
	if err != nil || !d.Allowed {
		t.Fatalf("stored allow-all not used: %+v %v", d, err)
	}
	if _, err := New(ctx, nil, Options{}); !errors.Is(err, ErrPolicyEngine) {
		t.Fatalf("nil store: %v", err)
	}
}

// Equivalents of upstream's deps/policy-engine/test_data/policy_{1..5}.rego.
const (
	policy1 = `package policy

default allow = false

allow if {
    count(data["resource-path"]) == 3
    data.plugin == "resource"
    input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["productId"] == data["resource-path"][1]
}
`
	policy2 = "package policy\ndefault allow = true\n"
	policy3 = "\npackage policy\n\ndefault allow = false\n\n"
	policy4 = `# extra blank lines must not matter



package policy

default allow = false

input_tcb := input["tcb-status"]

allow if {
    count(data["resource-path"]) == 3
    data.plugin == "resource"



    input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["productId"] == data["resource-path"][1]
}



`
	policy5 = `package policy

import rego.v1

default allow := false

# minimum SVN per resource
resources := {"secret1": 2, "secret2": 3}

allow if {
    input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
    data.plugin == "resource"
    data["resource-path"][0] == "myrepo"
    data["resource-path"][1] == "secret"
    resources[data["resource-path"][2]] <= input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["svn"]
}
`
)

func TestUpstreamPolicyEngineCases(t *testing.T) {
	// The cases of upstream's test_kbs_policy_evaluate, plus the allowing
	// cases policy 2 and 5 need for the tests to be able to fail.
	cases := []struct {
		name   string
		policy string
		data   Data
		id     string
		svn    int
		allow  bool
	}{
		{"p1 match", policy1, resource("my_repo", "Alice", "key"), "Alice", 1, true},
		{"p1 other plugin", policy1, Data{Plugin: "another-plugin", ResourcePath: []string{"my_repo", "Alice", "key"}}, "Alice", 1, false},
		{"p4 match", policy4, resource("my_repo", "Alice", "key"), "Alice", 1, true},
		{"p1 other product", policy1, resource("my_repo", "Alice", "key"), "Bob", 1, false},
		{"p1 two segments", policy1, resource("Alice", "Alice"), "Alice", 1, false},
		{"p3 default deny", policy3, resource("my_repo", "Alice", "key"), "Alice", 1, false},
		{"p2 default allow", policy2, Data{Plugin: "abc"}, "n", 1, true},
		{"p5 unknown secret", policy5, resource("myrepo", "secret", "secret"), "n", 2, false},
		{"p5 svn too low", policy5, resource("myrepo", "secret", "secret1"), "n", 1, false},
		{"p5 svn ok", policy5, resource("myrepo", "secret", "secret1"), "n", 2, true},
		{"p5 svn below 3", policy5, resource("myrepo", "secret", "secret2"), "n", 2, false},
		{"p5 svn 3", policy5, resource("myrepo", "secret", "secret2"), "n", 3, true},
		{"p5 secret3", policy5, resource("myrepo", "secret", "secret3"), "n", 3, false},
		{"p5 wrong repo", policy5, resource("a", "b", "secret2"), "n", 3, false},
		{"p5 other plugin, empty path", policy5, Data{Plugin: "abc", ResourcePath: []string{}}, "n", 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, []byte(tc.policy))
			d, err := e.Evaluate(context.Background(), sampleClaims(tc.id, tc.svn), tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.allow {
				t.Fatalf("allowed = %v, want %v (%s)", d.Allowed, tc.allow, d.Reason)
			}
			if d.Allowed == (d.Reason != "") {
				t.Fatalf("reason %q with allowed=%v", d.Reason, d.Allowed)
			}
			if d.RuleError {
				t.Fatal("RuleError for a boolean allow")
			}
		})
	}
}

func TestBuiltinPolicies(t *testing.T) {
	affirming := map[string]any{"submods": map[string]any{
		"cpu0": map[string]any{"ear.status": "affirming"},
		"gpu0": map[string]any{"ear.status": "affirming"},
	}}
	mixed := map[string]any{"submods": map[string]any{
		"cpu0": map[string]any{"ear.status": "affirming"},
		"gpu0": map[string]any{"ear.status": "warning"},
	}}
	cases := []struct {
		name   string
		policy []byte
		claims map[string]any
		data   Data
		allow  bool
	}{
		{"default denies sample", DefaultPolicy(), sampleClaims("x", 1), resource("a", "b", "c"), false},
		{"default allows snp", DefaultPolicy(), teeClaims("snp", "affirming"), resource("a", "b", "c"), true},
		{"default allows tdx even if contraindicated", DefaultPolicy(), teeClaims("tdx", "contraindicated"), resource("a", "b", "c"), true},
		{"default denies other plugins", DefaultPolicy(), teeClaims("snp", "affirming"), Data{Plugin: "nebula-ca"}, false},
		{"default with empty claims", DefaultPolicy(), map[string]any{}, resource("a", "b", "c"), true},
		{"allow_all allows sample", AllowAllPolicy(), sampleClaims("x", 1), resource("a", "b", "c"), true},
		{"allow_all denies other plugins", AllowAllPolicy(), sampleClaims("x", 1), Data{Plugin: "kms"}, false},
		{"deny_all", DenyAllPolicy(), teeClaims("snp", "affirming"), resource("a", "b", "c"), false},
		{"affirming all", AffirmingPolicy(), affirming, resource("a", "b", "c"), true},
		{"affirming any plugin", AffirmingPolicy(), affirming, Data{Plugin: "kms"}, true},
		{"affirming one warning", AffirmingPolicy(), mixed, resource("a", "b", "c"), false},
		{"affirming no submods", AffirmingPolicy(), map[string]any{"submods": map[string]any{}}, resource("a", "b", "c"), false},
		{"affirming missing submods", AffirmingPolicy(), map[string]any{}, resource("a", "b", "c"), false},
		{"affirming missing status", AffirmingPolicy(), teeClaims("snp", ""), resource("a", "b", "c"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, tc.policy)
			d, err := e.Evaluate(context.Background(), tc.claims, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.allow {
				t.Fatalf("allowed = %v, want %v (%s)", d.Allowed, tc.allow, d.Reason)
			}
		})
	}
}

func TestE2EPolicyPattern(t *testing.T) {
	// kbs/test Makefile test-bgcheck: a path and a TEE.
	const pol = `package policy
default allow = false
allow if {
	data["resource-path"][0] == "one"
	data["resource-path"][1] == "two"
	data["resource-path"][2] == "three"
	input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
}
`
	e, _ := newEngine(t, []byte(pol))
	cases := []struct {
		name   string
		claims map[string]any
		data   Data
		allow  bool
	}{
		{"match", sampleClaims("x", 1), resource("one", "two", "three"), true},
		{"wrong path", sampleClaims("x", 1), resource("one", "two", "four"), false},
		{"short path", sampleClaims("x", 1), resource("one", "two"), false},
		{"other TEE", teeClaims("snp", "affirming"), resource("one", "two", "three"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), tc.claims, tc.data)
			if err != nil || d.Allowed != tc.allow {
				t.Fatalf("got %+v, %v; want allow=%v", d, err, tc.allow)
			}
		})
	}
}

func TestQueryAndPluginData(t *testing.T) {
	const pol = `package policy
import rego.v1
default allow := false
allow if {
	data.plugin == "plugin1"
	data.query.version == "1.0.0"
	data["resource-path"] == ["para", "meters"]
	every k, _ in data.query { k in {"version", "debug"} }
}
`
	e, _ := newEngine(t, []byte(pol))
	cases := []struct {
		name  string
		data  Data
		allow bool
	}{
		{"match", Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}, Query: map[string]string{"version": "1.0.0"}}, true},
		{"extra allowed key", Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}, Query: map[string]string{"version": "1.0.0", "debug": "1"}}, true},
		{"unknown key", Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}, Query: map[string]string{"version": "1.0.0", "x": "1"}}, false},
		{"no query", Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}}, false},
		{"wrong version", Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}, Query: map[string]string{"version": "2"}}, false},
		{"nil path", Data{Plugin: "plugin1", Query: map[string]string{"version": "1.0.0"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), teeClaims("snp", "affirming"), tc.data)
			if err != nil || d.Allowed != tc.allow {
				t.Fatalf("got %+v, %v; want allow=%v", d, err, tc.allow)
			}
		})
	}
}

func TestDenyReasons(t *testing.T) {
	const multi = `package policy
default allow = false
allow { data.plugin == "resource"; input.submods.cpu0["ear.status"] == "affirming" }
allow { data.plugin == "kms"; startswith(data["resource-path"][0], "x") }
`
	const withReason = `package policy
import rego.v1
default allow := false
allow if { input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn >= 5 }
deny_reason := sprintf("svn %d is below 5", [input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn]) if {
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn < 5
}
`
	cases := []struct {
		name   string
		policy []byte
		claims map[string]any
		data   Data
		want   []string
	}{
		{"default policy, sample TEE", DefaultPolicy(), sampleClaims("x", 1), resource("a", "b", "c"), []string{
			`default allow = false: resource-policy.rego:`, `rule "allow": expression 'not input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]' was false`,
			`"productId": "x"`}},
		{"default policy, other plugin", DefaultPolicy(), teeClaims("snp", "affirming"), Data{Plugin: "kms"}, []string{
			`rule "allow": expression 'plugin == "resource"' was false ("kms" == "resource")`}},
		{"deny_all", DenyAllPolicy(), teeClaims("snp", "affirming"), resource("a", "b", "c"), []string{
			`resource-policy.rego:4: default allow = false and the policy has no other allow rule`}},
		{"affirming", AffirmingPolicy(), teeClaims("snp", "warning"), resource("a", "b", "c"), []string{
			`expression 'not any_not_affirming' was false (any_not_affirming is true)`}},
		{"policy 1 comparison values", []byte(policy1), sampleClaims("Bob", 1), resource("my_repo", "Alice", "key"), []string{
			`resource-policy.rego:8: rule "allow": expression 'input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["productId"] == data["resource-path"][1]' was false ("Bob" == "Alice")`}},
		{"policy 1 count", []byte(policy1), sampleClaims("Alice", 1), resource("Alice"), []string{
			`resource-policy.rego:6: rule "allow": expression 'count(data["resource-path"]) == 3' was false (1 == 3)`}},
		{"policy 5 undefined map entry", []byte(policy5), sampleClaims("n", 3), resource("myrepo", "secret", "secret3"), []string{
			`resource-policy.rego:15: rule "allow": expression 'resources[data["resource-path"][2]] <= `, `was undefined (resources.secret3 is undefined)`}},
		{"policy 5 svn", []byte(policy5), sampleClaims("n", 1), resource("myrepo", "secret", "secret2"), []string{`(3 <= 1)`}},
		{"undefined input", []byte(policy5), teeClaims("snp", "affirming"), resource("myrepo", "secret", "secret1"), []string{
			`expression 'input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]' was undefined`}},
		{"several rules, closest first", []byte(multi), teeClaims("snp", "warning"), resource("a", "b", "c"), []string{
			`default allow = false: no allow rule matched; closest: resource-policy.rego:3: rule "allow": expression 'input.submods.cpu0["ear.status"] == "affirming"' was false ("warning" == "affirming"); also resource-policy.rego:4: rule "allow": expression 'data.plugin == "kms"' was false ("resource" == "kms")`}},
		{"builtin call", []byte(multi), teeClaims("snp", "warning"), Data{Plugin: "kms", ResourcePath: []string{"abc"}}, []string{
			`closest: resource-policy.rego:4: rule "allow": expression 'startswith(data["resource-path"][0], "x")' was false (startswith("abc", "x"))`}},
		{"policy deny_reason", []byte(withReason), sampleClaims("n", 3), resource("a"), []string{
			`policy: svn 3 is below 5; default allow = false: resource-policy.rego:4: rule "allow"`, `(3 >= 5)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, tc.policy)
			d, err := e.Evaluate(context.Background(), tc.claims, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				t.Fatal("allowed")
			}
			for _, w := range tc.want {
				if !strings.Contains(d.Reason, w) {
					t.Errorf("reason %q\nlacks %q", d.Reason, w)
				}
			}
		})
	}
}

func TestRuleError(t *testing.T) {
	cases := []struct {
		name   string
		policy string
		want   string
	}{
		{"undefined allow", "package policy\nallow if { data.plugin == \"nope\" }\n", `data.policy.allow is undefined (no default) and resource-policy.rego:2: rule "allow": expression 'data.plugin == "nope"' was false`},
		{"string allow", "package policy\nallow := \"yes\"\n", `data.policy.allow evaluated to "yes", not a boolean`},
		{"no allow rule", "package policy\nx := 1\n", "the policy defines no rule data.policy.allow"},
		{"other package", "package kbs\ndefault allow := true\n", "the policy defines no rule data.policy.allow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEngine(t, []byte(tc.policy))
			d, err := e.Evaluate(context.Background(), teeClaims("snp", "affirming"), resource("a", "b", "c"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed || !d.RuleError {
				t.Fatalf("decision %+v, want a denied RuleError", d)
			}
			if !strings.Contains(d.Reason, tc.want) {
				t.Fatalf("reason %q lacks %q", d.Reason, tc.want)
			}
		})
	}
}

func TestSetPolicyValidation(t *testing.T) {
	cases := []struct {
		name   string
		policy []byte
		ok     bool
	}{
		{"rego v1", AffirmingPolicy(), true},
		{"rego v0 syntax", []byte("package policy\ndefault allow = false\nallow { input.x == 1 }\n"), true},
		{"syntax error", []byte("package policy\nallow if {"), false},
		{"unsafe var", []byte("package policy\nallow if { x == 1 }\n"), false},
		{"undefined function", []byte("package policy\nallow if { nope(1) }\n"), false},
		{"http.send is not available", []byte("package policy\nallow if { http.send({\"method\": \"get\", \"url\": \"http://169.254.169.254/\"}).status_code == 200 }\n"), false},
		{"opa.runtime is not available", []byte("package policy\nallow if { opa.runtime().env.HOME }\n"), false},
		{"not UTF-8", []byte("package policy\n# \xff\ndefault allow = false\n"), false},
		{"too large", []byte("package policy\n#" + strings.Repeat("x", limits.MaxPolicyBytes)), false},
		{"empty", []byte(""), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, st := newEngine(t, nil)
			err := e.SetPolicy(context.Background(), tc.policy)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("err = %v, want ErrInvalidPolicy", err)
			}
			got, _ := st.Get(context.Background(), storage.NamespaceKBS, PolicyKey)
			if string(got) != string(DefaultPolicy()) {
				t.Fatal("an invalid policy replaced the stored one")
			}
		})
	}
}

func TestReplicasShareTheStore(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	clock := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	a, err := New(ctx, st, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, st, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	claims := sampleClaims("x", 1)
	if d, _ := b.Evaluate(ctx, claims, resource("a", "b", "c")); d.Allowed {
		t.Fatal("default policy allowed sample")
	}
	if err := a.SetPolicy(ctx, AllowAllPolicy()); err != nil {
		t.Fatal(err)
	}
	if d, _ := a.Evaluate(ctx, claims, resource("a", "b", "c")); !d.Allowed {
		t.Fatal("SetPolicy not effective at once on its own replica")
	}
	gets := st.Gets()
	if d, _ := b.Evaluate(ctx, claims, resource("a", "b", "c")); d.Allowed {
		t.Fatal("replica b reloaded before the interval")
	}
	if st.Gets() != gets {
		t.Fatal("store read within the reload interval")
	}
	clock = clock.Add(DefaultReloadInterval)
	if d, _ := b.Evaluate(ctx, claims, resource("a", "b", "c")); !d.Allowed {
		t.Fatal("replica b did not pick up the new policy")
	}
	// Unchanged content: a check, no recompilation.
	before := b.cur.Load()
	clock = clock.Add(DefaultReloadInterval)
	b.Evaluate(ctx, claims, resource("a", "b", "c"))
	if b.cur.Load() != before {
		t.Fatal("unchanged policy recompiled")
	}
}

func TestStoredPolicyProblems(t *testing.T) {
	ctx := context.Background()
	st := storagetest.NewFaulty(memory.New())
	st.Set(ctx, storage.NamespaceKBS, PolicyKey, []byte("package policy\nallow if {"), true)
	clock := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	e, err := New(ctx, st, Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatalf("New must start with a broken stored policy: %v", err)
	}
	if _, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c")); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("err = %v, want ErrInvalidPolicy", err)
	}
	if err := e.SetPolicy(ctx, AllowAllPolicy()); err != nil {
		t.Fatal(err)
	}
	if d, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c")); err != nil || !d.Allowed {
		t.Fatalf("after repair: %+v %v", d, err)
	}
	// Store failures fail closed once the cache is due for a check.
	st.Fail(errors.New("backend down"))
	clock = clock.Add(time.Hour)
	if _, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c")); !errors.Is(err, ErrPolicyEngine) {
		t.Fatalf("err = %v, want ErrPolicyEngine", err)
	}
	// A policy replaced by a broken one elsewhere is not used any more.
	st.Fail(nil)
	st.Set(ctx, storage.NamespaceKBS, PolicyKey, []byte("garbage"), true)
	clock = clock.Add(time.Hour)
	if _, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c")); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("err = %v, want ErrInvalidPolicy", err)
	}
	// Deleted policy.
	st.Delete(ctx, storage.NamespaceKBS, PolicyKey)
	clock = clock.Add(time.Hour)
	if _, err := e.Evaluate(ctx, sampleClaims("x", 1), resource("a", "b", "c")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestListPolicies(t *testing.T) {
	ctx := context.Background()
	e, st := newEngine(t, nil)
	ids, err := e.ListPolicies(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "resource-policy" {
		t.Fatalf("ids = %v, %v", ids, err)
	}
	st.Set(ctx, storage.NamespaceKBS, "stray", []byte("x"), true)
	if _, err := e.ListPolicies(ctx); !errors.Is(err, ErrPolicyEngine) {
		t.Fatalf("key without suffix: %v", err)
	}
}

func TestClaimsBounds(t *testing.T) {
	e, _ := newEngine(t, AllowAllPolicy())
	deep := map[string]any{}
	cur := deep
	for range limits.MaxJSONDepth + 2 {
		next := map[string]any{}
		cur["a"] = next
		cur = next
	}
	if _, err := e.Evaluate(context.Background(), deep, resource("a", "b", "c")); !errors.Is(err, ErrPolicyEngine) {
		t.Fatalf("deep claims: %v", err)
	}
	if d, err := e.Evaluate(context.Background(), nil, resource("a", "b", "c")); err != nil || !d.Allowed {
		t.Fatalf("nil claims: %+v %v", d, err)
	}
}

func TestConcurrentEvaluateAndSet(t *testing.T) {
	e, _ := newEngine(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				claims := teeClaims("snp", "affirming")
				d, err := e.Evaluate(ctx, claims, resource("a", "b", fmt.Sprint(i, j)))
				if err != nil {
					t.Error(err)
					return
				}
				_ = d
			}
		}()
	}
	for j := range 20 {
		p := AllowAllPolicy()
		if j%2 == 0 {
			p = DenyAllPolicy()
		}
		if err := e.SetPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestDataValue(t *testing.T) {
	got := DataValue(Data{Plugin: "plugin1", ResourcePath: []string{"para", "meters"}, Query: map[string]string{"version": "1.0.0"}})
	want := ast.MustParseTerm(`{"plugin": "plugin1", "resource-path": ["para", "meters"], "query": {"version": "1.0.0"}}`).Value
	if got.Compare(want) != 0 {
		t.Fatalf("got %v", got)
	}
	empty := DataValue(Data{})
	if empty.Compare(ast.MustParseTerm(`{"plugin": "", "resource-path": [], "query": {}}`).Value) != 0 {
		t.Fatalf("empty: %v", empty)
	}
}

func FuzzDataValue(f *testing.F) {
	f.Add("resource", "repo/type/tag", "version", "1.0.0")
	f.Add("", "", "", "")
	f.Add("p\x00", "a/../\xff", "k\"", "v\\")
	e, _ := newEngine(f, []byte(`package policy
import rego.v1
default allow := false
allow if {
	data.plugin == "resource"
	count(data["resource-path"]) == 3
	every s in data["resource-path"] { regex.match("^[a-z]+$", s) }
}
`))
	f.Fuzz(func(t *testing.T, plugin, path, qk, qv string) {
		d := Data{Plugin: plugin, ResourcePath: strings.Split(path, "/"), Query: map[string]string{qk: qv}}
		v, err := ast.JSON(DataValue(d))
		if err != nil {
			t.Fatal(err)
		}
		m := v.(map[string]any)
		if m["plugin"] != plugin || len(m["resource-path"].([]any)) != len(d.ResourcePath) || m["query"].(map[string]any)[qk] != qv {
			t.Fatalf("data changed: %v", m)
		}
		dec, err := e.Evaluate(context.Background(), teeClaims("snp", "affirming"), d)
		if err != nil {
			t.Fatal(err)
		}
		want := plugin == "resource" && len(d.ResourcePath) == 3
		for _, s := range d.ResourcePath {
			want = want && s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz") == ""
		}
		if dec.Allowed != want {
			t.Fatalf("allowed = %v for %+v (%s)", dec.Allowed, d, dec.Reason)
		}
		if !dec.Allowed && dec.Reason == "" {
			t.Fatal("deny without reason")
		}
	})
}

func benchClaims() map[string]any {
	c := teeClaims("snp", "affirming")
	c["eat_profile"] = "tag:github.com,2024:confidential-containers/Trustee"
	c["iss"] = "CoCo-Attestation-Service"
	cpu := c["submods"].(map[string]any)["cpu0"].(map[string]any)
	cpu["ear.trustworthiness-vector"] = map[string]any{"instance-identity": json.Number("0"), "configuration": json.Number("36"),
		"executables": json.Number("33"), "file-system": json.Number("0"), "hardware": json.Number("97")}
	return c
}

func BenchmarkResourcePolicyAllow(b *testing.B) {
	e, _ := newEngine(b, nil)
	ctx, claims, data := context.Background(), benchClaims(), resource("default", "key", "one")
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Evaluate(ctx, claims, data)
		if err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
	}
}

func BenchmarkResourcePolicyDeny(b *testing.B) {
	e, _ := newEngine(b, nil)
	ctx, claims, data := context.Background(), sampleClaims("x", 1), resource("default", "key", "one")
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Evaluate(ctx, claims, data)
		if err != nil || d.Allowed || d.Reason == "" {
			b.Fatal(d, err)
		}
	}
}
