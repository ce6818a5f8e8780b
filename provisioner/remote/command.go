package remote

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"strings"
)

// Script is the remote launcher (Python 3.6+, standard library only).
//
//go:embed launcher.py
var Script []byte

// Magic starts every framed line the remote side writes on stdout; anything
// else there (shell rc-file noise) is ignored.
const Magic = "@@gopyk1@@"

var scriptHash = func() string {
	sum := sha256.Sum256(Script)
	return hex.EncodeToString(sum[:])
}()

// Hash is the hex SHA-256 of Script.
func Hash() string { return scriptHash }

// CachePath is where the remote side caches Script, relative to the remote home.
func CachePath() string { return ".gopyk/launcher-" + scriptHash[:16] + ".py" }

// bootstrap runs Script from the cache, or asks for it on stdout and reads it
// from stdin when the cache is missing or damaged. The bytecode is cached too
// (__pycache__, as for any module): compiling the script costs more than
// starting python. It must parse under Python 2 too (to say "too old"), and
// it reaches the login shell inside single quotes: no single quote, no
// backslash, no "!" (csh history). hashlib would load OpenSSL (10 ms): the
// built-in _sha256 (_sha2 from 3.12) is used when present.
const bootstrap = `import sys,os
def F(**o):
  import json
  os.write(1,(chr(10)+"` + Magic + `"+json.dumps(o)+chr(10)).encode())
if sys.version_info<(3,6):
  F(ok=False,code="python_too_old",error="Python %d.%d is too old: gopyk needs Python 3.6 or newer"%sys.version_info[:2]);sys.exit(3)
try:
  from _sha256 import sha256
except ImportError:
  try:
    from _sha2 import sha256
  except ImportError:
    from hashlib import sha256
H="HASH"
d=os.path.join(os.path.expanduser("~"),".gopyk")
f=os.path.join(d,"launcher-"+H[:16]+".py")
i=sys.stdin.buffer
P=i.readline()
W=""
try:
  with open(f,"rb") as x:s=x.read()
except OSError:s=b""
if not sha256(s).hexdigest()==H:
  F(op="upload")
  n=int(i.readline() or -1);s=i.read(n)
  if not sha256(s).hexdigest()==H:
    F(ok=False,code="upload",error="the uploaded launcher does not match its hash");sys.exit(3)
  try:
    os.makedirs(d,0o700,exist_ok=True);os.makedirs(os.path.join(d,"__pycache__"),0o700,exist_ok=True);t=f+".%d.tmp"%os.getpid()
    o=os.open(t,os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o600);os.write(o,s);os.close(o);os.rename(t,f)
  except OSError as e:W="cannot cache the launcher in %s: %s"%(f,e)
c=None
if not W:
  try:
    from importlib.machinery import SourceFileLoader as L
    c=L("gopyk_launcher",f).get_code("gopyk_launcher")
  except Exception:c=None
if c is None:c=compile(s,f,"exec")
exec(c,{"__name__":"__gopyk__","PARAMS":P,"STDIN":i,"CACHE_WARNING":W})`

// bootstrapArg is the bootstrap as one line of Python for `python -c '…'`.
// The only backslashes it contains are the \n and \" escapes of exec("…"),
// which sh, csh and fish all keep as they are inside single quotes.
var bootstrapArg = func() string {
	src := strings.ReplaceAll(bootstrap, "HASH", scriptHash)
	return `exec("` + strings.NewReplacer(`"`, `\"`, "\n", `\n`).Replace(src) + `")`
}()

// Command is the command line for the exec session that runs the launcher.
// sshd hands it to the user's login shell (bash, zsh, dash, csh, fish…), so
// what follows pre is only `exec 'python' -c '…'`. python defaults to python3;
// a leading ~/ is expanded by the remote shell. pre (module load, conda
// activate…) runs first in that shell; if it fails the launcher does not run
// and Run reports it. The command holds no secret: the parameters, key
// included, go on stdin.
func Command(python, pre string) string {
	if python == "" {
		python = "python3"
	}
	run := "exec " + quotePath(python) + " -c '" + bootstrapArg + "'"
	pre = strings.TrimRight(strings.TrimSpace(pre), ";")
	if strings.TrimSpace(pre) == "" {
		return run
	}
	return pre + " && echo '" + Magic + `{"op":"pre_ok"}' && ` + run
}

// quotePath single-quotes p for any common shell, keeping a leading ~/ outside
// the quotes so that the remote shell expands it.
func quotePath(p string) string {
	prefix := ""
	if strings.HasPrefix(p, "~/") {
		prefix, p = "~/", p[2:]
	}
	return prefix + "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
