package k8ssecrets

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/go-trustee/go-trustee/internal/testwait"
	"github.com/go-trustee/go-trustee/kbs/k8ssecrets/k8stest"
)

// recorder collects log records; when watch is set, fired is closed on
// the first record containing it.
type recorder struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	watch string
	fired chan struct{}
	once  sync.Once
}

func newRecorder(watch string) *recorder { return &recorder{watch: watch, fired: make(chan struct{})} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watch != "" && bytes.Contains(p, []byte(r.watch)) {
		r.once.Do(func() { close(r.fired) })
	}
	return r.buf.Write(p)
}

func (r *recorder) String() string { r.mu.Lock(); defer r.mu.Unlock(); return r.buf.String() }

func (r *recorder) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// deadlineOnRecord is an Options.After whose deadline passes when the
// recorder has seen its record: a sync that is bound to fail fails as soon
// as its cause is known, not when a timer says so.
func (r *recorder) deadlineOnRecord(time.Duration) <-chan time.Time {
	c := make(chan time.Time)
	go func() {
		select {
		case <-r.fired:
		case <-time.After(testwait.Timeout):
		}
		close(c)
	}()
	return c
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"defaults", Config{}, ""},
		{"namespace and kubeconfig", Config{Namespace: "trustee", Kubeconfig: "/nonexistent/kubeconfig"}, ""},
		{"selector", Config{LabelSelector: "team=a,kbs in (yes)"}, ""},
		{"exists selector", Config{LabelSelector: "kbs-resource"}, ""},
		{"names", Config{SecretNames: []string{"llm", "attestation-status", "a.b"}}, ""},
		{"timeout", Config{SyncTimeout: MaxSyncTimeout}, ""},
		{"kubeconfig without namespace", Config{Kubeconfig: "/k"}, "kubernetes_namespace is required with kubeconfig"},
		{"bad namespace", Config{Namespace: "Trustee"}, "kubernetes_namespace \"Trustee\" is not a namespace name"},
		{"both", Config{LabelSelector: "a=b", SecretNames: []string{"x"}}, "label_selector and secret_names exclude each other"},
		{"bad name", Config{SecretNames: []string{"UPPER"}}, "secret_names entry \"UPPER\" is not a Secret name"},
		{"empty name", Config{SecretNames: []string{""}}, "is not a Secret name"},
		{"duplicate", Config{SecretNames: []string{"a", "a"}}, "secret_names lists \"a\" twice"},
		{"too many", Config{SecretNames: manyNames(MaxSecretNames + 1)}, "more than 256"},
		{"syntax", Config{LabelSelector: "a=(b"}, "label_selector \"a=(b\""},
		{"exclusions only", Config{LabelSelector: "a!=b,!c"}, "requires no label"},
		{"notin only", Config{LabelSelector: "a notin (b)"}, "requires no label"},
		{"negative timeout", Config{SyncTimeout: -time.Second}, "sync timeout"},
		{"huge timeout", Config{SyncTimeout: MaxSyncTimeout + time.Second}, "sync timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Validate = %v, want ErrInvalidConfig with %q on one line", err, tc.want)
			}
		})
	}
}

func manyNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, "s"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	return out
}

func TestPodNamespace(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ns")
	os.WriteFile(good, []byte("trustee-operator-system\n"), 0o600)
	if ns, err := podNamespace(good); err != nil || ns != "trustee-operator-system" {
		t.Fatalf("podNamespace = %q, %v", ns, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("../etc"), 0o600)
	for _, p := range []string{bad, filepath.Join(dir, "missing")} {
		if _, err := podNamespace(p); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "kubernetes_namespace is not set") {
			t.Fatalf("podNamespace(%s) = %v", p, err)
		}
	}
}

// TestNewOutsideAPod: without kubeconfig the in-cluster configuration is
// used; outside a pod New says so.
func TestNewOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := New(context.Background(), Config{Namespace: "trustee"}, Options{Logger: newRecorder("").logger()})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "in-cluster configuration is unavailable") {
		t.Fatalf("New = %v", err)
	}
	_, err = New(context.Background(), Config{Namespace: "trustee", Kubeconfig: filepath.Join(t.TempDir(), "missing")}, Options{})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "kubeconfig") {
		t.Fatalf("New with a missing kubeconfig = %v", err)
	}
}

