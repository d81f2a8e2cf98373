package k8ssecrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/go-trustee/go-trustee/storage"
)

// Defaults and bounds of the configuration.
const (
	// DefaultLabelSelector selects the Secrets served when secret_names is
	// not set.
	DefaultLabelSelector = "kbs.confidentialcontainers.org/resource=true"
	// RepositoryAnnotation, on a served Secret, names the repository
	// segment of its resources instead of DefaultRepository.
	RepositoryAnnotation = "kbs.confidentialcontainers.org/repository"
	// DefaultRepository is the repository segment of a Secret without
	// RepositoryAnnotation, as the secret-converter init container's.
	DefaultRepository = "default"
	// DefaultSyncTimeout is how long New waits for the initial sync.
	DefaultSyncTimeout = 30 * time.Second
	// MaxSyncTimeout bounds Config.SyncTimeout.
	MaxSyncTimeout = 5 * time.Minute
	// MaxSecretNames bounds secret_names (one watch each).
	MaxSecretNames = 256
	// ServiceAccountNamespaceFile is where a pod reads its namespace.
	ServiceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
	// probeTimeout bounds the namespace lookup made when nothing matched.
	probeTimeout = 5 * time.Second
)

// The error classes (errors.Is).
var (
	// ErrInvalidConfig wraps every configuration error.
	ErrInvalidConfig = errors.New("k8ssecrets: invalid configuration")
	// ErrSync: New could not complete the initial sync (RBAC, an
	// unreachable apiserver, a namespace that does not exist, the deadline).
	ErrSync = errors.New("k8ssecrets: initial sync of Secrets failed")
	// ErrNotFound: no served resource at the key.
	ErrNotFound = errors.New("k8ssecrets: resource not found")
	// ErrReadOnly: Set and Delete. The admin API cannot write Secrets.
	ErrReadOnly = errors.New("the kubernetes resource backend is read-only: write the Secret instead")
	// ErrClosed: the Backend is closed.
	ErrClosed = errors.New("k8ssecrets: backend closed")
)

// Config is the Kubernetes part of a [[plugins]] resource entry. See the
// package documentation for the meaning of each field.
type Config struct {
	// Namespace is the namespace whose Secrets are served (key
	// kubernetes_namespace); empty: the pod's own namespace.
	Namespace string
	// Kubeconfig is a kubeconfig file (its current context); empty: the
	// in-cluster configuration of the pod's service account.
	Kubeconfig string
	// LabelSelector selects the served Secrets (empty: DefaultLabelSelector
	// unless SecretNames is set).
	LabelSelector string
	// SecretNames, when set, are the only Secrets served, whatever their
	// labels.
	SecretNames []string
	// SyncTimeout bounds the initial sync in New (0: DefaultSyncTimeout).
	SyncTimeout time.Duration
}

// settings is a validated Config.
type settings struct {
	namespace   string // "" until New reads the pod's namespace
	kubeconfig  string
	selector    labels.Selector // nil in secret_names mode
	names       []string
	syncTimeout time.Duration
}

// Validate checks the configuration without reading a file or connecting:
// what the operator can check before a KBS pod exists.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func (c Config) settings() (*settings, error) {
	s := &settings{namespace: c.Namespace, kubeconfig: c.Kubeconfig, syncTimeout: c.SyncTimeout}
	if c.Namespace != "" {
		if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
			return nil, fmt.Errorf("%w: kubernetes_namespace %q is not a namespace name: %s", ErrInvalidConfig, c.Namespace, errs[0])
		}
	} else if c.Kubeconfig != "" {
		return nil, fmt.Errorf("%w: kubernetes_namespace is required with kubeconfig (only a pod has a namespace of its own)", ErrInvalidConfig)
	}
	if c.LabelSelector != "" && len(c.SecretNames) > 0 {
		return nil, fmt.Errorf("%w: label_selector and secret_names exclude each other: secret_names serves exactly the named Secrets whatever their labels, "+
			"label_selector every Secret with the labels; set one of them", ErrInvalidConfig)
	}
	if len(c.SecretNames) > 0 {
		if len(c.SecretNames) > MaxSecretNames {
			return nil, fmt.Errorf("%w: secret_names lists %d Secrets, more than %d: label them and use label_selector", ErrInvalidConfig, len(c.SecretNames), MaxSecretNames)
		}
		seen := map[string]bool{}
		for _, n := range c.SecretNames {
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				return nil, fmt.Errorf("%w: secret_names entry %q is not a Secret name: %s", ErrInvalidConfig, n, errs[0])
			}
			if seen[n] {
				return nil, fmt.Errorf("%w: secret_names lists %q twice", ErrInvalidConfig, n)
			}
			seen[n] = true
		}
		s.names = slices.Clone(c.SecretNames)
	} else {
		sel, err := parseSelector(c.LabelSelector)
		if err != nil {
			return nil, err
		}
		s.selector = sel
	}
	switch {
	case s.syncTimeout == 0:
		s.syncTimeout = DefaultSyncTimeout
	case s.syncTimeout < 0 || s.syncTimeout > MaxSyncTimeout:
		return nil, fmt.Errorf("%w: the sync timeout must be positive and at most %s", ErrInvalidConfig, MaxSyncTimeout)
	}
	return s, nil
}

