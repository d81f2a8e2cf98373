//go:build cgo

package pkcs11plugin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

const (
	// poolWait bounds the wait for one of crypto11's sessions.
	poolWait = 30 * time.Second
	// maxSessions bounds the PKCS#11 sessions the plugin opens at once,
	// each of its two session sets (crypto11's pool and the object
	// sessions).
	maxSessions = 16
	// maxMatches bounds the objects one label lookup considers.
	maxMatches = 64
)

// moduleMu serialises opening and closing modules in this process: the
// slot probe of Open initialises and finalises the library when no other
// context holds it, which must not interleave with crypto11's own
// reference-counted initialisation.
var moduleMu sync.Mutex

// Plugin is an open token. Its methods are safe for concurrent use.
type Plugin struct {
	mechanism string
	hash      crypto.Hash
	label     string // lookup_label

	c11  *crypto11.Context // login, key pairs, session pool, module lifetime
	raw  *pkcs11.Ctx       // the same library: object sessions
	slot uint
	sem  chan struct{} // bounds the object sessions

	// life: operations hold it shared; Close takes it exclusively, so it
	// waits for them and no operation starts after it.
	life   sync.RWMutex
	closed bool
	// objMu: a write (create, then destroy the older objects of the
	// label) and a delete exclude each other and the reads.
	objMu sync.RWMutex
}

// Open loads the module, selects the slot_index-th slot holding a token,
// logs in with the PIN and, when lookup_label is set, checks that the
// token holds that RSA key pair and can unwrap with rsa_mechanism.
// Errors never contain the PIN.
func Open(cfg Config, opts Options) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := open(cfg)
	if err != nil {
		return nil, redact(err, cfg.Pin)
	}
	if cfg.LookupLabel != "" {
		bits, err := p.selfTest()
		if err != nil {
			p.Close()
			return nil, redact(err, cfg.Pin)
		}
		log.Info("pkcs11 wrap key ready", "lookup_label", cfg.LookupLabel, "bits", bits, "rsa_mechanism", p.mechanism)
	}
	info, err := p.raw.GetTokenInfo(p.slot)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("reading the token information of slot %d: %w", p.slot, err)
	}
	log.Info("pkcs11 plugin ready", "module", cfg.Module, "slot_index", cfg.SlotIndex, "slot_id", p.slot,
		"token_label", strings.TrimRight(info.Label, " "), "token_serial", strings.TrimRight(info.SerialNumber, " "))
	return p, nil
}

func open(cfg Config) (*Plugin, error) {
	hash, _ := hashOf(cfg.RsaMechanism)
	mech := cfg.RsaMechanism
	if mech == "" {
		mech = MechanismOAEP
	}
	if strings.Contains(cfg.Module, "/") {
		// dlopen says nothing useful about a missing file.
		if _, err := os.Stat(cfg.Module); err != nil {
			return nil, fmt.Errorf("unable to open pkcs11 module: %w", err)
		}
	}
	moduleMu.Lock()
	defer moduleMu.Unlock()
	raw := pkcs11.New(cfg.Module)
	if raw == nil {
		return nil, fmt.Errorf("unable to open pkcs11 module: %s is not a loadable PKCS#11 library", cfg.Module)
	}
	slot, err := probeSlot(raw, cfg.SlotIndex)
	if err != nil {
		raw.Destroy()
		return nil, err
	}
	id := int(slot)
	c11, err := crypto11.Configure(&crypto11.Config{
		Path:            cfg.Module,
		SlotNumber:      &id,
		Pin:             cfg.Pin,
		MaxSessions:     maxSessions + 1, // crypto11 keeps one for the login
		PoolWaitTimeout: poolWait,
	})
	if err != nil {
		raw.Destroy()
		var p11 pkcs11.Error
		if errors.As(err, &p11) && (p11 == pkcs11.CKR_PIN_INCORRECT || p11 == pkcs11.CKR_PIN_LEN_RANGE) {
			return nil, fmt.Errorf("logging in to the token in slot %d (slot_index %d): the pin is wrong: %v", slot, cfg.SlotIndex, p11)
		}
		return nil, fmt.Errorf("logging in to the token in slot %d (slot_index %d): %v", slot, cfg.SlotIndex, err)
	}
	return &Plugin{
		mechanism: mech, hash: hash, label: cfg.LookupLabel,
		c11: c11, raw: raw, slot: slot, sem: make(chan struct{}, maxSessions),
	}, nil
}

