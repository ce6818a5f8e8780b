package sshconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authKey is one identity offered for publickey auth. It implements
// ssh.MultiAlgorithmSigner so RSA keys sign with rsa-sha2, and it loads
// (decrypts) its private key only when the server has accepted the public
// key, so a passphrase is asked for only when it matters.
type authKey struct {
	label string
	pub   ssh.PublicKey
	load  func() (ssh.Signer, error)

	mu      sync.Mutex
	offered bool
	signed  bool
}

func (k *authKey) PublicKey() ssh.PublicKey {
	k.mu.Lock()
	k.offered = true
	k.mu.Unlock()
	return k.pub
}

func (k *authKey) Algorithms() []string {
	return algorithmsForKeyFormat(underlyingAlgo(k.pub.Type()))
}

func (k *authKey) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return k.SignWithAlgorithm(rand, data, "")
}

func (k *authKey) SignWithAlgorithm(rand io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	s, err := k.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.label, err)
	}
	var sig *ssh.Signature
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		sig, err = as.SignWithAlgorithm(rand, data, algo)
	} else {
		sig, err = s.Sign(rand, data)
	}
	if err == nil {
		// The server asks for a signature only for a key it accepts.
		k.mu.Lock()
		k.signed = true
		k.mu.Unlock()
	}
	return sig, err
}

func (k *authKey) state() (offered, signed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.offered, k.signed
}

// algorithmsForKeyFormat and underlyingAlgo mirror x/crypto's unexported
// helpers of the same names.
func algorithmsForKeyFormat(format string) []string {
	switch format {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSAv01}
	}
	return []string{format}
}

var certUnderlying = map[string]string{
	ssh.CertAlgoRSAv01:        ssh.KeyAlgoRSA,
	ssh.CertAlgoRSASHA256v01:  ssh.KeyAlgoRSASHA256,
	ssh.CertAlgoRSASHA512v01:  ssh.KeyAlgoRSASHA512,
	ssh.CertAlgoECDSA256v01:   ssh.KeyAlgoECDSA256,
	ssh.CertAlgoECDSA384v01:   ssh.KeyAlgoECDSA384,
	ssh.CertAlgoECDSA521v01:   ssh.KeyAlgoECDSA521,
	ssh.CertAlgoSKECDSA256v01: ssh.KeyAlgoSKECDSA256,
	ssh.CertAlgoED25519v01:    ssh.KeyAlgoED25519,
	ssh.CertAlgoSKED25519v01:  ssh.KeyAlgoSKED25519,
}

func underlyingAlgo(a string) string {
	if u, ok := certUnderlying[a]; ok {
		return u
	}
	return a
}

// authPlan is the authentication plan for one hop and what happened to it.
type authPlan struct {
	keys      []*authKey
	notes     []string // identities we could not use, for the error message
	agentConn net.Conn
	methods   []ssh.AuthMethod

	mu    sync.Mutex
	asked []string // what the user answered (a password, a verification code)
}

func (a *authPlan) close() {
	if a.agentConn != nil {
		a.agentConn.Close()
	}
}

// refused lists the keys the server was offered and did not accept.
func (a *authPlan) refused() []string {
	var out []string
	for _, k := range a.keys {
		if o, s := k.state(); o && !s {
			out = append(out, k.label)
		}
	}
	return out
}

// authIdentity is one IdentityFile (or CertificateFile's key) from the config.
type authIdentity struct {
	path      string
	pub       ssh.PublicKey // nil when neither the key nor <key>.pub tells us
	certs     []*ssh.Certificate
	certPaths []string                   // where each of certs came from, for messages
	load      func() (ssh.Signer, error) // nil when the private key is unusable
	note      string                     // why load is nil, unless the agent has the key
}