// TestUnreachable: an apiserver that refuses connections fails New at its
// deadline, naming the cause; a cancelled context ends the wait too.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rc := &rest.Config{Host: "https://" + addr}
	// The deadline passes once the failed list is logged: the cause is
	// then known, however long client-go takes to give up on the address.
	rec := newRecorder("listing or watching Secrets failed")
	_, err = New(context.Background(), Config{Namespace: "trustee", SyncTimeout: time.Second}, Options{RESTConfig: rc, Logger: rec.logger(), After: rec.deadlineOnRecord})
	if !errors.Is(err, ErrSync) || !strings.Contains(err.Error(), "not complete within 1s") || !strings.Contains(err.Error(), "unreachable") ||
		!strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("New = %v\n%s", err, rec)
	}

	ctx, cancel := context.WithCancel(context.Background())
	never := func(time.Duration) <-chan time.Time { return nil }
	go func() {
		testwait.Until(t, "a failed list", func() bool { return strings.Contains(rec.String(), "listing or watching Secrets failed") })
		cancel()
	}()
	_, err = New(ctx, Config{Namespace: "trustee"}, Options{RESTConfig: rc, Logger: rec.logger(), After: never})
	if !errors.Is(err, ErrSync) || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("New with a cancelled context = %v", err)
	}
}

// kube drives Secrets of one namespace of the shared cluster.
type kube struct {
	t  *testing.T
	c  *k8stest.Cluster
	ns string
}

func (k *kube) secret(name string, lbl bool, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.ns}, Data: map[string][]byte{}}
	if lbl {
		s.Labels = map[string]string{"kbs.confidentialcontainers.org/resource": "true"}
	}
	for key, v := range data {
		s.Data[key] = []byte(v)
	}
	return s
}

func (k *kube) create(s *corev1.Secret) *corev1.Secret {
	k.t.Helper()
	s.Namespace = k.ns
	out, err := k.c.Client.CoreV1().Secrets(k.ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("creating Secret %s: %v", s.Name, err)
	}
	return out
}

