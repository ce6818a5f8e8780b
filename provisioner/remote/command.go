package remote

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Modules is the remote launcher: the Python package gopyk (Python 3.6+,
// standard library only), one module per job; gopyk/__init__.py maps them.
//
//go:embed gopyk/*.py
var Modules embed.FS

// Magic starts every framed line the remote side writes on stdout; anything
// else there (shell rc-file noise) is ignored.
const Magic = "@@gopyk1@@"

// pkg is the launcher as the remote side caches it, built once.
var pkg = func() struct {
	names   []string
	sources map[string][]byte
	hash    string
	upload  []byte
} {
	ents, err := fs.Glob(Modules, "gopyk/*.py")
	if err != nil || len(ents) == 0 {
		panic(fmt.Sprintf("remote: no launcher modules embedded: %v", err))
	}
	sort.Strings(ents)
	var p struct {
		names   []string
		sources map[string][]byte
		hash    string
		upload  []byte
	}
	p.sources = map[string][]byte{}
	text := map[string]string{}
	h := sha256.New()
	for _, e := range ents {
		src, err := Modules.ReadFile(e)
		if err != nil {
			panic(err)
		}
		if !utf8.Valid(src) {
			panic("remote: " + e + " is not UTF-8") // JSON would change it
		}
		name := path.Base(e)
		p.names = append(p.names, name)
		p.sources[name] = src
		text[name] = string(src)
		// The bootstrap's V() hashes the same: name NUL length NUL source.
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(src))
		h.Write(src)
	}
	p.hash = hex.EncodeToString(h.Sum(nil))
	// JSON (keys sorted) in zlib: both cost the remote python almost nothing
	// to import, where zipfile costs it tens of ms. The hash covers the
	// sources, not these bytes.
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(text); err != nil {
		panic(err)
	}
	var zb bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&zb, zlib.BestCompression)
	if _, err := zw.Write(js.Bytes()); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	p.upload = zb.Bytes()
	return p
}()

// Artifact is what is uploaded when the remote cache lacks the launcher: a
// JSON object mapping each module's file name to its source, zlib-compressed.
func Artifact() []byte { return pkg.upload }

// ModuleNames lists the launcher's modules (file names, sorted).
func ModuleNames() []string { return slices.Clone(pkg.names) }

// ModuleSource is the source of one module (a name from ModuleNames).
func ModuleSource(name string) []byte { return pkg.sources[name] }

// Hash is the hex SHA-256 over every module: for each in name order, the
// name, a NUL, its length in decimal, a NUL and its source.
func Hash() string { return pkg.hash }

// CachePath is the directory where the remote side caches the launcher,
// relative to the remote home; the package is in its gopyk/ subdirectory.
func CachePath() string { return ".gopyk/launcher-" + pkg.hash[:16] }

// bootstrap runs the launcher from the cache, or asks for it on stdout and
// reads it from stdin (Artifact, after the parameter line) when the cache is
// missing or damaged. It asks, and imports the package, before it reads the
// parameters: sshd opens the session's window only once the command runs,
// so the parameters arrive a round trip after the exec, and python starts,
// hashes and imports meanwhile; an upload then costs python's start, not a
// round trip more. Every
// module is hashed on every run (V), which costs less than starting python.
// The upload is written once, into a private directory that is renamed into
// place whole (a concurrent upload that won is kept, a damaged dir is
// replaced), and run from there by the ordinary import machinery so that the
// bytecode is cached (__pycache__): compiling costs more than starting
// python. zipfile is not used: importing it costs tens of ms. When the home
// cannot hold it (full, read-only, over quota) it goes to /tmp/gopyk-<uid>
// (a 0700 dir of the user's, as the run dirs' fallback), so that it is not
// uploaded again on every launch and reconnect, and is copied back to the
// home once the home can take it; when neither can, the launcher runs from
// memory (a meta path finder over the sources). The reply's cache_warning
// says which. It must parse under
// Python 2 too (to say "too old"), and it reaches the login shell inside
// single quotes: no single quote, no backslash, no "!" (csh history).
// hashlib would load OpenSSL (10 ms): the built-in _sha256 (_sha2 from 3.12)
// is used when present.
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
J=os.path.join
T="/tmp/gopyk-%d"%os.getuid()
D=[J(os.path.expanduser("~"),".gopyk"),T]
i=sys.stdin.buffer
P=None
W=""
M=None
def V(m):
  h=sha256()
  for n in sorted(m):h.update(n.encode()+b"%c%d%c"%(0,len(m[n]),0)+m[n])
  return h.hexdigest()
