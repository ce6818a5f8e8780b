"""Check launcher modules for the mistakes a split into modules invites: a
name used but neither defined nor imported (a NameError on the remote, maybe
only on a rare path), and an import nothing uses. Standard library only.

usage: namecheck.py module.py...; prints one line per finding, exit 1 if any."""

import ast
import builtins
import sys
import symtable


def check(path):
    with open(path, "rb") as f:
        src = f.read().decode("utf-8")
    top = symtable.symtable(src, path, "exec")
    defined = set(s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace())
    found = set()

    def walk(t):
        for s in t.get_symbols():
            n = s.get_name()
            unbound = s.is_global() and not s.is_local() if t is not top else not (s.is_assigned() or s.is_imported())
            if s.is_referenced() and unbound and n not in defined and not hasattr(builtins, n):
                found.add("%s:%d: %s uses %s, which is neither defined nor imported" % (path, t.get_lineno(), t.get_name(), n))
        for c in t.get_children():
            walk(c)

    walk(top)
    used = set(n.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Name))
    for s in top.get_symbols():
        if s.is_imported() and s.get_name() not in used:
            found.add("%s: %s is imported but not used" % (path, s.get_name()))
    return sorted(found)


if __name__ == "__main__":
    bad = [line for p in sys.argv[1:] for line in check(p)]
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)
