"""Tests of verifier.py: the static filter, the sandbox against hostile programs (with and without
the static filter, with and without the uid drop) and the AZR checks."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import verifier as V  # noqa: E402

ROOT_USER = os.geteuid() == 0
ESCAPE = f"/tmp/zeroplay_escape_{os.getpid()}"       # no program may create this
BYPASS = "import contextlib, typing\nos = contextlib.os\nsys = typing.sys\n"   # filter-free routes


# ----------------------------------------------------------------------------------------------
# fixtures and helpers
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def no_filter():
    """The static filter switched off (every job passes it), to exercise the run-time guard."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "_check_job", lambda program, args: None)
        yield


def server_pids(p):
    """Process ids of a started pool's two servers."""
    return p.server_pids()


def respawns(p):
    """How often the pool's servers were restarted after their first start."""
    return sum(s.generation - 1 for s in p._servers)


def leftover_processes(p):
    """Processes in the pool's server sessions other than the servers (should be [] when idle)."""
    sids = set(server_pids(p))
    return sorted(q for q, (_, sid) in V._proc_sessions().items() if sid in sids and q not in sids)


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """A world-writable directory holding one file, which programs try to write into/delete."""
    d = tmp_path_factory.mktemp("victim")
    d.chmod(0o777)
    (d / "keep.txt").write_text("keep")
    return d


@pytest.fixture(scope="module")
def pool():
    """The normal sandbox (uid drop + chroot when root)."""
    p = V.Pool(workers=2, timeout=2.0)
    p.start()
    yield p
    p.close()


@pytest.fixture(scope="module")
def guard_pool():
    """No uid drop and no chroot even as root: the audit hook and rlimits are the whole guard."""
    p = V.Pool(workers=2, timeout=2.0, drop_privileges=False)
    p.start()
    yield p
    p.close()


NORMAL = [
    ("def f(x):\n    return x * 3 + 1", "4", "13"),
    ("def f(s, k):\n    return s[k:] + s[:k]", "'abcdef', 2", "'cdefab'"),
    ("def f(xs):\n    return sorted(xs, reverse=True)", "[3, 1, 2]", "[3, 2, 1]"),
    ("from collections import Counter\ndef f(s):\n    return sorted(Counter(s).items())",
     "'abca'", "[('a', 2), ('b', 1), ('c', 1)]"),
    ("import math\ndef f(n):\n    return math.factorial(n)", "6", "720"),
    ("def f(d):\n    return {k: v * 2 for k, v in d.items()}", "dict(did=0, x=2)", "{'did': 0, 'x': 4}"),
    ("def f(g, n):\n    return [g(i) for i in range(n)]", "lambda i: i * i, 4", "[0, 1, 4, 9]"),
    ("def f(r):\n    return sum(r)", "range(5)", "10"),
    ("def f(input):\n    return input + 1", "1", "2"),
    ("def f(x):\n    return (x, None, True, 1.5, b'z')", "'a'", "('a', None, True, 1.5, b'z')"),
    ("def f(s):\n    return s.encode('shift_jis')", "'\u3042'", "b'\\x82\\xa0'"),
    ("from typing import List\ndef f(xs: List[int]) -> int:\n    return max(xs)", "[4, 9, 2]", "9"),
    ("from collections import namedtuple\nP = namedtuple('P', 'a b')\n"
     "def f(x):\n    p = P(x, 2)\n    return p.a + p.b", "5", "7"),
    ("import functools\n@functools.lru_cache(None)\ndef f(n):\n    return n if n < 2 else f(n-1) + f(n-2)",
     "30", "832040"),
    ("class Acc:\n    def __init__(self):\n        super().__init__()\n        self.t = 0\n"
     "def f(xs):\n    a = Acc()\n    for x in xs:\n        a.t += x\n    print(a.t)\n    return a.t",
     "[1, 2, 3]", "6"),
    ("import re\ndef f(s):\n    return re.findall(r'\\d+', s)", "'a1b22c333'", "['1', '22', '333']"),
    ("def f(x):\n    return {1, 2, 3}", "0", "{1, 2, 3}"),
    ("def f(x):\n    with open('local.txt', 'w') as fh:\n        fh.write('hi')\n    return x",
     "1", None),                                           # open() is banned by the filter
]


def _normal_ok(results):
    for (prog, args, want), r in zip(NORMAL, results):
        if want is None:
            assert not r.ok and r.kind == "banned", (prog, r)
        else:
            assert r.ok and r.value == want, (prog, args, r)