// probeSlot returns the ID of the index-th slot with a token, as
// upstream's get_slots_with_token()[slot_index]. It initialises the
// library only when nothing else in the process has (and then finalises
// it again, for crypto11 to initialise); moduleMu is held.
func probeSlot(raw *pkcs11.Ctx, index int) (uint, error) {
	err := raw.Initialize()
	owned := err == nil
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return 0, fmt.Errorf("unable to initialize pkcs11 module: %w", err)
	}
	slots, err := raw.GetSlotList(true)
	if err != nil {
		if owned {
			_ = raw.Finalize()
		}
		return 0, fmt.Errorf("listing the slots with a token: %w", err)
	}
	if index >= len(slots) {
		if owned {
			_ = raw.Finalize()
		}
		return 0, errorf(ErrNoToken, "Slot index out of range: slot_index %d, the module has %d slot(s) with a token", index, len(slots))
	}
	// An uninitialised token (SoftHSM's free slot) counts, as upstream
	// counts it, but cannot be used.
	info, err := raw.GetTokenInfo(slots[index])
	if owned {
		_ = raw.Finalize()
	}
	if err != nil {
		return 0, fmt.Errorf("reading the token information of slot %d: %w", slots[index], err)
	}
	if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
		return 0, errorf(ErrNoToken, "the token in slot %d (slot_index %d) is not initialized", slots[index], index)
	}
	return slots[index], nil
}

// redact removes the PIN from a start-up error's text (defence in depth:
// no error built here contains it).
func redact(err error, pin string) error {
	if len(pin) < 4 || !strings.Contains(err.Error(), pin) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pin, "<redacted>"))
}

// selfTest wraps a random probe with the public key and unwraps it with
// the token: a key pair the token cannot use with rsa_mechanism (SoftHSM
// 2.6 has no OAEP with SHA-256) is a start-up error, not a wrap that can
// never be unwrapped.
func (p *Plugin) selfTest() (int, error) {
	probe := make([]byte, 32)
	rand.Read(probe)
	ct, err := p.Wrap(context.Background(), probe)
	if err != nil {
		return 0, err
	}
	pt, err := p.Unwrap(context.Background(), ct)
	if err != nil {
		return 0, fmt.Errorf("the token cannot unwrap with rsa_mechanism %s and the key pair labelled %q: %w", p.mechanism, p.label, err)
	}
	if !bytes.Equal(pt, probe) {
		return 0, fmt.Errorf("the token unwrapped a probe with rsa_mechanism %s and the key pair labelled %q to other bytes", p.mechanism, p.label)
	}
	return len(ct) * 8, nil
}

// Close logs out, closes every session and releases the module (finalised
// when no other context of this process holds it). It waits for running
// operations; later ones fail with ErrClosed. It is idempotent.
func (p *Plugin) Close() error {
	p.life.Lock()
	defer p.life.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	moduleMu.Lock()
	defer moduleMu.Unlock()
	err := p.c11.Close()
	p.raw.Destroy()
	return err
}

