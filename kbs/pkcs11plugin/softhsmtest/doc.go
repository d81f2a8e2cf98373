// Package softhsmtest makes throwaway SoftHSM2 tokens for the tests of the
// pkcs11 plugin: a token directory in t.TempDir(), a softhsm2.conf naming
// it (SOFTHSM2_CONF, set with t.Setenv, so no test using it may run in
// parallel), a token initialised with softhsm2-util and, on demand, RSA
// wrap key pairs made and objects listed through crypto11. Without
// SoftHSM (Debian's softhsm2) a test is skipped, or fails when CI is set
// (no suite may be skipped in CI). It needs cgo; only tests import it.
package softhsmtest
