"""verifier.py - the sandbox that runs model-written Python, and the AZR answer checks.

Self-play (AZR, arXiv 2505.03335, sec. 3.2-3.3) executes programs the policy wrote.  No torch;
importing this module is cheap and starts nothing.  Layers, outside in:
  * a static filter in the caller (defence in depth): banned modules, dangerous builtins where
    they really name the builtin (symtable), dunders outside an allowlist; each rule is named;
  * two fork servers, fresh interpreters (never forked from the caller) with hash seeds 0 and 1
    and no other environment, preloading harmless stdlib and forking a child per job;
  * the child: own process group, /dev/null stdio, only the result pipe open, capped print();
    cwd a fresh job directory (as root: chroot into it, uid/gid 65534); rlimits and alarm(); an
    audit hook that reports and os._exit()s on a forbidden event (never a raise, which the
    program could catch); restricted builtins.  It runs ``f(<args>)`` (exactly one call), checks
    the value's exact builtin types and size before repr and reports it behind a per-job nonce;
  * the server kills the child's group at the wall deadline and removes its directory; a dead
    server is respawned and its leftovers killed; servers exit when their stdin closes.

Protects against: runaway CPU, sleep, memory and output; fork bombs; writes, renames and deletes
outside the job directory (inside: at most MAX_WRITE_OPENS files of DEFAULT_FILE_MB MiB); network;
killing the trainer or the servers; leaked processes; hash-seed and id() non-determinism; return
values that run code in repr or are gigantic.

Does NOT protect against (no containers, namespaces or seccomp): reads by a program that escapes
the filter (without root the audit hook's open() check is all); forgery of its own result by
code that escapes filter and builtins and reaches os.write on the result pipe (the nonce lives
only in a closure made before the program starts, frames/gc/code objects are audit-killed and
the runner uses only references captured before then: naive forgeries fail); calls that fire no
audit event (sleep/select: only the wall timeout; threads as root without the uid drop);
kernel or CPython bugs, side channels, CPU taken by up to ``2 * workers`` children.

``Result.kind`` (``error`` before its first colon) is one of: syntax, banned, args, no_function,
exception, memory, timeout, forbidden, exit, crash, output, value, nondeterministic, internal.
"""
from __future__ import annotations

import _ast                      # C node classes; the big `ast` module loads lazily (caller side)
import _thread                   # a lock without importing threading (loaded in every interpreter)
import builtins
import collections
import contextlib
import functools
import json
import os
import signal
import sys
import time

# ---- Limits and policy tables ----------------------------------------------------------------
DEFAULT_TIMEOUT = 5.0            # wall seconds per execution
DEFAULT_MEMORY_MB = 1024         # RLIMIT_AS of each child
DEFAULT_FILE_MB = 1              # RLIMIT_FSIZE of each child
MAX_VALUE_CHARS = 10_000         # largest accepted repr of a return value
MAX_OUTPUT_CHARS = 1 << 20       # stdout+stderr characters before the child is ended
MAX_VALUE_DEPTH = 100            # deepest accepted nesting of a return value
MAX_PROGRAM_CHARS = 100_000      # longer programs/args are rejected before parsing
MAX_WRITE_OPENS = 16             # files/dirs a job may create or open for writing (in its dir)
NOBODY = 65534                   # uid/gid the child drops to when the server runs as root
SANDBOX_FILENAME = "<program>"   # co_filename of program code (audit hook: "program frame")
ARGS_FILENAME = "<input>"

EXIT_FORBIDDEN = 86              # child exit code after the audit hook fired (reason in the pipe)
EXIT_OUTPUT = 87                 # child exit code after too much output
EXIT_INTERNAL = 88

# AZR's banned list (azr.data_selection_strategy.banned_words) plus modules that give processes,
# files, sockets, memory or interpreter internals.
AZR_BANNED_MODULES = frozenset({
    "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime",
    "time", "hashlib", "hmac", "bcrypt", "calendar", "os", "sys"})
EXTRA_BANNED_MODULES = frozenset({
    "socket", "_socket", "ssl", "ctypes", "_ctypes", "cffi", "importlib", "builtins", "inspect",
    "gc", "pickle", "_pickle", "marshal", "shelve", "dbm", "sqlite3", "io", "_io", "pathlib",
    "shutil", "tempfile", "glob", "fnmatch", "signal", "_signal", "resource", "pty", "tty",
    "termios", "fcntl", "select", "selectors", "mmap", "asyncio", "concurrent", "_thread",
    "posix", "nt", "_posixsubprocess", "code", "codeop", "runpy", "pdb", "trace", "traceback",
    "faulthandler", "tracemalloc", "sysconfig", "site", "atexit", "weakref", "urllib", "http",
    "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "webbrowser", "platform", "pwd",
    "grp", "zipimport", "pkgutil", "linecache", "types", "copyreg", "_imp", "ast", "dis",
    "zipfile", "tarfile", "gzip", "bz2", "lzma", "uuid", "secrets", "getpass", "locale"})
BANNED_MODULES = AZR_BANNED_MODULES | EXTRA_BANNED_MODULES
BANNED_BUILTINS = frozenset({
    "open", "eval", "exec", "compile", "__import__", "input", "breakpoint", "globals", "locals",
    "vars", "help", "exit", "quit", "memoryview"})
SAFE_DUNDER_NAMES = frozenset({"__name__", "__doc__", "__slots__", "__all__", "__debug__"})
SAFE_DUNDER_ATTRS = frozenset({
    "__init__", "__name__", "__qualname__", "__doc__", "__len__", "__iter__", "__next__",
    "__contains__", "__getitem__", "__setitem__", "__delitem__", "__eq__", "__ne__", "__lt__",
    "__le__", "__gt__", "__ge__", "__hash__", "__str__", "__repr__", "__add__", "__sub__",
    "__mul__", "__truediv__", "__floordiv__", "__mod__", "__pow__", "__neg__", "__pos__",
    "__abs__", "__bool__", "__int__", "__float__", "__enter__", "__exit__", "__call__",
    "__missing__", "__reversed__", "__radd__", "__rmul__", "__and__", "__or__", "__xor__"})