// enter starts an operation.
func (p *Plugin) enter() error {
	p.life.RLock()
	if p.closed {
		p.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (p *Plugin) leave() { p.life.RUnlock() }

// withSession runs f in a new session of the logged-in token, closed
// after it.
func (p *Plugin) withSession(ctx context.Context, rw bool, f func(sh pkcs11.SessionHandle) error) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	flags := uint(pkcs11.CKF_SERIAL_SESSION)
	if rw {
		flags |= pkcs11.CKF_RW_SESSION
	}
	sh, err := p.raw.OpenSession(p.slot, flags)
	if err != nil {
		return fmt.Errorf("opening a session: %w", err)
	}
	defer p.raw.CloseSession(sh)
	return f(sh)
}

// findResource returns the resource objects labelled desc: secret keys
// (what upstream writes) and data objects (what pkcs11-tool
// --write-object --type data writes), at most maxMatches.
func (p *Plugin) findResource(sh pkcs11.SessionHandle, desc string) ([]pkcs11.ObjectHandle, error) {
	if err := p.raw.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, desc)}); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for len(all) < maxMatches {
		hs, _, err := p.raw.FindObjects(sh, maxMatches-len(all))
		if err != nil {
			_ = p.raw.FindObjectsFinal(sh)
			return nil, err
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := p.raw.FindObjectsFinal(sh); err != nil {
		return nil, err
	}
	var out []pkcs11.ObjectHandle
	for _, h := range all {
		a, err := p.raw.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
		if err != nil || len(a) != 1 {
			continue
		}
		if c := bytesToUlong(a[0].Value); c == pkcs11.CKO_SECRET_KEY || c == pkcs11.CKO_DATA {
			out = append(out, h)
		}
	}
	return out, nil
}

// bytesToUlong decodes a CK_ULONG attribute (host byte order).
func bytesToUlong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

// ReadResource returns the value of the first object labelled desc
// (<repository>/<type>/<tag>).
func (p *Plugin) ReadResource(ctx context.Context, desc string) ([]byte, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	p.objMu.RLock()
	defer p.objMu.RUnlock()
	var out []byte
	err := p.withSession(ctx, false, func(sh pkcs11.SessionHandle) error {
		hs, err := p.findResource(sh, desc)
		if err != nil {
			return fmt.Errorf("looking up the object labelled %s: %w", desc, err)
		}
		if len(hs) == 0 {
			return errorf(ErrNotFound, "Could not find object with label %s", desc)
		}
		a, err := p.raw.GetAttributeValue(sh, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)) {
			return errorf(ErrNotReadable, "Key does not have value attribute available.")
		}
		if err != nil {
			return fmt.Errorf("unable to fetch attributes: %w", err)
		}
		if len(a) != 1 {
			return errors.New("empty attributes returned")
		}
		if len(a[0].Value) > MaxResourceBytes {
			return errorf(ErrTooLarge, "the object labelled %s is larger than %d bytes", desc, MaxResourceBytes)
		}
		out = a[0].Value
		return nil
	})
	return out, err
}

// WriteResource stores data as a token object labelled desc with
// upstream's template (plus CKA_TOKEN), then destroys the objects that had
// that label before: a write replaces.
func (p *Plugin) WriteResource(ctx context.Context, desc string, data []byte) error {
	if len(data) > MaxResourceBytes {
		return errorf(ErrTooLarge, "resource larger than %d bytes", MaxResourceBytes)
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	p.objMu.Lock()
	defer p.objMu.Unlock()
	return p.withSession(ctx, true, func(sh pkcs11.SessionHandle) error {
		old, err := p.findResource(sh, desc)
		if err != nil {
			return fmt.Errorf("looking up the object labelled %s: %w", desc, err)
		}
		if _, err := p.raw.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, data),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, desc),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		}); err != nil {
			if errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_VALUE_INVALID)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_TEMPLATE_INCONSISTENT)) {
				return errorf(ErrInvalidInput, "unable to create object labelled %s: %v", desc, err)
			}
			return fmt.Errorf("unable to create object labelled %s: %w", desc, err)
		}
		for _, h := range old {
			if err := p.raw.DestroyObject(sh, h); err != nil {
				return fmt.Errorf("unable to destroy object: the new value of %s is written, an older one is left: %w", desc, err)
			}
		}
		return nil
	})
}

// DeleteResource destroys the objects labelled desc.
func (p *Plugin) DeleteResource(ctx context.Context, desc string) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	p.objMu.Lock()
	defer p.objMu.Unlock()
	return p.withSession(ctx, true, func(sh pkcs11.SessionHandle) error {
		hs, err := p.findResource(sh, desc)
		if err != nil {
			return fmt.Errorf("looking up the object labelled %s: %w", desc, err)
		}
		if len(hs) == 0 {
			return errorf(ErrNotFound, "Could not find object with label %s", desc)
		}
		for _, h := range hs {
			if err := p.raw.DestroyObject(sh, h); err != nil {
				return fmt.Errorf("unable to destroy object: %w", err)
			}
		}
		return nil
	})
}