// buildAuth plans the methods; tries is how often a password or code may
// be asked per connection (ssh's NumberOfPasswordPrompts, 3; once where no
// one watches, so a wrong SSH_ASKPASS answer costs one failed login, not 3).
func buildAuth(s *Settings, interactive bool, p *prompter, tries int) *authPlan {
	a := &authPlan{}
	if pubkeyEnabled(s) {
		a.addPublicKeys(s, interactive, p)
		if len(a.keys) > 0 {
			a.methods = append(a.methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
				out := make([]ssh.Signer, len(a.keys))
				for i, k := range a.keys {
					out[i] = k
				}
				return out, nil
			}))
		}
	}
	if s.BatchMode {
		return a
	}
	// These methods are offered even when nobody can answer: the server's
	// questions then tell the user what it wants (a password, a code), and
	// the callback ends the login before any answer is sent, so no failed
	// login is counted against the user. OpenSSH's order: keyboard-
	// interactive before password.
	who := fmt.Sprintf("%s@%s", dialUser(s), dialHostName(s))
	if s.KbdInteractiveAuthentication {
		a.methods = append(a.methods, ssh.RetryableAuthMethod(ssh.KeyboardInteractive(
			func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				if len(questions) == 0 {
					return nil, nil // PAM's "anything else?" round: nothing to type
				}
				if !p.canAsk() {
					for _, q := range questions {
						p.unanswered(describePrompt(q))
					}
					return nil, errCannotAsk
				}
				answers := make([]string, len(questions))
				for i, q := range questions {
					// As OpenSSH 8.9+: "(user@host) " tells a bastion's
					// code from the target's.
					q = "(" + who + ") " + q
					if i == 0 && (name != "" || instruction != "") {
						q = strings.TrimSpace(name+"\n"+instruction) + "\n" + q
					}
					ans, err := p.ask(q, echos[i])
					if err != nil {
						return nil, err
					}
					a.answered(describePrompt(questions[i]))
					answers[i] = ans
				}
				return answers, nil
			}), tries))
	}
	if s.PasswordAuthentication {
		a.methods = append(a.methods, ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
			if !p.canAsk() {
				p.unanswered("a password")
				return "", errCannotAsk
			}
			pw, err := p.secret(who + "'s password: ")
			if err == nil {
				a.answered("a password")
			}
			return pw, err
		}), tries))
	}
	return a
}

// errCannotAsk ends a login the server wants answers for when nobody can
// give them (no terminal, no SSH_ASKPASS).
var errCannotAsk = errors.New("nobody can answer the server's questions here")

// describePrompt names what a keyboard-interactive prompt asks for.
func describePrompt(q string) string {
	l := strings.ToLower(q)
	switch {
	case strings.Contains(l, "passphrase"):
		return "a passphrase"
	case strings.Contains(l, "password"):
		return "a password"
	case strings.Contains(l, "verification code"), strings.Contains(l, "one-time"), strings.Contains(l, "otp"),
		strings.Contains(l, "token"), strings.Contains(l, "passcode"), strings.Contains(l, "code"):
		return "a verification code"
	}
	return fmt.Sprintf("%q", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(q), ":")))
}

func (a *authPlan) answered(what string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.asked {
		if w == what {
			return
		}
	}
	a.asked = append(a.asked, what)
}

func (a *authPlan) answeredList() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.asked...)
}

// accepted lists the keys the server accepted: signed with, yet the login
// went on (partial success: the server wants more, e.g. a code).
func (a *authPlan) accepted() []string {
	var out []string
	for _, k := range a.keys {
		if _, s := k.state(); s {
			out = append(out, k.label)
		}
	}
	return out
}

// pubkeyEnabled treats PubkeyAuthentication as off only when the config
// says so: a hand-built Settings (zero value false, no Raw) means OpenSSH's default, yes.
func pubkeyEnabled(s *Settings) bool {
	if s.PubkeyAuthentication {
		return true
	}
	v, ok := s.Raw["pubkeyauthentication"]
	return !ok || len(v) == 0
}