// parseSelector parses label_selector (empty: DefaultLabelSelector) and
// refuses one that requires no label: a selector made only of exclusions
// (key!=value, !key, notin) matches nearly every Secret of the namespace,
// service account tokens included.
func parseSelector(s string) (labels.Selector, error) {
	if s == "" {
		s = DefaultLabelSelector
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: label_selector %q: %v", ErrInvalidConfig, s, err)
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In, selection.Exists:
			return sel, nil
		}
	}
	return nil, fmt.Errorf("%w: label_selector %q requires no label (key=value, key in (...) or key): it would serve nearly every Secret of the namespace", ErrInvalidConfig, s)
}

// Options carries what a Backend takes from its environment.
type Options struct {
	// Logger receives the start-up record, the served and skipped Secrets
	// (names and sizes, never values) and watch errors. Nil: slog.Default().
	Logger *slog.Logger
	// RESTConfig, when set, is used instead of Config.Kubeconfig and the
	// in-cluster configuration (tests, embedding).
	RESTConfig *rest.Config
	// MaxValueSize bounds a served value (0: storage.MaxValueSize). A test
	// lowers it: the apiserver refuses Secrets over 1 MiB anyway.
	MaxValueSize int
	// After starts the initial sync deadline (nil: a real timer).
	After func(time.Duration) <-chan time.Time

	// namespaceFile replaces ServiceAccountNamespaceFile (package tests).
	namespaceFile string
}

// entry is what the informer cache keeps of a Secret: its identity and
// the values that can be served, already checked. The Secret itself
// (labels, managedFields, the skipped keys) is dropped as it arrives.
type entry struct {
	metav1.ObjectMeta
	secretType corev1.SecretType
	repository string
	data       map[string][]byte
}

// Backend serves resources from the Secrets of one namespace, kept by
// informers (one per secret_names entry, or one for the label selector).
// It is safe for concurrent use.
type Backend struct {
	namespace string
	selector  labels.Selector // nil in secret_names mode
	names     map[string]bool // secret_names mode
	// informers maps a Secret name to its informer (secret_names mode) or
	// "" to the one informer of the selector.
	informers map[string]cache.SharedIndexInformer
	log       *slog.Logger
	maxValue  int
	host      string

	cancel    context.CancelFunc
	running   sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once

	errMu   sync.Mutex
	lastErr error // the last list/watch error
}

var segmentRE = regexp.MustCompile(`^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*$`)