// wrapKey finds the lookup_label RSA key pair (each call: a key replaced
// in the token is used without a restart, as upstream).
func (p *Plugin) wrapKey(which string) (crypto11.SignerDecrypter, *rsa.PublicKey, error) {
	if p.label == "" {
		return nil, nil, errorf(ErrNoWrapKey, "unable to find %s wrap key in PKCS11 module: no lookup_label is configured", which)
	}
	ks, err := p.c11.FindKeyPairs(nil, []byte(p.label))
	if err != nil {
		return nil, nil, fmt.Errorf("unable to find %s wrap key in PKCS11 module: %w", which, err)
	}
	if len(ks) == 0 {
		return nil, nil, errorf(ErrNoWrapKey, "unable to find %s wrap key in PKCS11 module: no key pair labelled %q", which, p.label)
	}
	k := ks[0]
	sd, ok := k.(crypto11.SignerDecrypter)
	pub, isRSA := k.Public().(*rsa.PublicKey)
	if !ok || !isRSA {
		return nil, nil, errorf(ErrNoWrapKey, "unable to find %s wrap key in PKCS11 module: the key pair labelled %q is not RSA", which, p.label)
	}
	return sd, pub, nil
}

// MaxWrapBytes is the longest plaintext the wrap key takes (RSA-OAEP:
// modulus size - 2 x hash size - 2).
func maxWrapBytes(pub *rsa.PublicKey, h crypto.Hash) int { return pub.Size() - 2*h.Size() - 2 }

// Wrap encrypts plaintext to the lookup_label public key with RSA-OAEP
// (rsa_mechanism).
func (p *Plugin) Wrap(ctx context.Context, plaintext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	_, pub, err := p.wrapKey("public")
	if err != nil {
		return nil, err
	}
	if n := maxWrapBytes(pub, p.hash); len(plaintext) > n {
		return nil, errorf(ErrInvalidInput, "unable to encrypt HTTP body with public wrap key: %d bytes, the %d-bit key with %s takes at most %d", len(plaintext), pub.Size()*8, p.mechanism, n)
	}
	ct, err := rsa.EncryptOAEP(p.hash.New(), rand.Reader, pub, plaintext, nil)
	if err != nil {
		return nil, errorf(ErrInvalidInput, "unable to encrypt HTTP body with public wrap key: %v", err)
	}
	return ct, nil
}

// Unwrap decrypts ciphertext with the lookup_label private key in the
// token.
func (p *Plugin) Unwrap(ctx context.Context, ciphertext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	k, pub, err := p.wrapKey("private")
	if err != nil {
		return nil, err
	}
	if len(ciphertext) != pub.Size() {
		return nil, errorf(ErrInvalidInput, "unable to decrypt HTTP body with private wrap key: %d bytes, the %d-bit key takes exactly %d", len(ciphertext), pub.Size()*8, pub.Size())
	}
	pt, err := k.Decrypt(nil, ciphertext, &rsa.OAEPOptions{Hash: p.hash})
	if err != nil {
		var p11 pkcs11.Error
		if errors.As(err, &p11) && !deviceFault(p11) {
			// The token refused this ciphertext (SoftHSM says
			// CKR_GENERAL_ERROR for bad padding).
			return nil, errorf(ErrInvalidInput, "unable to decrypt HTTP body with private wrap key: %v", p11)
		}
		return nil, fmt.Errorf("unable to decrypt HTTP body with private wrap key: %w", err)
	}
	return pt, nil
}

// deviceFault tells the token's own failures (it is gone, out of memory,
// logged out) from its refusal of a request.
func deviceFault(e pkcs11.Error) bool {
	switch e {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_FUNCTION_FAILED:
		return true
	}
	return false
}