// addPublicKeys orders identities like OpenSSH's pubkey_prepare: agent keys
// first (only those matching the config under IdentitiesOnly), then the
// config's certificates and keys that the agent does not already hold.
func (a *authPlan) addPublicKeys(s *Settings, interactive bool, p *prompter) {
	ids := a.loadIdentities(s, interactive, p)
	agentSigners := a.agentSigners(s)

	wanted := func(pub ssh.PublicKey) bool {
		for _, id := range ids {
			if id.pub != nil && sameKey(id.pub, pub) {
				return true
			}
			for _, c := range id.certs {
				if sameKey(c, pub) || sameKey(c.Key, pub) {
					return true
				}
			}
		}
		return false
	}
	inAgent := func(pub ssh.PublicKey) ssh.Signer {
		for _, sg := range agentSigners {
			if sameKey(sg.PublicKey(), pub) {
				return sg
			}
		}
		return nil
	}
	seen := func(pub ssh.PublicKey) bool {
		for _, k := range a.keys {
			if sameKey(k.pub, pub) {
				return true
			}
		}
		return false
	}
	for _, sg := range agentSigners {
		pub := sg.PublicKey()
		if s.IdentitiesOnly && !wanted(pub) {
			continue
		}
		a.keys = append(a.keys, &authKey{label: "agent key " + keyDesc(pub), pub: pub, load: fixed(sg)})
	}
	for _, id := range ids {
		if id.note != "" && (id.pub == nil || inAgent(id.pub) == nil) {
			a.notes = append(a.notes, id.note)
		}
		for i, c := range id.certs {
			if seen(c) {
				continue
			}
			label := "certificate " + dialTilde(id.certPaths[i])
			if sg := inAgent(c.Key); sg != nil {
				a.keys = append(a.keys, &authKey{label: label, pub: c, load: certLoader(c, fixed(sg))})
			} else if id.load != nil {
				a.keys = append(a.keys, &authKey{label: label, pub: c, load: certLoader(c, id.load)})
			}
		}
		if id.pub == nil || id.load == nil || seen(id.pub) {
			continue
		}
		a.keys = append(a.keys, &authKey{label: dialTilde(id.path), pub: id.pub, load: id.load})
	}
}

func fixed(s ssh.Signer) func() (ssh.Signer, error) {
	return func() (ssh.Signer, error) { return s, nil }
}

func certLoader(c *ssh.Certificate, key func() (ssh.Signer, error)) func() (ssh.Signer, error) {
	return func() (ssh.Signer, error) {
		s, err := key()
		if err != nil {
			return nil, err
		}
		return ssh.NewCertSigner(c, s)
	}
}

func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}

// agentSigners connects to the agent named by IdentityAgent or SSH_AUTH_SOCK.
// The connection stays open for signing until the handshake ends.
func (a *authPlan) agentSigners(s *Settings) []ssh.Signer {
	sock := s.IdentityAgent
	switch sock {
	case "none":
		return nil
	case "", "SSH_AUTH_SOCK":
		sock = os.Getenv("SSH_AUTH_SOCK")
	default:
		if strings.HasPrefix(sock, "$") {
			sock = os.Getenv(strings.Trim(sock[1:], "{}"))
		}
		sock = dialExpandHome(sock)
	}
	if sock == "" {
		return nil
	}
	conn, err := net.DialTimeout("unix", sock, 3*time.Second)
	if err != nil {
		a.notes = append(a.notes, fmt.Sprintf("ssh-agent at %s unreachable (%v)", dialTilde(sock), errors.Unwrap(err)))
		return nil
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		a.notes = append(a.notes, fmt.Sprintf("ssh-agent at %s: %v", dialTilde(sock), err))
		return nil
	}
	a.agentConn = conn
	return signers
}

// loadIdentities reads every IdentityFile (in order, skipping missing ones)
// and CertificateFile, keeping private keys unparsed until they are needed.
func (a *authPlan) loadIdentities(s *Settings, interactive bool, p *prompter) []*authIdentity {
	var ids []*authIdentity
	for _, f := range s.IdentityFiles {
		if id := a.loadIdentity(dialExpandHome(f), interactive, p); id != nil {
			ids = append(ids, id)
		}
	}
	for _, f := range s.CertificateFiles {
		path := dialExpandHome(f)
		c, err := readCertFile(path)
		if err != nil {
			if !os.IsNotExist(err) {
				a.notes = append(a.notes, fmt.Sprintf("CertificateFile %s: %v", dialTilde(path), err))
			}
			continue
		}
		matched := false
		for _, id := range ids {
			if id.pub != nil && sameKey(id.pub, c.Key) {
				id.addCert(c, path)
				matched = true
				break
			}
		}
		if !matched {
			// The key may be in the agent only: keep the cert on a key-less identity.
			id := &authIdentity{path: strings.TrimSuffix(path, "-cert.pub")}
			id.addCert(c, path)
			ids = append(ids, id)
		}
	}
	return ids
}

