// Package vaultkv is the HashiCorp Vault KV backend of the KBS resource
// plugin: upstream Trustee's
//
//	[[plugins]]
//	name = "resource"
//	storage_backend_type = "Vault"
//	vault_url = "https://vault.example:8200"
//	token = "hvs...."
//	mount_path = "secret"        # default "secret"
//	verify_ssl = true            # see below
//	ca_certs = ["/etc/kbs/vault-ca.pem"]
//	# ours:
//	kv_version = 2               # default 1, as upstream
//	namespace = "team-a"         # Vault Enterprise namespace (X-Vault-Namespace)
//	timeout_secs = 10            # deadline of every request, default 10
//
// A resource <repository>/<type>/<tag> is the Vault secret at that path
// under mount_path; its field "data" holds the resource, as upstream.
//
// # Wire format (compatible with upstream in both directions)
//
//   - KV v1 (upstream's only version): GET/PUT/DELETE
//     <mount>/<repo>/<type>/<tag>, the secret is {"data": <value>}.
//   - KV v2 (ours): GET/PUT <mount>/data/<repo>/<type>/<tag>, the secret is
//     {"data": {"data": <value>}} (the latest version). Delete removes the
//     metadata and every version (DELETE <mount>/metadata/...): a deleted
//     resource cannot be undeleted and a new write starts at version 1,
//     like a KV v1 delete. A soft-deleted or destroyed latest version (done
//     outside the KBS) reads as not found.
//   - Reading, <value> is taken as upstream does: a JSON string is the
//     resource's bytes (UTF-8, as `vault kv put ... data=...` stores it), an
//     array of integers 0..255 is the bytes themselves (what upstream
//     writes), and any other JSON value is returned as its compact JSON text
//     (member order and number text kept as Vault sent them).
//   - Writing, <value> is a JSON string when the resource is valid UTF-8,
//     and an array of integers 0..255 otherwise. Upstream always writes the
//     array; both read back as the same bytes in both implementations, and
//     the string is up to four times smaller and readable with `vault kv
//     get`. It matters: Vault's listener bounds request JSON (Vault 1.21,
//     defaults): a string value to max_json_string_value_length (1 MiB), an
//     array to max_json_array_element_count (10000 elements), a body to
//     max_request_size (32 MiB). So with a default listener a text resource
//     can be 1 MiB and a binary one 10000 bytes (upstream: 10000 bytes for
//     any resource); above that Vault's refusal is reported as ErrTooLarge
//     naming the limit.
//
// # Invariants
//
//   - The token is sent only in the X-Vault-Token header to vault_url: it is
//     never in an error, a log record or a String/GoString of the Config,
//     and redirects are not followed (the token would go with them). The
//     VAULT_* variables the Vault client library reads (VAULT_TOKEN,
//     VAULT_NAMESPACE, VAULT_HEADERS, VAULT_WRAP_TTL, VAULT_CACERT, ...) are
//     overridden: the configuration alone says where the token goes and how
//     requests look. (The library still parses them, so a malformed one
//     fails New.) HTTP(S)_PROXY is honoured, as by the other clients.
//   - A resource value never appears in an error or a log record. Vault's own
//     error strings are passed on, shortened and on one line.
//   - Every request has a deadline (timeout_secs, default 10 s) covering the
//     connection, TLS, the request and reading the reply; a Vault that does
//     not answer yields a "no answer within" error, not a hang.
//   - Replies are bounded before they are parsed: 4 x MaxResourceBytes + 1
//     MiB (a full-size resource as an array of numbers), and a decoded
//     value larger than limits.MaxResourceBytes is refused, as is a write of
//     one. The array form accepts only integers 0..255 (no null, sign,
//     fraction or exponent), as upstream's Vec<u8>.
//   - TLS certificates are verified unless verify_ssl = false is written in
//     the file. Upstream's default is false; ours is true, and false with an
//     https vault_url is an explicit insecure choice logged as an INSECURE
//     warning at start-up (as is a plain http vault_url to a host that is
//     not loopback). ca_certs are added to the system roots, as upstream's
//     reqwest client does.
//   - Errors are classified (errors.Is): ErrNotFound (no such secret: the
//     KBS answers its usual "resource ... not found"), ErrSealed,
//     ErrPermissionDenied (a bad or expired token, or a policy that does
//     not grant the path), ErrUnreachable (connection refused, DNS, TLS,
//     timeout), ErrTooLarge, ErrMalformed (no "data" field, a bad array),
//     ErrInvalidKey (not <repository>/<type>/<tag> with upstream's segment
//     syntax), and ErrVault for any other answer of Vault. Their text follows
//     upstream's wording ("Secret not found at path '...'", "Vault API error
//     for path '...': ...", "Failed to write secret to Vault ...").
//   - Deleting a secret that does not exist succeeds, as upstream (Vault
//     does not tell a delete of nothing apart).
//   - A 404 is "not found" only when Vault's reply carries no error and no
//     warning; a 404 with one is a wrong mount_path ("no handler for
//     route") or kv_version (KV v2's "Invalid path for a versioned K/V
//     secrets engine") and reported as such.
//   - A namespace is never silently dropped: Vault OSS ignores
//     X-Vault-Namespace and serves the root namespace, so before the first
//     request the backend reads sys/health (without the namespace header)
//     and, when the server says "enterprise": false, refuses every request
//     with an error naming the cause. A server that does not say (Vault
//     Enterprise before 1.16, OpenBao) is trusted with the namespace.
//   - Requests are not retried: the guest retries a failed resource read.
//   - In the KBS (kbs/plugins.go) ErrNotFound becomes the usual
//     PluginInternalError "Plugin internal error: resource <key> not
//     found" (401); every other failure is InternalError (500) with the
//     message above, and a write Vault refuses as too large is 413.
package vaultkv