# Modules the server preloads; a program may import exactly these (top-level names).
PRELOAD_MODULES = (
    "math", "cmath", "string", "re", "collections", "collections.abc", "itertools", "functools",
    "operator", "heapq", "bisect", "copy", "json", "fractions", "decimal", "numbers", "array",
    "textwrap", "unicodedata", "typing", "enum", "abc", "keyword", "contextlib", "struct",
    "difflib", "base64", "binascii", "statistics", "zlib")
ALLOWED_IMPORTS = frozenset(m.partition(".")[0] for m in PRELOAD_MODULES) - BANNED_MODULES
# Loading one of these at run time ends the child (others merely raise ImportError).
DENY_IMPORTS = BANNED_MODULES | {"_ssl", "_multiprocessing", "_posixshmem", "_ctypes_test",
                                 "_testcapi", "_testinternalcapi", "readline", "curses", "_curses"}
# Audit events that end the child wherever they come from (exact names / prefixes).
KILL_EVENTS = frozenset({
    "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.startfile", "os.setxattr",
    "os.removexattr", "os.add_dll_directory", "os.chroot", "sys.settrace", "sys.setprofile",
    "sys._current_frames", "sys._current_exceptions", "sys.addaudithook", "sys.excepthook",
    "sys.unraisablehook", "function.__new__", "code.__new__", "builtins.input",
    "builtins.breakpoint", "pickle.find_class", "setopencodehook", "sys.set_asyncgen_hooks_firstiter",
    "sys.set_asyncgen_hooks_finalizer", "os.putenv", "os.unsetenv", "signal.pthread_kill"})
KILL_PREFIXES = (
    "os.exec", "os.spawn", "os.posix_spawn", "subprocess.", "socket.", "ctypes.", "_ctypes.",
    "gc.get_", "marshal.", "mmap.", "resource.", "fcntl.", "pty.", "cpython.", "shutil.",
    "tempfile.", "sqlite3.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
    "nntplib.", "telnetlib.", "webbrowser.", "ensurepip.", "syslog.", "winreg.", "msvcrt.",
    "_winapi.", "glob.", "os.chflags", "os.lchflags", "_posixsubprocess.", "_thread.")
# Events allowed only when fired from preloaded stdlib code (namedtuple, typing, enum ...).
STDLIB_ONLY_EVENTS = frozenset({"exec", "compile", "sys._getframe", "object.__getattr__",
                                "object.__setattr__", "object.__delattr__"})
# Path-taking events: event -> (indexes of path args, indexes of dir_fd args)
PATH_EVENTS = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
    "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
    "os.truncate": ((0,), ()), "os.listdir": ((0,), ()), "os.scandir": ((0,), ()),
    "os.lchmod": ((0,), ()), "os.lchown": ((0,), ()), "os.mkfifo": ((0,), (2,)),
    "os.mknod": ((0,), (3,))}


class Result(collections.namedtuple("Result", "ok value error")):
    """Outcome of one execution/validation: ok (bool), value (repr of the return value, or None),
    error ("<kind>: <detail>", or None); ``kind`` is None when ok."""
    __slots__ = ()

    @property
    def kind(self):
        return None if self.error is None else self.error.split(":", 1)[0]


def _fail(kind, detail):
    return Result(False, None, f"{kind}: {detail}")