// New builds a Backend and waits, at most the sync timeout or until ctx
// ends, until every informer has listed its Secrets; it fails with an
// error wrapping ErrSync (or ErrInvalidConfig) and stops what it started.
func New(ctx context.Context, cfg Config, opts Options) (*Backend, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	rc, err := restConfig(s, opts)
	if err != nil {
		return nil, err
	}
	if s.namespace == "" {
		if s.namespace, err = podNamespace(opts.namespaceFile); err != nil {
			return nil, err
		}
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: Kubernetes client: %v", ErrInvalidConfig, err)
	}
	b := &Backend{namespace: s.namespace, selector: s.selector, names: map[string]bool{}, informers: map[string]cache.SharedIndexInformer{},
		log: log, maxValue: opts.MaxValueSize, host: rc.Host}
	if b.maxValue <= 0 {
		b.maxValue = storage.MaxValueSize
	}
	if s.selector != nil {
		sel := s.selector.String()
		b.informers[""] = b.newInformer(cs, func(o *metav1.ListOptions) { o.LabelSelector = sel })
	}
	for _, n := range s.names {
		b.names[n] = true
		fs := fields.OneTermEqualSelector("metadata.name", n).String()
		b.informers[n] = b.newInformer(cs, func(o *metav1.ListOptions) { o.FieldSelector = fs })
	}
	if err := b.probe(ctx, cs, s); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	for _, inf := range b.informers {
		b.running.Go(func() { inf.RunWithContext(runCtx) })
	}
	if err := b.waitSynced(ctx, s.syncTimeout, opts.After); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.checkNotEmpty(ctx, cs); err != nil {
		b.Close()
		return nil, err
	}
	what := []any{"namespace", b.namespace, "apiserver", b.host}
	if s.selector != nil {
		what = append(what, "label_selector", s.selector.String())
	} else {
		what = append(what, "secret_names", s.names)
	}
	b.log.Info("Kubernetes resource backend synced", append(what, "secrets", b.secretCount(), "resources", len(b.Keys()))...)
	return b, nil
}

// restConfig is the apiserver connection: Options.RESTConfig, the
// kubeconfig file or the pod's service account.
func restConfig(s *settings, opts Options) (*rest.Config, error) {
	var rc *rest.Config
	switch {
	case opts.RESTConfig != nil:
		rc = rest.CopyConfig(opts.RESTConfig)
	case s.kubeconfig != "":
		lr := &clientcmd.ClientConfigLoadingRules{ExplicitPath: s.kubeconfig}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(lr, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("%w: kubeconfig %s: %v", ErrInvalidConfig, s.kubeconfig, oneLine(err))
		}
		rc = c
	default:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("%w: no kubeconfig is set and the in-cluster configuration is unavailable (%v): run the KBS in a pod with a service account, or set kubeconfig",
				ErrInvalidConfig, oneLine(err))
		}
		rc = c
	}
	rc.UserAgent = "go-trustee-kbs/k8ssecrets"
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return rc, nil
}

// podNamespace reads the pod's namespace from the service account volume.
func podNamespace(path string) (string, error) {
	if path == "" {
		path = ServiceAccountNamespaceFile
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: kubernetes_namespace is not set and the pod's namespace cannot be read: %v", ErrInvalidConfig, err)
	}
	ns := strings.TrimSpace(string(b))
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", fmt.Errorf("%w: kubernetes_namespace is not set and %s does not hold a namespace name", ErrInvalidConfig, path)
	}
	return ns, nil
}

func (b *Backend) newInformer(cs kubernetes.Interface, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	inf := coreinformers.NewFilteredSecretInformer(cs, b.namespace, 0, cache.Indexers{}, tweak)
	// Neither fails before the informer runs.
	_ = inf.SetTransform(b.transform)
	_ = inf.SetWatchErrorHandlerWithContext(b.watchError)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if e, ok := obj.(*entry); ok {
				b.log.Info("serving Secret", "secret", e.Name, "type", string(e.secretType), "repository", e.repository,
					"resources", len(e.data), "resource_version", e.ResourceVersion, "initial_list", initial)
			}
		},
		UpdateFunc: func(_, obj any) {
			if e, ok := obj.(*entry); ok {
				b.log.Info("Secret changed", "secret", e.Name, "repository", e.repository, "resources", len(e.data), "resource_version", e.ResourceVersion)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if e, ok := obj.(*entry); ok {
				b.log.Info("Secret no longer served (deleted or no longer selected)", "secret", e.Name)
			}
		},
	})
	return inf
}

