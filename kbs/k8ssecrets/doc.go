// Package k8ssecrets is the Kubernetes Secrets backend of the KBS resource
// plugin (ours; upstream has none): the KBS reads Secrets through the
// Kubernetes API and keeps them current with a watch, so a Secret that is
// created, rotated or deleted is served, changed or gone within seconds,
// without restarting the KBS. It replaces upstream trustee-operator's
// secret-converter init container (cmd/secret-converter), which copies the
// Secrets once at pod start.
//
//	[[plugins]]
//	name = "resource"
//	storage_backend_type = "kubernetes"     # case-insensitive
//	kubernetes_namespace = "trustee"        # default: the pod's namespace
//	kubeconfig = "/etc/kbs/kubeconfig"      # default: the pod's service account
//	label_selector = "kbs.confidentialcontainers.org/resource=true"  # the default
//	# or, instead of label_selector:
//	secret_names = ["llm-key", "attestation-status"]
//	timeout_secs = 30                       # initial sync deadline, default 30
//
// # Which Secrets, which resources
//
//   - One namespace: kubernetes_namespace, or, when it is empty, the
//     namespace of the pod (ServiceAccountNamespaceFile). With kubeconfig it
//     is required. Nothing outside it is listed, watched or served.
//   - Without secret_names, the Secrets matching label_selector, by default
//     DefaultLabelSelector (kbs.confidentialcontainers.org/resource=true): a
//     Secret is served once it is labelled, and no longer once the label is
//     removed. A selector must require a label (key=value, key in (...), or
//     key): one of exclusions only would serve nearly every Secret of the
//     namespace, service account tokens included, and is refused.
//   - With secret_names, exactly the named Secrets, whatever their labels:
//     how an operator serves the Secrets a user lists (kbsSecretResources)
//     without changing them. label_selector must then be unset; the two
//     together are refused. A named Secret that does not exist is served as
//     soon as it is created. Each name is one watch (fieldSelector
//     metadata.name=<name>), at most MaxSecretNames.
//   - Secret <s>, data key <k> is the resource default/<s>/<k>, as the
//     secret-converter's. The annotation RepositoryAnnotation
//     (kbs.confidentialcontainers.org/repository: <repo>) puts the Secret's
//     resources under <repo>/<s>/<k> instead, so that the resource policy
//     can tell teams' Secrets apart. Since a Secret's name is unique in its
//     namespace, two Secrets never serve the same key.
//   - Every type of Secret (Opaque, kubernetes.io/tls, basic-auth,
//     ssh-auth, ...) is served alike: all its data keys. stringData is
//     write-only in the API (the apiserver folds it into data), so it is
//     served through data too.
//
// # Invariants
//
//   - Reads are served from the informer cache, never from the apiserver:
//     a Get costs no request and cannot hang. The cache holds, per Secret,
//     its name, resourceVersion, repository and the values that can be
//     served; labels, annotations, managedFields and skipped keys are
//     dropped as a Secret arrives.
//   - New fails (ErrSync) rather than start with an empty or partial view:
//     it waits for the initial list of every informer, at most the sync
//     timeout (timeout_secs) or until its context ends, and reports one
//     line naming the cause: RBAC (HTTP 403, with the grant to add),
//     credentials (401), an unreachable apiserver, a namespace that does
//     not exist (looked up only when nothing matched, with "get" on the
//     namespace if granted), or no answer. It never panics; what it started
//     is stopped.
//   - Least privilege: list and watch on secrets in the one namespace (a
//     Role and a RoleBinding) is all the backend needs; in secret_names mode
//     the Role may name the Secrets (resourceNames). "get" is not used.
//   - Keys are checked as they arrive: a resource key must pass
//     storage.ValidateKey in the repository namespace and each segment
//     upstream's path rule ([A-Za-z0-9_-][A-Za-z0-9_.-]*), which the KBS
//     router enforces; a key that fails (e.g. ".dockerconfigjson") is
//     skipped with a warning, as is a value over storage.MaxValueSize (the
//     apiserver bounds a whole Secret to 1 MiB anyway) and every key of a
//     Secret whose repository annotation fails the rule. Skipped keys are
//     never served; the others of the Secret are.
//   - Values never appear in a log record or an error: records name the
//     Secret, the key, sizes and resourceVersions. Get does not log.
//   - The backend is read-only: Set and Delete (the admin API's resource
//     writes) fail with ErrReadOnly ("... write the Secret instead"); the
//     Secrets are the source of truth, kept by whoever owns them.
//   - While the watch is broken (apiserver restart, network), the last
//     synced state is served and the informer relists and rewatches with
//     back-off; each failure is logged as a warning. A deleted Secret thus
//     stops being served as soon as the apiserver can tell the KBS.
//   - Get of anything not served wraps ErrNotFound (the KBS answers its
//     usual "resource ... not found"); after Close, Get fails with
//     ErrClosed. Close stops the informers and waits for them.
package k8ssecrets