# ---- Static filter (caller side; defence in depth) -------------------------------------------
def _is_dunder(name):
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _builtin_uses(source, names):
    """Names from ``names`` that ``source`` references as *builtins*, via symtable: a parameter,
    local, enclosing or module-level binding of e.g. ``input`` shadows it."""
    import symtable
    top = symtable.symtable(source, SANDBOX_FILENAME, "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    found, stack = set(), [top]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for sym in table.get_symbols():
            name = sym.get_name()
            if name not in names or not sym.is_referenced() or name in bound:
                continue
            if table is top or sym.is_global():
                found.add(name)
    return found


def _walk_rules(tree):
    """First static-rule violation in an AST (imports, dunders), as an error string, or None."""
    import ast
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            frm = isinstance(node, ast.ImportFrom)
            if frm and node.level:
                return "banned: relative import"
            for name in [node.module or ""] if frm else [a.name for a in node.names]:
                bad = [part for part in name.split(".") if part in BANNED_MODULES]
                if bad:
                    src = "AZR" if bad[0] in AZR_BANNED_MODULES else "sandbox"
                    verb = "import from" if frm else "import of"
                    return f"banned: {verb} '{name}' ({src} banned module)"
            for alias in node.names if frm else ():
                if alias.name == "*" or _is_dunder(alias.name) or alias.name in BANNED_MODULES:
                    return f"banned: 'from {node.module} import {alias.name}'"
        elif isinstance(node, ast.Attribute):
            if _is_dunder(node.attr) and node.attr not in SAFE_DUNDER_ATTRS:
                return f"banned: dunder attribute access '.{node.attr}'"
        elif isinstance(node, ast.Name):
            if _is_dunder(node.id) and node.id not in SAFE_DUNDER_NAMES:
                return f"banned: dunder name '{node.id}'"
    return None


@functools.lru_cache(maxsize=4096)
def _check_program(program):
    """Static checks of a program str: parses, passes the filter, defines a top-level ``f``.
    None when acceptable, else the error string.  Cached: programs are re-run with many inputs."""
    import ast
    if len(program) > MAX_PROGRAM_CHARS:
        return f"syntax: program longer than {MAX_PROGRAM_CHARS} characters"
    try:
        tree = ast.parse(program, SANDBOX_FILENAME, "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return f"syntax: {type(e).__name__}: {getattr(e, 'msg', e)} (line {getattr(e, 'lineno', '?')})"
    if err := _walk_rules(tree):
        return err
    try:
        uses = _builtin_uses(program, BANNED_BUILTINS)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return f"syntax: {e}"
    if uses:
        return f"banned: use of builtin '{sorted(uses)[0]}'"
    defines_f = any(
        (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "f")
        or (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "f" for t in n.targets))
        for n in tree.body)
    if not defines_f:
        return "no_function: the program defines no top-level function f"
    return None


def _parse_call_args(args):
    """Check that ``f(<args>)`` is exactly one call of ``f``; returns the ast.Call or an error str."""
    if not isinstance(args, str):
        return f"args: the input must be a str, got {type(args).__name__}"
    if len(args) > MAX_PROGRAM_CHARS:
        return f"args: input longer than {MAX_PROGRAM_CHARS} characters"
    try:
        expr = compile(f"f({args})", ARGS_FILENAME, "eval", _ast.PyCF_ONLY_AST, dont_inherit=True).body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return f"args: the input is not a valid argument list ({type(e).__name__})"
    if not (isinstance(expr, _ast.Call) and isinstance(expr.func, _ast.Name) and expr.func.id == "f"):
        return "args: the input must parse as exactly one call f(<input>)"
    return expr


def _check_job(program, args):
    """Static checks of a (program, args) pair; None when fine, else the error string."""
    import ast
    if not isinstance(program, str):
        return f"syntax: program must be a str, got {type(program).__name__}"
    if err := _check_program(program):
        return err
    call = _parse_call_args(args)
    if isinstance(call, str):
        return call
    if err := _walk_rules(call):
        return err.replace("banned:", "banned: in input:", 1)
    if any(isinstance(n, ast.Name) and n.id in BANNED_BUILTINS for n in ast.walk(call)):
        uses = _builtin_uses(f"{program}\nf({args})\n", BANNED_BUILTINS)
        if uses:
            return f"banned: use of builtin '{sorted(uses)[0]}' in input"
    return None


# ---- Child side: value check, guard, runner (run inside the forked child of a server) --------
_type_name = type.__dict__["__name__"].__get__     # name of a class, bypassing metaclass tricks


def _literal_repr(value, max_chars, max_depth=MAX_VALUE_DEPTH, *, _type=type, _len=len,
                  _repr=repr, _tname=_type_name, _none=type(None), str=str, int=int,
                  float=float, complex=complex, bool=bool, bytes=bytes, list=list, tuple=tuple,
                  set=set, dict=dict):
    """(repr_text, None) when ``value`` is a literal of exact builtin types within the caps, else
    (None, reason).  No program code runs: exact types (no subclasses) are checked before repr,
    through builtins bound as defaults (a program may have patched ``builtins``)."""
    too_large = None, f"value: return value too large (repr over {max_chars} characters)"
    est, stack = 0, [(value, 0)]
    while stack:
        v, depth = stack.pop()
        t = _type(v)
        if t is str:
            est += _len(v) + 2
        elif t is int:
            bits = v.bit_length()
            if bits > 14_000:
                return None, f"value: integer with more than 4200 digits ({bits} bits)"
            est += bits * 0.302 + 2
        elif t is bool or t is _none:
            est += 5
        elif t is float:
            if not v - v == 0.0:
                return None, f"value: non-finite float {_repr(v)} is not a literal"
            est += 24
        elif t is complex:
            if not (v.real - v.real == 0.0 and v.imag - v.imag == 0.0):
                return None, "value: non-finite complex is not a literal"
            est += 50
        elif t is bytes:
            est += _len(v) + 3
        elif t is list or t is tuple or t is set or t is dict:
            if depth >= max_depth:
                return None, f"value: nested deeper than {max_depth} (or self-referential)"
            est += 2 + 2 * _len(v)
            if est > max_chars:
                return too_large
            if t is dict:
                v = [y for item in v.items() for y in item]     # key, value, key, value ...
            stack.extend([(x, depth + 1) for x in v])
        else:
            return None, f"value: unsupported return type '{_tname(t)}' (not a Python literal)"
        if est > max_chars:
            return too_large
    text = _repr(value)
    if _len(text) > max_chars:
        return too_large
    return text, None


class _CappedWriter:
    """sys.stdout/sys.stderr of the child: counts characters, keeps nothing, ends past the cap."""

    def __init__(self, limit, _exit):
        self._left, self._exit = limit, _exit

    def write(self, s):
        if type(s) is not str:
            raise TypeError("write() argument must be str")
        self._left -= len(s)
        if self._left < 0:
            self._exit(EXIT_OUTPUT)
        return len(s)

    def flush(self):
        pass


def _safe_builtins(allowed_imports, real_import):
    """Builtins dict for program code: dangerous names removed, import and getattr restricted."""
    safe = {k: v for k, v in vars(builtins).items() if k not in BANNED_BUILTINS}

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or type(name) is not str or name.partition(".")[0] not in allowed_imports:
            raise ImportError(f"module {name!r} is not available in the sandbox")
        return real_import(name, None, None, fromlist, 0)

    def _guard(fn, on_dunder):
        def guarded(obj, name, *rest):
            if (type(name) is str and name.startswith("__") and name.endswith("__")
                    and name not in SAFE_DUNDER_ATTRS):
                return on_dunder(name, rest)
            return fn(obj, name, *rest)
        guarded.__name__ = fn.__name__
        return guarded

    def refuse(name, rest):
        raise AttributeError(f"dunder attribute {name!r} is not accessible in the sandbox")

    safe["__import__"] = _import
    safe["getattr"] = _guard(getattr, lambda name, rest: rest[0] if rest else refuse(name, rest))
    safe["hasattr"] = _guard(hasattr, lambda name, rest: False)
    safe["setattr"] = _guard(setattr, refuse)
    safe["delattr"] = _guard(delattr, refuse)
    return safe


def _describe(obj, _type=type, _str=str, _bytes=bytes, _repr=repr, _tname=_type_name):
    """repr of a str/bytes/int audit argument; only the type name otherwise (no program code)."""
    t = _type(obj)
    if t is _str or t is _bytes or t is int:
        return _repr(obj)[:200]
    return f"<{_tname(t)}>"


def _make_guard(report, root, gate, stdlib_files, *, _type=type, _str=str, _bytes=bytes,
                _len=len, _exit=os._exit, _readlink=os.readlink,
                _getcwd=os.getcwd, _getframe=sys._getframe,
                _describe=_describe, _ImportError=ImportError):
    """Audit hook for the child: on a forbidden event it reports and os._exit()s, never raises
    (the program could catch that); ``gate[0]`` lets the runner's own two exec() calls through.
    It uses only what is captured here (a program may patch builtins, ``os``, module globals)."""
    busy, writes = [False], [0]
    kill_events, kill_prefixes, stdlib_only = KILL_EVENTS, KILL_PREFIXES, STDLIB_ONLY_EVENTS
    deny_imports, max_writes, exit_forbidden = DENY_IMPORTS, MAX_WRITE_OPENS, EXIT_FORBIDDEN
    path_events = dict(PATH_EVENTS)
    creating = frozenset({"os.mkdir", "os.symlink", "os.link", "os.mkfifo", "os.mknod"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    root_prefix = root if root.endswith("/") else root + "/"

    def die(why):
        busy[0] = True
        report(False, None, "forbidden: " + why[:300])
        _exit(exit_forbidden)

    def resolve(path):
        """Absolute path with symlinks resolved, using only captured functions; None if odd."""
        t = _type(path)
        if t is _bytes:
            path = path.decode("utf-8", "surrogateescape")     # not os.fsdecode: patchable
        elif t is not _str:
            return None
        todo = (path if path.startswith("/") else _getcwd() + "/" + path).split("/")[::-1]
        parts, hops = [], 0
        while todo:
            p = todo.pop()
            if p == "..":
                parts = parts[:-1]
            elif p and p != ".":
                try:
                    target = _readlink("/" + "/".join(parts + [p]))
                except OSError:                 # not a symlink (or not there)
                    parts.append(p)
                    continue
                hops += 1
                if hops > 40:
                    return None
                if target.startswith("/"):
                    parts = []
                todo += target.split("/")[::-1]
        return "/" + "/".join(parts)

    def count_write():
        writes[0] += 1
        if writes[0] > max_writes:
            die(f"more than {max_writes} files created or opened for writing")

    def inside(path):
        p = resolve(path)
        return p is not None and (root == "/" or p == root or p.startswith(root_prefix))

    def hook(event, args):
        if busy[0]:
            return
        if event in kill_events or event.startswith(kill_prefixes):
            die(event)
        if event == "open":
            path, mode, flags = args
            if not inside(path):
                die(f"open of {_describe(path)} outside the job directory")
            if (flags or 0) & write_flags or (_type(mode) is _str and (
                    "w" in mode or "a" in mode or "x" in mode or "+" in mode)):
                count_write()
            return
        spec = path_events.get(event)
        if spec is not None:
            for i in spec[1]:
                if i < _len(args) and args[i] is not None:
                    die(f"{event} with dir_fd")
            for i in spec[0]:
                if i < _len(args) and not inside(args[i]):
                    die(f"{event} of {_describe(args[i])} outside the job directory")
            if event in creating:
                count_write()
            return
        if event == "import":
            name = args[0]
            top = name.partition(".")[0] if _type(name) is _str else ""
            if top in deny_imports:
                die(f"import of module {_describe(name)}")
            raise _ImportError(f"module {_describe(name)} is not available in the sandbox")
        if event in stdlib_only:
            if event == "exec" and gate[0]:
                gate[0] = 0
                return
            busy[0] = True
            try:
                fname = _getframe(1).f_code.co_filename
            finally:
                busy[0] = False
            if fname not in stdlib_files:
                detail = f" {_describe(args[1])}" if event.startswith("object.") else ""
                die(f"{event}{detail}")

    return hook


def _exception_text(e, _type=type, _str=str, _all=all, _plain=(str, int, float),
                    _builtin=frozenset(v for v in vars(builtins).values() if isinstance(v, type)
                                       and issubclass(v, BaseException)), _tname=_type_name):
    """'Name: message' of an exception without running program code (the message only for
    builtin exception classes whose args are plain str/int/float)."""
    t = _type(e)
    name = _tname(t)
    msg = ""
    if t in _builtin and _type(e.args) is tuple and _all(_type(a) in _plain for a in e.args):
        msg = _str(e)[:200]
    return f"{name}: {msg}" if msg else name


# Functions that act outside the process but fire no audit event in CPython 3.11; the server
# deletes them from os/posix/signal once, after start-up (children inherit the deletion).
UNAUDITED = {"os": ("mknod", "mkfifo", "pidfd_open"), "posix": ("mknod", "mkfifo", "pidfd_open"),
             "signal": ("pidfd_send_signal",), "_signal": ("pidfd_send_signal",)}


def _harden_server():
    """One-time preparation of the server, inherited by every child for free (work done in a
    child costs copy-on-write page faults, ~2.5 us each here): delete unaudited functions, give
    importlib's pure-Python path (which fires no "import" audit event) nothing to search --
    every allowed module is already loaded -- and point sys.stdout/stderr at a capped writer."""
    for mod_name, names in UNAUDITED.items():
        for name in names:
            with contextlib.suppress(AttributeError):     # not loaded, or not on this platform
                delattr(sys.modules.get(mod_name), name)
    sys.meta_path.clear()
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()
    sys.stdout = sys.stderr = _CappedWriter(MAX_OUTPUT_CHARS, os._exit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child_main(job, wfd, nonce, srv):
    """Body of a forked child: isolate, limit, run ``f(<args>)``, report.  Never returns."""
    _exit, _write = os._exit, os.write

    def report(ok, value, error):
        # nonce + 'T' + value | nonce + 'F' + error; str operations only (nothing patchable)
        data = (nonce + ("T" + value if ok else "F" + error)).encode("utf-8", "surrogatepass")
        while data:
            data = data[_write(3, data):]

    code = EXIT_INTERNAL
    try:
        os.setpgid(0, 0)
        for fd in (0, 1, 2):           # never the server's protocol pipes
            os.dup2(srv.devnull, fd)
        os.dup2(wfd, 3)                # the result pipe (a no-op when it is fd 3 already)
        os.closerange(4, 65536)
        if srv.drop:
            os.chown(job["dir"], NOBODY, NOBODY)
        if srv.chroot:
            os.chroot(job["dir"])
        os.chdir("/" if srv.chroot else job["dir"])
        if srv.drop:                   # also: no signals to other users' processes
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        cpu = int(job["t"]) + 1
        rs, mb = srv.resource, 1 << 20
        for lim, val in ((rs.RLIMIT_AS, DEFAULT_MEMORY_MB * mb), (rs.RLIMIT_CPU, cpu),
                         (rs.RLIMIT_FSIZE, DEFAULT_FILE_MB * mb), (rs.RLIMIT_NOFILE, 16),
                         (rs.RLIMIT_NPROC, 0), (rs.RLIMIT_CORE, 0)):
            rs.setrlimit(lim, (val, val + 1 if lim == rs.RLIMIT_CPU else val))
        signal.alarm(cpu + 1)          # dies on its own even if its server dies
        gate = [0]                     # lets the runner's own two exec() calls through the guard
        hook = _make_guard(report, "/" if srv.chroot else job["dir"], gate, srv.stdlib_files)
        report(*_run_program(job, gate, hook, srv))
        code = 0
    except BaseException as e:       # anything here is our failure, not the program's
        try:
            report(False, None, f"internal: sandbox child failed: {type(e).__name__}: {e}"[:300])
        except BaseException:
            pass
    finally:
        _exit(code)


def _run_program(job, gate, hook, srv, *, _callable=callable, _exec=exec, _eval=eval,
                 _literal_repr=_literal_repr, _exception_text=_exception_text,
                 _MemoryError=MemoryError, _SystemExit=SystemExit, _BaseException=BaseException):
    """Guard, execute, check the value; returns (ok, value_repr, error).  Runs in the child; after
    the program starts it uses only the references bound above (the program may patch builtins)."""
    prog, call = job["code"]
    g = {"__builtins__": srv.builtins, "__name__": "__main__"}
    gc_disable, mem_mb, max_chars = srv.gc.disable, DEFAULT_MEMORY_MB, MAX_VALUE_CHARS
    sys.addaudithook(hook)
    try:
        gate[0] = 1
        _exec(prog, g)
        f = g.get("f")
        if f is None or not _callable(f):
            return False, None, "no_function: the program does not define a callable f"
        gate[0] = 1
        value = _eval(call, g)
    except _MemoryError:
        return False, None, f"memory: MemoryError (address-space limit {mem_mb} MiB)"
    except _SystemExit:
        return False, None, "exit: the program raised SystemExit"
    except _BaseException as e:
        return False, None, "exception: " + _exception_text(e)
    gc_disable()                     # no __del__ of program objects while we inspect the value
    try:
        text, err = _literal_repr(value, max_chars)
    except _MemoryError:
        return False, None, "memory: MemoryError while checking the return value"
    if err:
        return False, None, err
    return True, text, None


# ---- Fork server (a fresh interpreter, see _Server.start) ------------------------------------
class _ServerState:
    """Settings of one fork server: the pool's (workers, dir, drop), then what the server found
    out (plain attributes; the child reads them)."""

    def __init__(self, cfg):
        import gc
        import resource
        self.__dict__.update(cfg)
        self.gc, self.resource = gc, resource
        self.dir = os.path.realpath(self.dir)
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.builtins = _safe_builtins(ALLOWED_IMPORTS, __import__)
        self.stdlib_files = _preload()
        self.chroot, self.drop = False, self.drop and os.geteuid() == 0
        if self.drop:
            self.chroot, self.drop = _probe_privileges(self)


def _preload():
    """Import the allowlisted modules and every codec, so children (chrooted, unprivileged) never
    need the file system; returns the set of their source files (trusted audit-event callers)."""
    import encodings
    import gc
    for name in PRELOAD_MODULES:
        with contextlib.suppress(ImportError):
            __import__(name)
    for fn in sorted(os.listdir(os.path.dirname(encodings.__file__))):
        if fn.endswith(".py") and fn != "__init__.py":
            with contextlib.suppress(Exception):  # platform-specific codecs (mbcs, oem)
                __import__("encodings." + fn[:-3])
    trusted = ALLOWED_IMPORTS | {"encodings"}
    files = {getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
             if name.partition(".")[0] in trusted}
    gc.collect()
    return frozenset(files - {None})


def _remove_tree(path):
    """rm -rf without following symlinks; fast path for an empty directory."""
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    entries = []
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
        with os.scandir(path) as it:
            entries = list(it)
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _probe_privileges(st):
    """(chroot works, uid drop works) here?  Tried once, in a throw-away child."""
    found = []
    for use_chroot in (True, False):
        d = os.path.join(st.dir, "probe")
        os.mkdir(d, 0o700)
        pid = os.fork()
        if pid == 0:
            try:
                os.chown(d, NOBODY, NOBODY)
                if use_chroot:
                    os.chroot(d)
                    os.chdir("/")
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        _remove_tree(d)
        found.append(os.waitstatus_to_exitcode(status) == 0)
    return found[0], found[0] or found[1]


def _child_result(buf, nonce, status, job):
    """(ok, value, error) of a finished child: its report behind the nonce, else why it ended."""
    code = os.waitstatus_to_exitcode(status)
    if buf and code in (0, EXIT_FORBIDDEN):
        text = buf.decode("utf-8", "replace")
        n = len(nonce)
        if text.startswith(nonce) and len(text) > n:
            if text[n] == "T" and len(text) - n - 1 <= MAX_VALUE_CHARS:
                return True, text[n + 1:], None
            if text[n] == "F":
                return False, None, text[n + 1:][:1000]
        return False, None, "internal: the child sent a malformed result (forgery attempt?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        err = f"crash: the process was killed by {name}"
        if -code in (signal.SIGXCPU, signal.SIGALRM, signal.SIGKILL):
            err = f"timeout: CPU/wall limit of {job['t']:g} s reached (killed by {name})"
    elif code == EXIT_OUTPUT:
        err = f"output: the program printed more than {MAX_OUTPUT_CHARS} characters"
    elif code == EXIT_FORBIDDEN:
        err = "forbidden: the audit guard stopped the program"
    else:
        err = f"exit: the program ended its process (exit code {code}) without returning"
    return False, None, err


def _serve(cfg):
    """Fork-server main loop: JSON-line jobs on stdin, a child per job (``workers`` at once),
    JSON-line answers on stdout as children finish: at EOF of their result pipe (exited, or
    closed it: then ended) or at their wall deadline."""
    import selectors
    st = _ServerState(cfg)
    sel = selectors.DefaultSelector()
    os.set_blocking(0, False)
    sel.register(0, selectors.EVENT_READ)
    out = sys.stdout.buffer
    pending = collections.deque()
    running = {}                     # result pipe fd -> [pid, job, deadline, nonce, buffer]
    cap = MAX_VALUE_CHARS * 4 + 4096  # bytes of a child's result kept at most
    inbuf, counter = b"", 0
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "drop": st.drop,
                          "chroot": st.chroot, "workers": st.workers}).encode() + b"\n")
    out.flush()
    _harden_server()
    st.gc.freeze()                   # keep the heap out of the collector: cheaper forks

    def answer(i, ok, value, error):
        out.write(json.dumps({"i": i, "ok": ok, "v": value, "e": error}).encode() + b"\n")

    def start(job):
        nonlocal counter
        try:                         # compiled here, before the fork: children get warm code
            prog = compile(job["p"], SANDBOX_FILENAME, "exec", dont_inherit=True)
            call = _parse_call_args(job["a"])
            if type(call) is not str:
                job["code"] = prog, compile(_ast.Expression(call), ARGS_FILENAME, "eval",
                                            dont_inherit=True)
        except Exception as e:       # SyntaxError, ValueError (NUL bytes), RecursionError, ...
            call = f"syntax: {type(e).__name__}: {e}"[:300]
        if type(call) is str:
            return answer(job["i"], False, None, call)
        counter += 1
        job["dir"] = os.path.join(st.dir, f"j{counter}")
        os.mkdir(job["dir"], 0o700)
        nonce = os.urandom(12).hex()
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child_main(job, wfd, nonce, st)       # never returns
        os.close(wfd)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        os.set_blocking(rfd, False)
        sel.register(rfd, selectors.EVENT_READ)
        running[rfd] = [pid, job, time.monotonic() + float(job["t"]), nonce, bytearray()]

    def finish(rfd, timed_out):
        pid, job, _, nonce, buf = running.pop(rfd)
        sel.unregister(rfd)
        os.close(rfd)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)   # the whole group; the leader is not reaped yet
        _, status = os.waitpid(pid, 0)
        _remove_tree(job["dir"])
        if timed_out:
            answer(job["i"], False, None, f"timeout: exceeded {job['t']:g} s wall time")
        else:
            answer(job["i"], *_child_result(buf, nonce, status, job))

    try:
        while True:
            while pending and len(running) < st.workers:
                start(pending.popleft())
            wait = None
            if running:
                wait = max(0.0, min(r[2] for r in running.values()) - time.monotonic())
            for key, _ in sel.select(wait):
                if key.fd == 0:
                    chunk = os.read(0, 1 << 20)
                    if not chunk:
                        return
                    inbuf += chunk
                    *lines, inbuf = inbuf.split(b"\n")
                    pending.extend(json.loads(line) for line in lines if line.strip())
                    continue
                chunk, buf = os.read(key.fd, 65536), running[key.fd][4]
                if not chunk:
                    finish(key.fd, False)
                elif len(buf) <= cap:    # read on regardless: a big result cannot block the child
                    buf += chunk
            now = time.monotonic()
            for rfd in [fd for fd, r in running.items() if r[2] <= now]:
                finish(rfd, True)
            out.flush()
    finally:
        sys.stderr = sys.__stderr__          # the capped writer would swallow a traceback
        for pid, job, *_ in running.values():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            _remove_tree(job["dir"])
        _remove_tree(st.dir)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(st.dir))    # the pool's dir, once both servers are gone