// transform turns a Secret into an entry as it enters the cache, keeping
// only the values that can be served. It is idempotent, as client-go
// requires, and never panics.
func (b *Backend) transform(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil // an entry already, or a tombstone
	}
	e := &entry{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion, UID: s.UID},
		secretType: s.Type, repository: DefaultRepository, data: map[string][]byte{},
	}
	// The apiserver filters already; checked again so that no Secret of
	// another namespace, or not selected, is ever served.
	if s.Namespace != b.namespace {
		b.log.Error("Secret of another namespace received: not served", "secret", s.Name, "namespace", s.Namespace, "want", b.namespace)
		return e, nil
	}
	if b.selector != nil && !b.selector.Matches(labels.Set(s.Labels)) {
		b.log.Error("Secret not matching label_selector received: not served", "secret", s.Name)
		return e, nil
	}
	if b.selector == nil && !b.names[s.Name] {
		b.log.Error("Secret not listed in secret_names received: not served", "secret", s.Name)
		return e, nil
	}
	if repo, ok := s.Annotations[RepositoryAnnotation]; ok {
		if !segmentRE.MatchString(repo) {
			b.log.Warn("Secret not served: annotation "+RepositoryAnnotation+" must match [A-Za-z0-9_-][A-Za-z0-9_.-]*", "secret", s.Name)
			return e, nil
		}
		e.repository = repo
	}
	for k, v := range s.Data {
		key := e.repository + "/" + s.Name + "/" + k
		if err := storage.ValidateKey(storage.NamespaceRepository, key); err != nil || !segmentRE.MatchString(k) {
			b.log.Warn("Secret key not served: a KBS resource tag must match [A-Za-z0-9_-][A-Za-z0-9_.-]*", "secret", s.Name, "key", k)
			continue
		}
		if len(v) > b.maxValue {
			b.log.Warn("Secret key not served: value too large", "secret", s.Name, "key", k, "bytes", len(v), "limit", b.maxValue)
			continue
		}
		e.data[k] = v
	}
	return e, nil
}

func (b *Backend) watchError(_ context.Context, _ *cache.Reflector, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	b.errMu.Lock()
	b.lastErr = err
	b.errMu.Unlock()
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		b.log.Debug("Secret watch expired; relisting", "namespace", b.namespace)
		return
	}
	b.log.Warn("listing or watching Secrets failed; retrying (the last synced Secrets are served meanwhile)",
		"namespace", b.namespace, "error", b.describe(err))
}

// describe is err on one line, with what to do about it.
func (b *Backend) describe(err error) string {
	var ne net.Error
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("forbidden (HTTP 403): %s: grant list and watch on secrets in namespace %q to the KBS's identity (a Role and a RoleBinding)", oneLine(err), b.namespace)
	case apierrors.IsUnauthorized(err):
		return fmt.Sprintf("the apiserver refused the credentials (HTTP 401): %s: check the service account token or the kubeconfig", oneLine(err))
	case errors.As(err, &ne), strings.Contains(err.Error(), "connection refused"), strings.Contains(err.Error(), "no such host"):
		return fmt.Sprintf("apiserver %s unreachable: %s", b.host, oneLine(err))
	}
	return oneLine(err)
}

// probe lists (at most one) Secret the way the first informer will, once,
// before the informers start. The informers' watch-list retries a refused
// connection silently and forever, so without the probe an unreachable
// apiserver would leave New with no cause to name; and a refusal of the
// credentials or by RBAC, which no retry changes, fails New at once rather
// than at the sync deadline. Any other failure (unreachable, slow) is
// logged and left to the informers, which retry until the deadline.
func (b *Backend) probe(ctx context.Context, cs kubernetes.Interface, s *settings) error {
	opts := metav1.ListOptions{Limit: 1}
	what := fmt.Sprintf("namespace %q", b.namespace)
	if s.selector != nil {
		opts.LabelSelector = s.selector.String()
	} else {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.names[0]).String()
		what = fmt.Sprintf("Secret %q of namespace %q", s.names[0], b.namespace)
	}
	pctx, cancel := context.WithTimeout(ctx, min(probeTimeout, s.syncTimeout))
	defer cancel()
	_, err := cs.CoreV1().Secrets(b.namespace).List(pctx, opts)
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%w: listing %s refused: %s", ErrSync, what, b.describe(err))
	}
	b.errMu.Lock()
	b.lastErr = err
	b.errMu.Unlock()
	b.log.Warn("listing or watching Secrets failed; retrying until the sync deadline", "namespace", b.namespace, "error", b.describe(err))
	return nil
}

// waitSynced waits until every informer has synced.
func (b *Backend) waitSynced(ctx context.Context, timeout time.Duration, after func(time.Duration) <-chan time.Time) error {
	if after == nil {
		after = func(d time.Duration) <-chan time.Time {
			// Not stopped: it fires once and is collected.
			return time.NewTimer(d).C
		}
	}
	deadline := after(timeout)
	for name, inf := range b.informers {
		select {
		case <-inf.HasSyncedChecker().Done():
		case <-deadline:
			return b.syncError(name, fmt.Sprintf("not complete within %s", timeout))
		case <-ctx.Done():
			return b.syncError(name, fmt.Sprintf("abandoned: %v", ctx.Err()))
		}
	}
	return nil
}