# ----------------------------------------------------------------------------------------------
# hostile programs
# ----------------------------------------------------------------------------------------------
def hostile_programs(victim):
    """(name, program, args, allowed kinds, skip static filter).  Kind None means 'ok'; kinds
    that depend on the layer (chroot turns 'forbidden' into a harmless in-jail action) list both."""
    v = str(victim)
    return [
        # --- the static filter stops these (named rule) ---
        ("os_system_import", "import os\ndef f(x):\n    os.system('touch " + ESCAPE + "')\n    return x",
         "1", {"banned"}, False),
        ("os_system_from_import", "from os import system\ndef f(x):\n    return system('id')", "1", {"banned"}, False),
        ("dunder_import", "def f(x):\n    return __import__('os').system('id')", "1", {"banned"}, False),
        ("importlib_route", "import importlib\ndef f(x):\n    return importlib.import_module('os')", "1", {"banned"}, False),
        ("builtins_getattr", "def f(x):\n    return getattr(__builtins__, 'open')", "1", {"banned"}, False),
        ("subclass_walk", "def f(x):\n    return ().__class__.__base__.__subclasses__()", "1", {"banned"}, False),
        ("subprocess_import", "import subprocess\ndef f(x):\n    return subprocess.run(['id'])", "1", {"banned"}, False),
        ("socket_import", "import socket\ndef f(x):\n    return socket.socket()", "1", {"banned"}, False),
        ("ctypes_import", "import ctypes\ndef f(x):\n    return 1", "1", {"banned"}, False),
        ("open_for_write", f"def f(x):\n    open('{v}/w.txt', 'w').write('x')\n    return x", "1", {"banned"}, False),
        ("eval_call", "def f(x):\n    return eval('1+1')", "1", {"banned"}, False),
        ("sys_exit_import", "import sys\ndef f(x):\n    sys.exit(0)", "1", {"banned"}, False),
        ("environ_import", "import os\ndef f(x):\n    return dict(os.environ)", "1", {"banned"}, False),
        ("args_injection", "def f(x):\n    return x", "1) or (open('p', 'w')", {"args"}, False),
        # --- run-time failures of filtered programs ---
        ("infinite_loop", "def f(x):\n    while True:\n        x += 1", "1", {"timeout"}, False),
        ("deep_recursion", "def f(x):\n    return f(x + 1)", "1", {"exception"}, False),
        ("memory_bomb", "def f(x):\n    return [0] * (10 ** 10)", "1", {"memory"}, False),
        ("memory_growth", "def f(x):\n    a = []\n    while True:\n        a.append(bytes(10 ** 8))",
         "1", {"memory"}, False),
        ("huge_output", "def f(x):\n    while True:\n        print('x' * 10000)", "1", {"output"}, False),
        ("raise_systemexit", "def f(x):\n    raise SystemExit(3)", "1", {"exit"}, False),
        ("exception", "def f(x):\n    raise ValueError('boom')", "1", {"exception"}, False),
        ("id_nondeterminism", "def f(x):\n    return id(object())", "1", {"nondeterministic"}, False),
        ("hash_randomisation", "def f(x):\n    return hash('zeroplay')", "1", {"nondeterministic"}, False),
        ("set_order", "def f(x):\n    return list({str(i) for i in range(30)})", "1", {"nondeterministic"}, False),
        ("object_returned", "def f(x):\n    return object()", "1", {"value"}, False),
        ("repr_never_runs", "class A:\n    def __repr__(self):\n        while True:\n            pass\n"
         "def f(x):\n    return [A()]", "1", {"value"}, False),
        ("int_subclass_repr", "class I(int):\n    def __repr__(self):\n        return 'evil'\n"
         "def f(x):\n    return I(3)", "1", {"value"}, False),
        ("lambda_returned", "def f(x):\n    return lambda: x", "1", {"value"}, False),
        ("generator_returned", "def f(x):\n    yield x", "1", {"value"}, False),
        ("gigantic_string", "def f(x):\n    return 'x' * 10 ** 7", "1", {"value"}, False),
        ("gigantic_int", "def f(x):\n    return 10 ** 100000", "1", {"value"}, False),
        ("deep_nesting", "def f(x):\n    for _ in range(1000):\n        x = [x]\n    return x", "1", {"value"}, False),
        ("self_reference", "def f(x):\n    a = [1]\n    a.append(a)\n    return a", "1", {"value"}, False),
        ("nan_returned", "def f(x):\n    return float('nan')", "1", {"value"}, False),
        # --- the static filter bypassed: the run-time guard alone must hold ---
        ("g_os_system", BYPASS + f"def f(x):\n    os.system('touch {ESCAPE}')\n    return 1", "1", {"forbidden"}, True),
        ("g_subclass_walk_system", "def f(x):\n    for c in ().__class__.__base__.__subclasses__():\n"
         "        if c.__name__ == '_wrap_close':\n"
         f"            return c.__init__.__globals__['system']('touch {ESCAPE}')\n    return 0",
         "1", {"forbidden"}, True),
        ("g_fork", BYPASS + "def f(x):\n    return os.fork()", "1", {"forbidden"}, True),
        ("g_fork_bomb", BYPASS + "def f(x):\n    while True:\n        try:\n            os.fork()\n"
         "        except BaseException:\n            pass", "1", {"forbidden"}, True),
        ("g_posix_spawn", BYPASS + f"def f(x):\n    return os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {ESCAPE}'], {{}})",
         "1", {"forbidden"}, True),
        ("g_subprocess_importlib", BYPASS + "def f(x):\n    sp = sys.modules['importlib'].import_module('subprocess')\n"
         f"    return sp.run(['touch', '{ESCAPE}']).returncode", "1", {"forbidden", "exception"}, True),
        ("g_popen", BYPASS + f"def f(x):\n    return os.popen('touch {ESCAPE}').read()", "1", {"forbidden"}, True),
        ("g_socket", BYPASS + "def f(x):\n    s = sys.modules['importlib'].import_module('socket')\n"
         "    return str(s.socket())", "1", {"forbidden", "exception"}, True),
        ("g_ctypes", BYPASS + "def f(x):\n    sys.modules['importlib'].import_module('ctypes')\n    return 1",
         "1", {"forbidden", "exception"}, True),
        ("g_write_absolute", BYPASS + f"def f(x):\n    fd = os.open('{v}/abs.txt', os.O_WRONLY | os.O_CREAT)\n    return fd",
         "1", {"forbidden", "exception"}, True),
        ("g_write_io_open", BYPASS + f"def f(x):\n    sys.modules['io'].open('{ESCAPE}', 'w').write('x')\n    return 1",
         "1", {"forbidden", "exception"}, True),
        ("g_write_parent_relative", BYPASS + "def f(x):\n    fh = sys.modules['io'].open('../../../escape.txt', 'w')\n"
         "    fh.write('x')\n    return 1", "1", {"forbidden", None}, True),
        ("g_write_inside_job_dir", BYPASS + "def f(x):\n    io = sys.modules['io']\n"
         "    with io.open('ok.txt', 'w') as fh:\n        fh.write('hi')\n"
         "    with io.open('ok.txt') as fh:\n        return fh.read()", "1", {None}, True),
        ("g_delete_file", BYPASS + f"def f(x):\n    os.remove('{v}/keep.txt')\n    return 1", "1", {"forbidden", "exception"}, True),
        ("g_rename_file", BYPASS + f"def f(x):\n    os.rename('{v}/keep.txt', 'stolen.txt')\n    return 1",
         "1", {"forbidden", "exception"}, True),
        ("g_symlink_escape", BYPASS + f"def f(x):\n    os.symlink('{v}', 'link')\n"
         "    sys.modules['io'].open('link/sym.txt', 'w').write('x')\n    return 1", "1", {"forbidden", "exception"}, True),
        ("g_dirfd_escape", BYPASS + f"def f(x):\n    d = os.open('{v}', os.O_RDONLY)\n"
         "    return os.open('dirfd.txt', os.O_WRONLY | os.O_CREAT, dir_fd=d)", "1", {"forbidden", "exception"}, True),
        ("g_chdir_then_write", BYPASS + f"def f(x):\n    os.chdir('{v}')\n"
         "    sys.modules['io'].open('chdir.txt', 'w').write('x')\n    return 1", "1", {"forbidden", "exception"}, True),
        ("g_mknod_outside", BYPASS + f"def f(x):\n    os.mknod('{v}/node')\n    return 1", "1", {"exception"}, True),
        ("g_many_files", BYPASS + "def f(x):\n    for i in range(100):\n"
         "        sys.modules['io'].open(f'f{i}', 'w').close()\n    return 1", "1", {"forbidden"}, True),
        ("g_read_outside", BYPASS + "def f(x):\n    return sys.modules['io'].open('/etc/hostname').read()",
         "1", {"forbidden", "exception"}, True),
        ("g_kill_parent", BYPASS + "def f(x):\n    os.kill(os.getppid(), 9)\n    return 1", "1", {"forbidden"}, True),
        ("g_killpg", BYPASS + "def f(x):\n    os.killpg(os.getpgid(os.getppid()), 9)\n    return 1", "1", {"forbidden"}, True),
        ("g_os_exit", BYPASS + "def f(x):\n    os._exit(0)", "1", {"exit"}, True),
        ("g_sys_exit", BYPASS + "def f(x):\n    sys.exit(0)", "1", {"exit"}, True),
        ("g_environ", BYPASS + "def f(x):\n    return dict(os.environ)", "1", {"nondeterministic"}, True),
        ("g_traceback_frame", "def f(x):\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n"
         "        return str(e.__traceback__.tb_frame.f_back.f_locals)", "1", {"forbidden"}, True),
        ("g_getframe", BYPASS + "def f(x):\n    return str(sys._getframe(1).f_locals)", "1", {"forbidden"}, True),
        ("g_gc_objects", BYPASS + "def f(x):\n    return len(sys.modules['gc'].get_objects())", "1", {"forbidden"}, True),
        ("g_code_object", "def f(x):\n    return f.__code__.co_code", "1", {"forbidden"}, True),
        ("g_exec", BYPASS + "def f(x):\n    return sys.modules['builtins'].eval('1+1')", "1", {"forbidden"}, True),
        ("g_setrlimit", BYPASS + "def f(x):\n    r = sys.modules['resource']\n"
         "    r.setrlimit(r.RLIMIT_AS, (-1, -1))\n    return 1", "1", {"forbidden"}, True),
        ("g_sleep_without_cpu", BYPASS + "def f(x):\n    return sys.modules['select'].select([], [], [], 100)",
         "1", {"timeout"}, True),
        ("g_cancel_alarm_spin", BYPASS + "def f(x):\n    sys.modules['signal'].alarm(0)\n    while True:\n        pass",
         "1", {"timeout"}, True),
        ("g_forge_result", BYPASS + "def f(x):\n    os.write(3, b'T42')\n    os._exit(0)", "1", {"internal"}, True),
        ("g_scribble_fds", BYPASS + "def f(x):\n    for fd in range(64):\n        try:\n"
         "            os.write(fd, b'{\"i\": 1, \"ok\": true, \"v\": \"1\", \"e\": null}\\n')\n"
         "        except OSError:\n            pass\n    return 5", "1", {"internal"}, True),   # fd 3: own result
        ("g_close_result_pipe", BYPASS + "def f(x):\n    os.close(3)\n    while True:\n        pass",
         "1", {"timeout"}, True),                        # ended at once: its result pipe's EOF
        ("g_patch_builtins", "import contextlib\ndef f(x):\n    b = contextlib.__dict__['__builtins__']\n"
         "    b['repr'] = lambda o: '42'\n    b['type'] = lambda o: list\n    b['len'] = lambda o: 0\n"
         "    return [7]", "1", {None}, True),
        ("g_patch_builtin_types", "import contextlib\nclass Evil:\n    def __repr__(self):\n        return '42'\n"
         "    def bit_length(self):\n        return 1\n"
         "def f(x):\n    b = contextlib.__dict__['__builtins__']\n    b['int'] = Evil\n    b['str'] = Evil\n"
         "    return Evil()", "1", {"value"}, True),
        ("g_patch_os_write", BYPASS + "def f(x):\n    os.write = lambda fd, data: os.close(fd)\n    os._exit = None\n"
         "    return [8]", "1", {None}, True),
        ("g_mkdir_flood", BYPASS + "def f(x):\n    for i in range(10 ** 6):\n        os.mkdir(f'd{i}')\n    return 1",
         "1", {"forbidden"}, True),
        ("g_thread", BYPASS + "def f(x):\n    sys.modules['_thread'].start_new_thread(lambda: None, ())\n    return 1",
         "1", {"exception", None}, True),
    ]