# ---- Caller side: server processes and the pool ----------------------------------------------
def _proc_sessions():
    """{pid: (ppid, session id)} of every process, read from /proc."""
    found = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        found[int(name)] = (int(fields[1]), int(fields[3]))
    return found


def _default_workers():
    """Children per server: $ZEROPLAY_VERIFIER_WORKERS, else the CPUs this process may use."""
    env = os.environ.get("ZEROPLAY_VERIFIER_WORKERS")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"verifier: ZEROPLAY_VERIFIER_WORKERS must be a positive integer, got {env!r}")
        return int(env)
    return len(os.sched_getaffinity(0))


def _default_tmp_dir():
    """$ZEROPLAY_VERIFIER_TMPDIR, else /dev/shm when writable (one mkdir+rmdir: ~20 us on tmpfs,
    ~3 ms on this machine's ext4 /tmp), else None (the system temp dir)."""
    env = os.environ.get("ZEROPLAY_VERIFIER_TMPDIR")
    if env:
        return env
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


# The server execs this module's code object, compiled by the caller and marshalled to a file
# (argv[1]): compiling ~1.5k lines in the server would leave megabytes of parser garbage in its
# heap, which every fork then copies (.pyc files may not exist: PYTHONDONTWRITEBYTECODE).
_BOOT = ("import sys, marshal\n"
         "with open(sys.argv[1], 'rb') as fh: code = marshal.loads(fh.read())\n"
         "v = type(sys)('zeroplay_verifier_server')\n"
         "v.__file__ = code.co_filename\n"
         "sys.modules[v.__name__] = v\n"
         "exec(code, v.__dict__)\n"
         "v._serve(v.json.loads(sys.argv[2]))\n")