def R(p):
  m={}
  for n in os.listdir(p):
    if n.endswith(".py"):
      with open(J(p,n),"rb") as x:m[n]=x.read()
  return m
def O(d,c=0):
  if d==D[0]:return True
  if c:
    try:os.mkdir(d,0o700)
    except OSError:pass
  try:s=os.lstat(d)
  except OSError:return False
  return s.st_uid==os.getuid() and s.st_mode&0o170077==0o40000
K="launcher-"+H[:16]
r=None
try:
  if V(R(J(D[0],K,"gopyk")))==H:r=J(D[0],K)
except OSError:pass
if r is None:
  u=0
  try:
    if O(T):
      M=R(J(T,K,"gopyk"))
      if not V(M)==H:M=None
  except OSError:M=None
  if M is None:
    u=1
    F(op="upload")
    P=i.readline()
    n=int(i.readline() or -1);s=i.read(n)
    try:
      import json,zlib
    except ImportError:
      F(ok=False,code="upload",error="%s lacks the zlib module, which gopyk needs to receive its launcher: use a python built with zlib"%sys.executable);sys.exit(3)
    try:M=dict((k,v.encode()) for k,v in json.loads(zlib.decompress(s).decode()).items())
    except Exception:M={}
    if not V(M)==H:
      F(ok=False,code="upload",error="the uploaded launcher does not match its hash");sys.exit(3)
  E=[]
  for d in D:
    x=J(d,K);t=x+".%d.tmp"%os.getpid()
    if d==T and not u:r=x;break
    try:
      if not O(d,1):raise OSError("not a private directory of this user")
      os.makedirs(d,0o700,exist_ok=True)
      for y in (t,J(t,"gopyk"),J(t,"gopyk","__pycache__")):os.mkdir(y,0o700)
      for n in M:
        with os.fdopen(os.open(J(t,"gopyk",n),os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o600),"wb") as y:y.write(M[n])
      try:os.rename(t,x)
      except OSError:
        import shutil
        try:g=V(R(J(x,"gopyk")))==H
        except OSError:g=False
        if g:shutil.rmtree(t)
        else:os.rename(x,t+"old");os.rename(t,x);shutil.rmtree(t+"old")
      r=x;break
    except OSError as e:
      E.append("%s: %s"%(x,e));import shutil;shutil.rmtree(t,True)
  if E:W="cannot cache the launcher in "+"; nor in ".join(E)+("; cached in %s instead"%r if r else "; it is uploaded on every launch and reconnect")
if r is None:
  import importlib.util as U
  class Q:
    def find_spec(s,n,p,g=None):
      f=s.f(n)
      if f in M:return U.spec_from_loader(n,s,origin="<gopyk>/"+f,is_package=n=="gopyk")
    def f(s,n):return "__init__.py" if n=="gopyk" else n[6:]+".py" if n[:6]=="gopyk." else ""
    def create_module(s,x):return None
    def exec_module(s,m):exec(compile(M[s.f(m.__name__)],"<gopyk>/"+s.f(m.__name__),"exec"),m.__dict__)
  sys.meta_path.insert(0,Q())
else:sys.path.insert(0,r)
from gopyk.main import main
main(P or i.readline(),i,W)`

// bootstrapArg is the bootstrap as one line of Python for `python -c '…'`.
// The only backslashes it contains are the \n and \" escapes of exec("…"),
// which sh, csh and fish all keep as they are inside single quotes.
var bootstrapArg = func() string {
	src := strings.ReplaceAll(bootstrap, "HASH", pkg.hash)
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