def _run_hostile(p, victim):
    cases = hostile_programs(victim)
    plain = [(c[1], c[2]) for c in cases if not c[4]]
    unsafe = [(c[1], c[2]) for c in cases if c[4]]
    t0 = time.monotonic()
    res = iter(p.validate_many(plain, timeout=2.0))
    with no_filter():
        res_u = iter(p.validate_many(unsafe, timeout=2.0))
    out = {c[0]: (next(res_u) if c[4] else next(res)) for c in cases}
    return out, time.monotonic() - t0


@pytest.fixture(scope="module")
def hostile_results(pool, guard_pool, victim):
    """Every hostile program through both pools; then the state checks run once."""
    pids = {"pool": server_pids(pool), "guard": server_pids(guard_pool)}
    out = {"pool": _run_hostile(pool, victim)[0]}
    if ROOT_USER:
        out["guard"] = _run_hostile(guard_pool, victim)[0]
    return out, pids


HOSTILE_NAMES = [c[0] for c in hostile_programs(Path("/nonexistent"))]


def test_at_least_25_hostile_programs():
    assert len(HOSTILE_NAMES) >= 25 and len(set(HOSTILE_NAMES)) == len(HOSTILE_NAMES)


@pytest.mark.parametrize("layer", ["pool", "guard"])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_program_named_failure(hostile_results, victim, name, layer):
    if layer not in hostile_results[0]:
        pytest.skip("the no-uid-drop layer differs from the default only when running as root")
    case = next(c for c in hostile_programs(victim) if c[0] == name)
    r = hostile_results[0][layer][name]
    assert r.kind in case[3], f"{name} ({layer}): got {r}"
    if r.kind is not None:
        assert not r.ok and r.value is None and ":" in r.error and len(r.error) > len(r.kind) + 3
    elif name in OK_VALUES:
        assert r.value == OK_VALUES[name], f"{name} ({layer}): got {r}"