class _Server:
    """One fork-server process (fixed hash seed) and its pipes."""

    def __init__(self, pool, index, seed):
        self.pool, self.index, self.seed = pool, index, seed
        self.proc, self.generation, self.info = None, 0, {}

    def start(self, code_path):
        """Start the process on the marshalled code in ``code_path`` (see _BOOT)."""
        import subprocess
        p = self.pool
        self.generation += 1
        self.dir = os.path.join(p.base_dir, f"s{self.index}-{self.generation}")
        os.mkdir(self.dir, 0o711)
        cfg = {"workers": p.workers, "dir": self.dir, "drop": p.drop_privileges}
        # Not -I: it implies -E, which ignores PYTHONHASHSEED.  -S: no site (its .pth files would
        # import ~100 modules, random and time among them, into every sandbox); -s: no user
        # site; -P: neither script directory nor cwd on sys.path; -B: no .pyc files.
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-s", "-P", "-B", "-c", _BOOT, code_path, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PYTHONHASHSEED": str(self.seed)},
            cwd=self.dir, start_new_session=True, close_fds=True)
        self.buf = b""

    def wait_ready(self, timeout=60.0):
        """Read the server's start-up report: one line, written at once and alone."""
        import selectors
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            line = self.proc.stdout.readline() if sel.select(timeout) else None
        if not line:
            self.stop()
            why = (f"did not start within {timeout:.0f} s" if line is None
                   else "exited during start-up (see its stderr above)")
            raise RuntimeError(f"verifier: sandbox server {why}")
        self.info = json.loads(line)
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stdin.fileno(), False)

    def stop(self, grace=0.0):
        """EOF on the server's stdin (it then kills its children and exits), ``grace`` seconds
        for that, then SIGKILL; kill what is left in its session, remove its directory."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):     # OSError (broken pipe), TimeoutExpired
            proc.stdin.close()
            proc.wait(grace)
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(5)
        for pid, (_, sid) in _proc_sessions().items():     # the dead server's leftovers
            if sid == proc.pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.stdout.close()
        _remove_tree(self.dir)


class Pool:
    """Two fork servers (hash seeds 0 and 1) running sandboxed jobs; thread-safe; started on
    first use, stopped at close() or interpreter exit.
    workers: children per server at once (default: CPUs available, $ZEROPLAY_VERIFIER_WORKERS).
    timeout: default wall seconds per execution.
    drop_privileges: chroot + uid 65534 when running as root (default: whenever root)."""

    def __init__(self, workers=None, timeout=DEFAULT_TIMEOUT, drop_privileges=None):
        if workers is not None and int(workers) < 1:
            raise ValueError(f"verifier: workers must be >= 1, got {workers}")
        self.workers = int(workers) if workers else _default_workers()
        self.timeout = _check_timeout(timeout)
        self.drop_privileges = (os.geteuid() == 0) if drop_privileges is None else bool(drop_privileges)
        self.hash_seeds = (0, 1)
        self.base_dir, self._servers, self._next_id = None, None, 0
        self._owner, self._lock = os.getpid(), _thread.allocate_lock()

    # -- life cycle --------------------------------------------------------------------------
    def start(self):
        """Start both servers now (otherwise the first job does)."""
        if self._owner != os.getpid():        # inherited through fork(): start our own servers
            self._servers, self._lock, self._owner = None, _thread.allocate_lock(), os.getpid()
        with self._lock:
            self._ensure_started()
        return self

    def _ensure_started(self):
        if self._servers is None:
            import atexit
            import tempfile
            self.base_dir = tempfile.mkdtemp(prefix="zeroplay-verifier-", dir=_default_tmp_dir())
            os.chmod(self.base_dir, 0o711)
            self._servers = [_Server(self, i, s) for i, s in enumerate(self.hash_seeds)]
            atexit.register(self.close)
        dead = [s for s in self._servers if s.proc is None or s.proc.poll() is not None]
        if dead:
            self._boot(dead)

    def _boot(self, servers):
        """(Re)start servers: stop what is left of each, then start them on this module's code,
        in a file removed once they have read it (a killed caller leaves nothing behind)."""
        import marshal
        path, code_path = os.path.abspath(__file__), os.path.join(self.base_dir, "server.marshal")
        with open(path, encoding="utf-8") as fh:
            code = compile(fh.read(), path, "exec", dont_inherit=True)
        with open(code_path, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as fh:
            fh.write(marshal.dumps(code))
        try:
            for s in servers:
                s.stop()
                s.start(code_path)
            for s in servers:
                s.wait_ready()
        finally:
            os.unlink(code_path)

    def close(self):
        """Stop the servers, kill any leftover process, remove the temporary directories."""
        import atexit
        atexit.unregister(self.close)
        if self._servers is None or self._owner != os.getpid():
            self._servers = None
            return
        with self._lock:
            for s in self._servers:
                s.stop(grace=3.0)
            self._servers = None
            _remove_tree(self.base_dir)

    def server_pids(self):
        return [s.proc.pid for s in self._servers]

    def server_info(self):
        """Each server's start-up report (pid, drop, chroot, workers)."""
        return [s.info for s in self._servers]

    # -- execution ---------------------------------------------------------------------------
    def _execute(self, tasks):
        """tasks: list of (server_index, program, args, timeout) -> list[Result], in order.  The
        jobs of a server that dies or stops answering run once more, on its replacement."""
        import selectors
        results, retried = [None] * len(tasks), set()
        if not tasks:
            return results
        self.start()
        with self._lock:
            self._ensure_started()
            per = [{} for _ in self._servers]          # request id -> task index
            outbuf = [bytearray() for _ in self._servers]
            progress = [time.monotonic()] * len(self._servers)
            patience = max(t[3] for t in tasks) + 10.0

            def enqueue(k):
                si, program, args, timeout = tasks[k]
                self._next_id += 1
                per[si][self._next_id] = k
                outbuf[si] += json.dumps({"i": self._next_id, "p": program, "a": args,
                                          "t": timeout}).encode() + b"\n"

            def server_failed(si, why):
                lost = list(per[si].values())
                per[si].clear()
                outbuf[si].clear()
                self._boot([self._servers[si]])
                progress[si] = time.monotonic()
                for k in lost:
                    if k in retried:
                        results[k] = _fail("internal", f"sandbox server {why} twice while "
                                           "running this job")
                    else:
                        retried.add(k)
                        enqueue(k)

            for k in range(len(tasks)):
                enqueue(k)
            while any(per):
                with selectors.DefaultSelector() as sel:
                    for si, s in enumerate(self._servers):
                        if per[si]:
                            sel.register(s.proc.stdout, selectors.EVENT_READ, si)
                        if outbuf[si]:
                            sel.register(s.proc.stdin, selectors.EVENT_WRITE, si)
                    events = sel.select(1.0)
                for key, mask in events:
                    si, s = key.data, self._servers[key.data]
                    try:
                        if mask & selectors.EVENT_WRITE:
                            del outbuf[si][:os.write(key.fd, outbuf[si][:1 << 16])]
                            continue
                        chunk = os.read(key.fd, 1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        server_failed(si, "died")
                        break           # the remaining events are stale (they come again if not)
                    s.buf += chunk
                    *lines, s.buf = s.buf.split(b"\n")
                    for msg in map(json.loads, lines):
                        k = per[si].pop(msg["i"])
                        results[k] = Result(bool(msg["ok"]), msg["v"], msg["e"])
                    progress[si] = time.monotonic()
                now = time.monotonic()
                for si in range(len(self._servers)):
                    if per[si] and now - progress[si] > patience:
                        server_failed(si, "stopped responding")
        return results

    def _dispatch(self, jobs, timeout, both):
        """Static filter, then execution of the jobs that pass it: on both servers when ``both``,
        else on one chosen by a checksum of the job (same job, same hash seed).  Per job, in
        order: the filter's failure Result, or the list of its execution Results."""
        import zlib
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        out, tasks = [], []
        for j in jobs:
            if not (isinstance(j, (tuple, list)) and len(j) == 2):
                raise ValueError(f"verifier: a job must be a (program, args) pair, got {j!r:.80}")
            program, args = j
            if err := _check_job(program, args):
                out.append(Result(False, None, err))
                continue
            key = f"{program}\0{args}".encode("utf-8", "surrogatepass")
            servers = (0, 1) if both else (zlib.crc32(key) % 2,)
            out.append(len(servers))
            tasks += [(si, program, args, timeout) for si in servers]
        raw = iter(self._execute(tasks))
        return [r if isinstance(r, Result) else [next(raw) for _ in range(r)] for r in out]

    def run_many(self, jobs, timeout=None):
        """Execute ``f(<args>)`` for each (program, args) once; list[Result] in order."""
        return [r if isinstance(r, Result) else r[0] for r in self._dispatch(jobs, timeout, False)]

    def validate_many(self, jobs, timeout=None):
        """Validate each (program, args): filter, then one execution on each server (different
        hash seeds).  Ok when both succeed with the same value: equal reprs, or reprs that parse
        back (ast.literal_eval) to ``==`` values; the value is then the first server's repr (the
        gold output).  Otherwise the failed execution's Result (the first server's when both
        failed), or "nondeterministic"."""
        results = []
        for r in self._dispatch(jobs, timeout, True):
            if isinstance(r, list):
                a, b = r
                # on values: a set (or a dict built from one) lists its items in another order
                # under another hash seed; list(set(...)), id() and hash() values really differ
                if a.ok and b.ok and a.value != b.value and not _same_value(
                        _literal(a.value), _literal(b.value)):
                    r = _fail("nondeterministic", "outputs differ between two executions "
                              f"(hash seeds {self.hash_seeds[0]} and {self.hash_seeds[1]}): "
                              f"{_short(a.value)} vs {_short(b.value)}")
                else:
                    r = b if a.ok and not b.ok else a
            results.append(r)
        return results


def _check_timeout(timeout):
    if not 0 < float(timeout) <= 3600:
        raise ValueError(f"verifier: timeout must be in (0, 3600] seconds, got {timeout}")
    return float(timeout)


def _short(text, n=60):
    return text if len(text) <= n else text[: n - 3] + "..."


_DEFAULT = {"pool": None, "lock": _thread.allocate_lock()}


def _default_pool():
    """The module-level pool used by the functions below (created lazily)."""
    with _DEFAULT["lock"]:
        if _DEFAULT["pool"] is None:
            _DEFAULT["pool"] = Pool()
        return _DEFAULT["pool"]


# ---- Public API: execution and validation ----------------------------------------------------
def run_many(jobs, timeout=None):
    """``Pool.run_many`` on the default pool: list[Result] in order (value: repr of the return)."""
    return _default_pool().run_many(jobs, timeout)


def validate_many(jobs, timeout=None):
    """Validate proposed (program, input) pairs (AZR sec. 3.2), as ``Pool.validate_many``.
    AZR calls f twice in one process (missing hash-seed and id() non-determinism) and truncates
    outputs to 400 characters; we reject values over MAX_VALUE_CHARS or not Python literals."""
    return _default_pool().validate_many(jobs, timeout)


# ---- AZR checks (Absolute Zero, sec. 3.2-3.3) ------------------------------------------------
_NOT_LITERAL = object()


def _literal(text):
    """ast.literal_eval of a stripped answer/gold text, or _NOT_LITERAL (never eval)."""
    import ast
    if not isinstance(text, str):
        return _NOT_LITERAL
    text = text.strip()
    if not text or len(text) > 200_000:
        return _NOT_LITERAL
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _same_value(a, b):
    if a is _NOT_LITERAL or b is _NOT_LITERAL:
        return False
    try:
        return bool(a == b)
    except (RecursionError, MemoryError, TypeError, ValueError):
        return False


def check_deduction(gold_output, answer):
    """Deduction (AZR sec. 3.3): the predicted output equals the gold output as Python values.
    AZR evaluates ``eval(gold) == eval(answer)`` in the trainer; we use ``ast.literal_eval`` on
    both (never eval), so a non-literal answer is simply wrong.  ``==`` semantics as in AZR:
    1 == 1.0 == True, {1, 2} == {2, 1}."""
    return _same_value(_literal(gold_output), _literal(answer))


def check_abduction_many(jobs, timeout=None):
    """Abduction: for each (program, gold_output, answer_args), ``f(<answer_args>)`` run in the
    sandbox equals the gold output as in check_deduction (any input that produces it is correct);
    bools in order."""
    jobs = list(jobs)
    res = run_many([(p, a) for p, _, a in jobs], timeout)
    return [r.ok and _same_value(_literal(r.value), _literal(g)) for r, (_, g, _) in zip(res, jobs)]


def check_induction_many(jobs, timeout=None):
    """Induction (AZR sec. 3.3, binary reward): for each (candidate_program, pairs), the candidate
    reproduces every held-out (args, output) pair, each checked as in check_abduction_many; bools
    in order (False for no pairs)."""
    jobs = [(p, list(pairs)) for p, pairs in jobs]
    flat = [(p, out, a) for p, pairs in jobs for a, out in pairs]
    ok = iter(check_abduction_many(flat, timeout))
    return [bool(pairs) and all([next(ok) for _ in pairs]) for _, pairs in jobs]