func (b *Backend) syncError(name, why string) error {
	what := fmt.Sprintf("namespace %q", b.namespace)
	if name != "" {
		what = fmt.Sprintf("Secret %q of namespace %q", name, b.namespace)
	}
	b.errMu.Lock()
	last := b.lastErr
	b.errMu.Unlock()
	cause := fmt.Sprintf("no answer from the apiserver at %s", b.host)
	if last != nil {
		cause = b.describe(last)
	}
	return fmt.Errorf("%w: listing %s %s: %s", ErrSync, what, why, cause)
}

// checkNotEmpty looks, when no Secret matched, whether the namespace
// exists: listing the Secrets of a missing namespace succeeds with nothing.
// The lookup needs "get" on the namespace; without it nothing is known and
// the empty result is only logged.
func (b *Backend) checkNotEmpty(ctx context.Context, cs kubernetes.Interface) error {
	if b.secretCount() > 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := cs.CoreV1().Namespaces().Get(pctx, b.namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: kubernetes_namespace %q does not exist", ErrSync, b.namespace)
	}
	b.log.Warn("no Secret is served yet: none matches in the namespace (check kubernetes_namespace, label_selector or secret_names); Secrets are served once they appear",
		"namespace", b.namespace)
	return nil
}

// Get returns the resource at key, <repository>/<type>/<tag>: the value of
// the data key <tag> of the Secret <type>, whose repository is <repository>,
// as the cache holds it now. A copy: callers may change it.
func (b *Backend) Get(_ context.Context, key string) ([]byte, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %q is not <repository>/<type>/<tag>", ErrNotFound, key)
	}
	e := b.lookup(parts[1])
	if e == nil || e.repository != parts[0] {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	v, ok := e.data[parts[2]]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return bytes.Clone(v), nil
}

// lookup returns the cached entry of the Secret name, or nil.
func (b *Backend) lookup(name string) *entry {
	inf := b.informers[""]
	if b.selector == nil {
		inf = b.informers[name]
	}
	if inf == nil {
		return nil
	}
	obj, ok, err := inf.GetStore().GetByKey(b.namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	e, _ := obj.(*entry)
	return e
}

// Set refuses: resources of this backend are written as Secrets.
func (b *Backend) Set(context.Context, string, []byte) error { return ErrReadOnly }

// Delete refuses: resources of this backend are deleted as Secrets.
func (b *Backend) Delete(context.Context, string) error { return ErrReadOnly }

// Close stops the informers and waits until they have stopped. Get then
// fails with ErrClosed. Close is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.cancel()
		b.running.Wait()
	})
	return nil
}

// Synced reports whether every informer has completed its initial list
// (always true once New has returned a Backend).
func (b *Backend) Synced() bool {
	for _, inf := range b.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// ResourceVersion returns the resourceVersion of the Secret name as the
// cache holds it, and whether the cache holds it: a test that has written
// a Secret waits for the version the apiserver returned.
func (b *Backend) ResourceVersion(name string) (string, bool) {
	e := b.lookup(name)
	if e == nil {
		return "", false
	}
	return e.ResourceVersion, true
}

// Keys returns the keys of the resources served now, sorted.
func (b *Backend) Keys() []string {
	var keys []string
	for _, inf := range b.informers {
		for _, obj := range inf.GetStore().List() {
			if e, ok := obj.(*entry); ok {
				for k := range e.data {
					keys = append(keys, e.repository+"/"+e.Name+"/"+k)
				}
			}
		}
	}
	slices.Sort(keys)
	return keys
}

func (b *Backend) secretCount() int {
	n := 0
	for _, inf := range b.informers {
		n += len(inf.GetStore().ListKeys())
	}
	return n
}

// oneLine is err's message on one bounded line.
func oneLine(err error) string {
	const maxLen = 400
	m := strings.Join(strings.Fields(err.Error()), " ")
	if len(m) > maxLen {
		m = strings.ToValidUTF8(m[:maxLen], "") + "..."
	}
	return m
}