# what the programs that may succeed must return (patching builtins/os must not change it)
OK_VALUES = {"g_write_inside_job_dir": "'hi'", "g_patch_builtins": "[7]", "g_patch_os_write": "[8]",
             "g_write_parent_relative": "1", "g_thread": "1"}


def test_hostile_batch_leaves_no_trace(hostile_results, pool, guard_pool, victim):
    _, pids = hostile_results
    # the test process and the servers survived (no respawn needed), nothing left running
    assert server_pids(pool) == pids["pool"] and server_pids(guard_pool) == pids["guard"]
    assert respawns(pool) == 0 and respawns(guard_pool) == 0
    for p in (pool, guard_pool):
        for pid in server_pids(p):
            assert V._proc_sessions()[pid][0] == os.getpid()
        assert leftover_processes(p) == []
        # every job directory was removed; only the (empty) server directories remain
        for d in os.listdir(p.base_dir):
            if os.path.isdir(os.path.join(p.base_dir, d)):
                assert os.listdir(os.path.join(p.base_dir, d)) == [], d
    # no file appeared outside the job directories; the victim file is intact
    assert sorted(os.listdir(victim)) == ["keep.txt"] and (victim / "keep.txt").read_text() == "keep"
    assert not os.path.exists(ESCAPE)
    assert not any(n.startswith("escape") for n in os.listdir("/"))
    # a normal batch right afterwards gives the right answers, on both pools
    for p in (pool, guard_pool):
        _normal_ok(p.validate_many([(a, b) for a, b, _ in NORMAL]))


