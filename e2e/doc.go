// Package e2e holds the end-to-end suite: it builds the real binaries
// (kbs, kbs-client, restful-as) and runs them as processes over HTTP and
// HTTPS on loopback, with storage on real PostgreSQL and Redis servers
// started by scripts/services.sh. It has no non-test code.
package e2e