// update changes the Secret name with mod and returns the stored one.
func (k *kube) update(name string, mod func(*corev1.Secret)) *corev1.Secret {
	k.t.Helper()
	ctx := context.Background()
	s, err := k.c.Client.CoreV1().Secrets(k.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	mod(s)
	out, err := k.c.Client.CoreV1().Secrets(k.ns).Update(ctx, s, metav1.UpdateOptions{})
	if err != nil {
		k.t.Fatalf("updating Secret %s: %v", name, err)
	}
	return out
}

func (k *kube) delete(name string) {
	k.t.Helper()
	if err := k.c.Client.CoreV1().Secrets(k.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kube) backend(cfg Config, opts Options) (*Backend, *recorder) {
	k.t.Helper()
	rec := newRecorder("")
	if opts.Logger == nil {
		opts.Logger = rec.logger()
	}
	if opts.RESTConfig == nil && cfg.Kubeconfig == "" {
		opts.RESTConfig = k.c.Admin
	}
	if cfg.Namespace == "" && opts.namespaceFile == "" {
		cfg.Namespace = k.ns
	}
	b, err := New(context.Background(), cfg, opts)
	if err != nil {
		k.t.Fatalf("New: %v", err)
	}
	k.t.Cleanup(func() { b.Close() })
	if !b.Synced() {
		k.t.Fatal("New returned before the cache synced")
	}
	return b, rec
}

func get(t *testing.T, b *Backend, key string) (string, error) {
	t.Helper()
	v, err := b.Get(context.Background(), key)
	return string(v), err
}

func waitValue(t *testing.T, b *Backend, key, want string) {
	t.Helper()
	testwait.Until(t, key+" served with its new value", func() bool {
		v, err := get(t, b, key)
		return err == nil && v == want
	})
}

func waitGone(t *testing.T, b *Backend, key string) {
	t.Helper()
	testwait.Until(t, key+" no longer served", func() bool {
		_, err := get(t, b, key)
		return errors.Is(err, ErrNotFound)
	})
}

// waitSeen waits until the cache holds Secret s at its version: every
// event the watch delivered before it has then been applied.
func waitSeen(t *testing.T, b *Backend, s *corev1.Secret) {
	t.Helper()
	testwait.Until(t, "Secret "+s.Name+" at resourceVersion "+s.ResourceVersion, func() bool {
		rv, ok := b.ResourceVersion(s.Name)
		return ok && rv == s.ResourceVersion
	})
}

func wantKeys(t *testing.T, b *Backend, want ...string) {
	t.Helper()
	if got := b.Keys(); !slices.Equal(got, want) {
		t.Fatalf("served %q, want %q", got, want)
	}
}

// TestAgainstAPIServer runs the backend on a real kube-apiserver and etcd
// (RBAC on), one namespace per case.
func TestAgainstAPIServer(t *testing.T) {
	c := k8stest.Start(t)
	newKube := func(t *testing.T, ns string) *kube {
		c.Namespace(t, ns)
		return &kube{t: t, c: c, ns: ns}
	}

	t.Run("initial sync and changes", func(t *testing.T) {
		k := newKube(t, "sync")
		k.create(k.secret("llm", true, map[string]string{"decryption-key": "key-v1", "other": "x"}))
		b, rec := k.backend(Config{}, Options{})
		wantKeys(t, b, "default/llm/decryption-key", "default/llm/other")
		if v, err := get(t, b, "default/llm/decryption-key"); err != nil || v != "key-v1" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		// The caller's copy.
		v, _ := b.Get(context.Background(), "default/llm/decryption-key")
		clear(v)
		if v, _ := get(t, b, "default/llm/decryption-key"); v != "key-v1" {
			t.Fatalf("the cache changed with the returned slice: %q", v)
		}
		for _, key := range []string{"team/llm/decryption-key", "default/llm/missing", "default/nope/x", "default/llm", "a/b/c/d"} {
			if _, err := get(t, b, key); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get %s = %v, want ErrNotFound", key, err)
			}
		}

		k.create(k.secret("added", true, map[string]string{"k": "added-v1"}))
		waitValue(t, b, "default/added/k", "added-v1")
		k.update("llm", func(s *corev1.Secret) { s.Data["decryption-key"] = []byte("key-v2") })
		waitValue(t, b, "default/llm/decryption-key", "key-v2")
		k.update("llm", func(s *corev1.Secret) { delete(s.Data, "other") })
		waitGone(t, b, "default/llm/other")
		k.delete("added")
		waitGone(t, b, "default/added/k")
		wantKeys(t, b, "default/llm/decryption-key")
		for _, secret := range []string{"key-v1", "key-v2", "added-v1"} {
			if strings.Contains(rec.String(), secret) {
				t.Fatalf("a value is in the logs:\n%s", rec)
			}
		}
	})

	t.Run("label selector", func(t *testing.T) {
		k := newKube(t, "labels")
		k.create(k.secret("plain", false, map[string]string{"k": "plain"}))
		off := k.secret("off", false, map[string]string{"k": "off"})
		off.Labels = map[string]string{"kbs.confidentialcontainers.org/resource": "false"}
		k.create(off)
		k.create(k.secret("on", true, map[string]string{"k": "on"}))
		b, _ := k.backend(Config{}, Options{})
		wantKeys(t, b, "default/on/k")

		k.update("plain", func(s *corev1.Secret) {
			s.Labels = map[string]string{"kbs.confidentialcontainers.org/resource": "true"}
		})
		waitValue(t, b, "default/plain/k", "plain")
		k.update("on", func(s *corev1.Secret) { s.Labels = nil })
		waitGone(t, b, "default/on/k")
		marker := k.create(k.secret("marker", true, map[string]string{"k": "m"}))
		waitSeen(t, b, marker)
		wantKeys(t, b, "default/marker/k", "default/plain/k")

		// A selector of our own.
		team := k.secret("team", false, map[string]string{"k": "team"})
		team.Labels = map[string]string{"team": "a", "kbs": "yes"}
		k.create(team)
		b2, _ := k.backend(Config{LabelSelector: "team=a,kbs in (yes,true)"}, Options{})
		wantKeys(t, b2, "default/team/k")
	})

	t.Run("secret names", func(t *testing.T) {
		k := newKube(t, "names")
		k.create(k.secret("a", false, map[string]string{"k": "a"}))
		k.create(k.secret("c", true, map[string]string{"k": "c"}))
		b, _ := k.backend(Config{SecretNames: []string{"a", "b"}}, Options{})
		wantKeys(t, b, "default/a/k")
		bs := k.create(k.secret("b", false, map[string]string{"k": "b"}))
		waitSeen(t, b, bs)
		// c is labelled, not named: no watch sees it.
		wantKeys(t, b, "default/a/k", "default/b/k")
		k.delete("a")
		waitGone(t, b, "default/a/k")
		wantKeys(t, b, "default/b/k")
	})

	t.Run("other namespace", func(t *testing.T) {
		k := newKube(t, "ns-one")
		other := newKube(t, "ns-two")
		other.create(other.secret("same", true, map[string]string{"k": "from-ns-two"}))
		b, rec := k.backend(Config{}, Options{})
		if !strings.Contains(rec.String(), "no Secret is served yet") {
			t.Fatalf("an empty namespace is not reported:\n%s", rec)
		}
		other.update("same", func(s *corev1.Secret) { s.Data["k"] = []byte("from-ns-two-v2") })
		marker := k.create(k.secret("marker", true, map[string]string{"k": "m"}))
		waitSeen(t, b, marker)
		wantKeys(t, b, "default/marker/k")
		k.create(k.secret("same", true, map[string]string{"k": "from-ns-one"}))
		waitValue(t, b, "default/same/k", "from-ns-one")
	})

	t.Run("keys, values and types checked", func(t *testing.T) {
		k := newKube(t, "checked")
		k.create(k.secret("mixed", true, map[string]string{"ok": "small-value", ".dockerconfigjson": "{}", "big": "0123456789abcdef-too-big"}))
		team := k.secret("team", true, map[string]string{"k": "team-value"})
		team.Annotations = map[string]string{RepositoryAnnotation: "team-a"}
		k.create(team)
		bad := k.secret("badrepo", true, map[string]string{"k": "bad-repo-value"})
		bad.Annotations = map[string]string{RepositoryAnnotation: "../etc"}
		k.create(bad)
		tls := k.secret("tls", true, nil)
		tls.Type = corev1.SecretTypeTLS
		tls.Data = nil
		tls.StringData = map[string]string{"tls.crt": "CERT", "tls.key": "KEY"}
		k.create(tls)
		basic := k.secret("basic", true, nil)
		basic.Type = corev1.SecretTypeBasicAuth
		basic.Data = map[string][]byte{"username": []byte("u"), "password": []byte("p")}
		k.create(basic)

		b, rec := k.backend(Config{}, Options{MaxValueSize: 16})
		wantKeys(t, b, "default/basic/password", "default/basic/username", "default/mixed/ok", "default/tls/tls.crt", "default/tls/tls.key", "team-a/team/k")
		if v, err := get(t, b, "team-a/team/k"); err != nil || v != "team-value" {
			t.Fatalf("Get team-a/team/k = %q, %v", v, err)
		}
		if v, err := get(t, b, "default/tls/tls.key"); err != nil || v != "KEY" {
			t.Fatalf("Get default/tls/tls.key = %q, %v", v, err)
		}
		for _, key := range []string{"default/team/k", "default/mixed/big", "default/mixed/.dockerconfigjson", "default/badrepo/k"} {
			if _, err := get(t, b, key); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get %s = %v", key, err)
			}
		}
		logs := rec.String()
		for _, want := range []string{`"key":".dockerconfigjson"`, `"key":"big","bytes":24,"limit":16`, `"secret":"badrepo"`} {
			if !strings.Contains(logs, want) {
				t.Fatalf("no warning with %s:\n%s", want, logs)
			}
		}
		for _, v := range []string{"small-value", "0123456789abcdef", "team-value", "bad-repo-value"} {
			if strings.Contains(logs, v) {
				t.Fatalf("value %q is in the logs", v)
			}
		}
		// Growing over the bound stops serving the key.
		k.update("mixed", func(s *corev1.Secret) { s.Data["ok"] = []byte("now-it-is-too-long") })
		waitGone(t, b, "default/mixed/ok")
	})

	t.Run("RBAC", func(t *testing.T) {
		k := newKube(t, "rbac")
		k.create(k.secret("s", true, map[string]string{"k": "rbac-v1"}))
		k.create(k.secret("t", true, map[string]string{"k": "t"}))

		refused := func(rc *rest.Config, cfg Config) error {
			rec := newRecorder("forbidden (HTTP 403)")
			cfg.Namespace = k.ns
			b, err := New(context.Background(), cfg, Options{RESTConfig: rc, Logger: rec.logger(), After: rec.deadlineOnRecord})
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrSync) || !strings.Contains(err.Error(), "forbidden (HTTP 403)") ||
				!strings.Contains(err.Error(), `grant list and watch on secrets in namespace "rbac"`) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New = %v", err)
			}
			return err
		}
		err := refused(c.User(t, "nobody"), Config{})
		if !strings.Contains(err.Error(), `User "nobody"`) {
			t.Fatalf("the error does not name the identity: %v", err)
		}

		// list and watch in the namespace are enough.
		c.GrantSecrets(t, k.ns, "reader", []string{"list", "watch"}, nil)
		b, _ := k.backend(Config{}, Options{RESTConfig: c.User(t, "reader")})
		wantKeys(t, b, "default/s/k", "default/t/k")
		k.update("s", func(s *corev1.Secret) { s.Data["k"] = []byte("rbac-v2") })
		waitValue(t, b, "default/s/k", "rbac-v2")

		// secret_names works with a Role naming the Secrets; a name the
		// Role does not cover, or a label selector, is refused.
		c.GrantSecrets(t, k.ns, "named", []string{"list", "watch"}, []string{"s"})
		named := c.User(t, "named")
		bn, _ := k.backend(Config{SecretNames: []string{"s"}}, Options{RESTConfig: named})
		wantKeys(t, bn, "default/s/k")
		refused(named, Config{SecretNames: []string{"s", "t"}})
		refused(named, Config{})
	})

	t.Run("kubeconfig and pod namespace", func(t *testing.T) {
		k := newKube(t, "kubeconfig")
		k.create(k.secret("s", true, map[string]string{"k": "kc"}))
		kc := c.Kubeconfig(t, "kc-user")
		c.GrantSecrets(t, k.ns, "kc-user", []string{"list", "watch"}, nil)
		b, _ := k.backend(Config{Kubeconfig: kc}, Options{})
		wantKeys(t, b, "default/s/k")

		nsFile := filepath.Join(t.TempDir(), "namespace")
		os.WriteFile(nsFile, []byte(k.ns+"\n"), 0o600)
		b2, _ := k.backend(Config{}, Options{namespaceFile: nsFile})
		if b2.namespace != k.ns {
			t.Fatalf("namespace %q", b2.namespace)
		}
		wantKeys(t, b2, "default/s/k")
	})

	t.Run("namespace does not exist", func(t *testing.T) {
		_, err := New(context.Background(), Config{Namespace: "does-not-exist"}, Options{RESTConfig: c.Admin, Logger: newRecorder("").logger()})
		if !errors.Is(err, ErrSync) || !strings.Contains(err.Error(), `kubernetes_namespace "does-not-exist" does not exist`) {
			t.Fatalf("New = %v", err)
		}
	})

	t.Run("read-only and close", func(t *testing.T) {
		k := newKube(t, "readonly")
		k.create(k.secret("s", true, map[string]string{"k": "v"}))
		b, _ := k.backend(Config{}, Options{})
		if err := b.Set(context.Background(), "default/s/k", []byte("x")); !errors.Is(err, ErrReadOnly) ||
			err.Error() != "the kubernetes resource backend is read-only: write the Secret instead" {
			t.Fatalf("Set = %v", err)
		}
		if err := b.Delete(context.Background(), "default/s/k"); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("Delete = %v", err)
		}
		if v, _ := get(t, b, "default/s/k"); v != "v" {
			t.Fatalf("the refused writes changed the value: %q", v)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, b, "default/s/k"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Get after Close = %v", err)
		}
	})
}