def test_environment_is_not_leaked(pool):
    os.environ["ZEROPLAY_SECRET_TEST"] = "s3cret"
    try:
        p = V.Pool(workers=1)
        with no_filter():
            r = p.run_many([(BYPASS + "def f(x):\n    return sorted(os.environ)", "1")])[0]
        p.close()
    finally:
        del os.environ["ZEROPLAY_SECRET_TEST"]
    # PYTHONHASHSEED, plus LC_CTYPE where Python coerces a C locale (PEP 538)
    assert r.ok and set(eval(r.value)) <= {"PYTHONHASHSEED", "LC_CTYPE"}, r


def test_uid_drop_and_chroot_when_root(pool):
    info = pool.server_info()                   # each server's start-up report
    if not ROOT_USER:
        assert not any(i["drop"] for i in info)
        return
    assert all(i["drop"] for i in info)
    with no_filter():
        r = pool.run_many([(BYPASS + "def f(x):\n    return [os.getuid(), os.getcwd(), "
                            "sorted(os.listdir('/'))]", "1")])[0]
    assert r.ok and eval(r.value)[0] == 65534 and eval(r.value)[1] == "/", r


def test_dead_server_is_respawned(pool):
    before = respawns(pool)
    pid = server_pids(pool)[0]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _normal_ok(pool.validate_many([(a, b) for a, b, _ in NORMAL]))
    assert respawns(pool) == before + 1 and server_pids(pool)[0] != pid
    assert leftover_processes(pool) == []