func (id *authIdentity) addCert(c *ssh.Certificate, path string) {
	id.certs = append(id.certs, c)
	id.certPaths = append(id.certPaths, path)
}

func readCertFile(path string) (*ssh.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, err
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, errors.New("not a certificate")
	}
	return c, nil
}

func (a *authPlan) loadIdentity(path string, interactive bool, p *prompter) *authIdentity {
	id := &authIdentity{path: path}
	if pubBytes, err := os.ReadFile(path + ".pub"); err == nil {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes); err == nil {
			id.pub = pub
		}
	}
	if c, err := readCertFile(path + "-cert.pub"); err == nil {
		id.addCert(c, path+"-cert.pub")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		if id.pub == nil && len(id.certs) == 0 {
			if !os.IsNotExist(err) {
				a.notes = append(a.notes, fmt.Sprintf("%s unreadable (%v)", dialTilde(path), errors.Unwrap(err)))
			}
			return nil
		}
		return id // a public half only: usable through the agent
	}
	// IdentityFile may name a public key whose private half is in the agent.
	if pub, _, _, _, err := ssh.ParseAuthorizedKey(raw); err == nil {
		if c, ok := pub.(*ssh.Certificate); ok {
			id.addCert(c, path)
		} else {
			id.pub = pub
		}
		return id
	}
	signer, err := ssh.ParsePrivateKey(raw)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		id.pub = signer.PublicKey()
		id.load = fixed(signer)
	case errors.As(err, &missing):
		if id.pub == nil {
			id.pub = missing.PublicKey
		}
		if !interactive && p.askpass == "" {
			why := "there is no terminal or SSH_ASKPASS to ask for its passphrase"
			if p.batch {
				why = "BatchMode forbids asking for its passphrase"
			}
			id.note = fmt.Sprintf("%s is encrypted and %s (ssh-add it to your agent)", dialTilde(path), why)
			break
		}
		id.load = decrypter(path, raw, p)
		if id.pub == nil {
			// An old PEM key without .pub: only decrypting tells us its public key.
			s, err := id.load()
			if err != nil {
				a.notes = append(a.notes, fmt.Sprintf("%s: %v", dialTilde(path), err))
				id.load = nil
				break
			}
			id.pub = s.PublicKey()
		}
	default:
		msg := err.Error()
		if strings.Contains(msg, "unhandled key type") || strings.Contains(msg, "sk-") {
			a.notes = append(a.notes, fmt.Sprintf("%s is a security-key (FIDO) key, usable only through ssh-agent (ssh-add it)", dialTilde(path)))
		} else {
			a.notes = append(a.notes, fmt.Sprintf("%s: %v", dialTilde(path), err))
		}
	}
	return id
}

// decrypter asks for the passphrase once, when a signature is first needed.
func decrypter(path string, raw []byte, p *prompter) func() (ssh.Signer, error) {
	var (
		once   sync.Once
		signer ssh.Signer
		err    error
	)
	return func() (ssh.Signer, error) {
		once.Do(func() {
			// Key derivation (bcrypt) is slow by design: not the server's fault.
			defer p.hold()()
			for range 3 {
				var pass string
				pass, err = p.secret(fmt.Sprintf("Enter passphrase for key '%s': ", dialTilde(path)))
				if err != nil {
					return
				}
				signer, err = ssh.ParsePrivateKeyWithPassphrase(raw, []byte(pass))
				if err == nil {
					return
				}
			}
		})
		return signer, err
	}
}