def test_close_removes_everything():
    p = V.Pool(workers=1)
    assert p.run_many([("def f(x):\n    return x", "3")])[0].value == "3"
    base, pids = p.base_dir, server_pids(p)
    p.close()
    assert not os.path.exists(base)
    for pid in pids:
        assert pid not in V._proc_sessions()


def test_import_is_light_and_servers_are_lazy():
    code = ("import sys, verifier; print(sorted(m for m in ('torch', 'sympy', 'numpy', 'subprocess') "
            "if m in sys.modules)); print(verifier._DEFAULT['pool'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["[]", "None"], out


def test_module_level_api(monkeypatch):
    """The module-level functions run on the lazily made default pool."""
    monkeypatch.setenv("ZEROPLAY_VERIFIER_WORKERS", "1")
    monkeypatch.setitem(V._DEFAULT, "pool", None)
    try:
        assert V.run_many([("def f(a, b=2):\n    return a ** b", "3")]) == \
            [V.Result(True, "9", None)]
        assert V.validate_many([("def f(x):\n    return x[::-1]", "'abc'")]) == \
            [V.Result(True, "'cba'", None)]
        assert [r.value for r in V.run_many([("def f(x):\n    return x + 1", str(i)) for i in range(5)])] == \
            ["1", "2", "3", "4", "5"]
        rs = V.validate_many([("def f(x):\n    return -x", "2"), ("def g(x):\n    return x", "1")])
        assert rs[0].value == "-2" and rs[1].kind == "no_function"
        assert V._DEFAULT["pool"].workers == 1
    finally:
        if V._DEFAULT["pool"] is not None:
            V._DEFAULT["pool"].close()
    with pytest.raises(ValueError, match="workers"):
        V.Pool(workers=0)
    with pytest.raises(ValueError, match="pair"):
        V.run_many(["def f(x): return x"])


def test_determinism_is_judged_on_values(pool):
    """A set (or a dict built from one) whose repr order differs between the two hash seeds is
    valid, with the first server's repr as gold; a list built from a set still is not."""
    words = "'the quick brown fox jumps over the lazy dog'"
    cases = [("def f(s):\n    return set(s.split())", words, None),
             ("def f(s):\n    return {w: len(w) for w in set(s.split())}", words, None),
             ("def f(x):\n    return list({str(i) for i in range(30)})", "1", "nondeterministic")]
    for prog, args, kind in cases:
        first, second = pool._execute([(0, prog, args, 2.0), (1, prog, args, 2.0)])
        assert first.ok and second.ok and first.value != second.value, (prog, first, second)
        r = pool.validate_many([(prog, args)])[0]
        assert r.kind == kind, (prog, r)
        if kind is None:
            assert r.ok and r.value == first.value and eval(r.value) == eval(second.value)


# ----------------------------------------------------------------------------------------------
# static filter
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("program,args,rule", [
    ("import os\ndef f(x): return x", "1", "import of 'os' (AZR banned module)"),
    ("import os.path\ndef f(x): return x", "1", "import of 'os.path'"),
    ("from datetime import date\ndef f(x): return x", "1", "import from 'datetime' (AZR banned"),
    ("import socket\ndef f(x): return x", "1", "sandbox banned module"),
    ("from . import x\ndef f(x): return x", "1", "relative import"),
    ("def f(x): return input()", "1", "use of builtin 'input'"),
    ("def f(x): return globals()", "1", "use of builtin 'globals'"),
    ("def f(x): return x.__class__", "1", "dunder attribute access '.__class__'"),
    ("def f(x): return __builtins__", "1", "dunder name '__builtins__'"),
    ("def f(x): return x", "open('a')", "use of builtin 'open' in input"),
    ("def f(x): return x", "(1).__class__", "in input: dunder attribute"),
    ("def g(x): return x", "1", "no_function"),
    ("def f(x) return x", "1", "syntax"),
    ("def f(x): return x", "1)(2", "exactly one call"),
    ("def f(x): return x", "1) if 1 else (2", "exactly one call"),
])
def test_filter_names_the_rule(program, args, rule):
    err = V._check_job(program, args)
    assert err is not None and rule in err, err


@pytest.mark.parametrize("program,args", [
    ("def f(input):\n    return input", "1"),                       # a parameter named input
    ("def open(x):\n    return x\ndef f(x):\n    return open(x)", "1"),   # shadowed builtin
    ("class A:\n    def __init__(self):\n        self.x = 1\ndef f(x):\n    return A().__init__", "1"),
    ("def f(x):\n    return x", "dict(did=0)"),
    ("def f(*a, **k):\n    return a, k", "1, 2, *[3], z=[lambda: 0][0]()"),
])
def test_filter_accepts_legitimate_code(program, args):
    assert V._check_job(program, args) is None


def test_literal_repr_checks_types_before_repr():
    assert V._literal_repr([1, (2.5, None), {"a": {1, 2}}, b"x", 3j], 1000) == ("[1, (2.5, None), {'a': {1, 2}}, b'x', 3j]", None)
    assert V._literal_repr(frozenset(), 100)[1].startswith("value: unsupported return type 'frozenset'")
    assert "too large" in V._literal_repr("x" * 200, 100)[1]
    assert "nested" in V._literal_repr([[[[1]]]], 100, max_depth=2)[1]
    assert "non-finite" in V._literal_repr([float("inf")], 100)[1]


# ----------------------------------------------------------------------------------------------
# AZR checks
# ----------------------------------------------------------------------------------------------
def test_check_deduction():
    assert V.check_deduction("[1, 2]", " [1,2]\n")
    assert V.check_deduction("{'a': 1, 'b': {2, 3}}", "{'b': {3, 2}, 'a': 1}")
    assert V.check_deduction("'abc'", '"abc"')
    assert not V.check_deduction("[1, 2]", "[2, 1]")
    assert not V.check_deduction("3", "three")
    assert not V.check_deduction("3", "__import__('os').system('id')")
    assert not V.check_deduction("3", None)


def test_check_abduction_and_induction(pool):
    prog = "def f(a, b):\n    return a * b"
    assert V.check_abduction_many([(prog, "12", "3, 4"), (prog, "12", "2, 6"), (prog, "12", "2, 5"),
                                   (prog, "12", "3, 4) or (1")]) == [True, True, False, False]
    assert V.check_abduction_many([(prog, "6", "2, 3"), (prog, "6", "1, 1"), (prog, "0", "0, 9")]) == [True, False, True]
    pairs = [("1", "2"), ("5", "10"), ("-3", "-6")]
    assert V.check_induction_many([("def f(x):\n    return x * 2", pairs),
                                   ("def f(x):\n    return x + x", pairs),
                                   ("def f(x):\n    return x + 1", pairs),
                                   ("import os\ndef f(x):\n    return x * 2", pairs),
                                   ("def f(x):\n    return x * 2", [])]) == \
        [True, True, False, False, False]
    assert V.check_induction_many([("def f(x):\n    return 2 * x", pairs),
                                   ("def f(x):\n    return abs(x) * 2", pairs),
                                   ("def f(x):\n    return x << 1", pairs)]) == [True, False, True]
    # an induction proposal is validated input by input (one Result each, in order)
    res = V.validate_many([("def f(x):\n    return x % 3", a) for a in ["1", "5", "'a'"]])
    assert [r.value for r in res[:2]] == ["1", "2"] and res[2].kind == "exception"
    many = V.validate_many([("def f(x):\n    return -x", "1"), ("def f(x):\n    return -x", "2"),
                            ("def f(x):\n    return x", "[]")])
    assert [r.value for r in many] == ["-1", "-2", "[]"]


def test_threads_share_a_pool_and_fork_gets_its_own(pool):
    import threading
    out = {}

    def work(t):
        out[t] = [r.value for r in pool.run_many([("def f(x):\n    return x * 10", str(t * 100 + i))
                                                  for i in range(20)])]
    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert out == {t: [str((t * 100 + i) * 10) for i in range(20)] for t in range(3)}
    # a forked caller (e.g. a data-loader worker) must not talk to its parent's servers
    parent_pids = server_pids(pool)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            res = pool.run_many([("def f(x):\n    return -x", "4")])[0]
            mine = server_pids(pool.start())
            os.write(w, repr((res.value, sorted(set(mine) & set(parent_pids)))).encode())
            pool.close()
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    assert eval(data) == ("-4", [])
    assert server_pids(pool) == parent_pids and leftover_processes(pool) == []
