"""bench/verifier.py — validations/s of verifier.py's fork-server sandbox against a naive sandbox.

Both validate the same generated (program, input) pairs in this one process, with every limit on.
A validation is two executions whose reprs must agree (AZR's determinism check):

  ours   verifier.Pool: two pre-started fork servers (hash seeds 0 and 1), a fresh forked child
         per execution (rlimits, audit guard, uid drop + chroot when root, job dir), the static
         filter in the caller
  naive  one fresh `python -I -c CODE` process per execution (empty environment, fresh temporary
         cwd removed afterwards, stdin closed, output captured, the same rlimits set first thing
         in the child, process-group kill on timeout), as many at once as ours runs children

Programs come from a small local generator (affine, modular, string, list, loop, conditional
and dict families); every output is checked against the value computed here.

    python bench/verifier.py
    python bench/verifier.py --programs 500 --workers 2 --naive-programs 200
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import verifier  # noqa: E402


@dataclass
class Config:
    programs: int = 500           # generated (program, input) pairs validated by ours
    naive_programs: int = 500     # how many of them the naive baseline validates (0 = skip)
    workers: int = 0              # children per fork server (0 = verifier's default: CPU count)
    timeout: float = 5.0          # wall seconds per execution (both)
    repeats: int = 2              # timed repeats of ours (the best is reported)
    seed: int = 0                 # generator seed


def parse_config() -> Config:
    """Every Config field as a --flag (help text from the field comment)."""
    helps = {}
    src = Path(__file__).read_text().split("class Config:", 1)[1].split("\n\n", 1)[0]
    for line in src.splitlines():
        if "#" in line and ":" in line:
            helps[line.split(":")[0].strip()] = line.split("#", 1)[1].strip()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Config):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=helps.get(f.name, ""))
    return Config(**vars(p.parse_args()))


# ----------------------------------------------------------------------------------------------
# generator
# ----------------------------------------------------------------------------------------------
def make_programs(n: int, seed: int) -> list[tuple[str, str]]:
    """n (program, args) pairs from seven small families, deterministic in seed."""
    rng = random.Random(seed)
    words = ["apple", "zero", "play", "sandbox", "python", "kiwi", "fork", "audit"]
    out = []
    for i in range(n):
        kind = i % 7
        a, b, c = rng.randint(2, 9), rng.randint(-9, 9), rng.randint(1, 6)
        if kind == 0:
            prog, args = f"def f(x):\n    return x * {a} + {b}", str(rng.randint(-50, 50))
        elif kind == 1:
            prog, args = f"def f(x):\n    return (x * x + {b}) % {a}", str(rng.randint(0, 99))
        elif kind == 2:
            prog = f"def f(s):\n    return s[{c}:] + s[:{c}].upper()"
            args = repr(rng.choice(words))
        elif kind == 3:
            prog = f"def f(xs):\n    return sorted(x * {a} for x in xs if x % 2 == {c % 2})"
            args = repr([rng.randint(0, 20) for _ in range(rng.randint(3, 7))])
        elif kind == 4:
            prog = (f"def f(n):\n    t = 0\n    for i in range(n):\n        t += i * {a}\n"
                    f"    return t")
            args = str(rng.randint(0, 40))
        elif kind == 5:
            prog = f"def f(x, y):\n    if x > y:\n        return x - {c}\n    return [y, x]"
            args = f"{rng.randint(0, 9)}, {rng.randint(0, 9)}"
        else:
            prog = ("def f(s):\n    d = {}\n    for ch in s:\n        d[ch] = d.get(ch, 0) + 1\n"
                    "    return sorted(d.items())")
            args = repr(rng.choice(words))
        out.append((prog, args))
    return out


def expected_output(program: str, args: str) -> str:
    """repr(f(args)) of a *generated* (trusted) program, computed in this process."""
    g: dict = {}
    exec(program, g)  # noqa: S102 - our own generated code, never model output
    return repr(eval(f"f({args})", g))  # noqa: S307


# ----------------------------------------------------------------------------------------------
# naive baseline: one fresh interpreter per execution
# ----------------------------------------------------------------------------------------------
def naive_code(program: str, args: str, timeout: float, mem_mb: int) -> str:
    limits = (f"import resource as _R\n"
              f"for _l, _v in ((_R.RLIMIT_AS, {mem_mb << 20}), (_R.RLIMIT_CPU, {int(timeout) + 1}),"
              f" (_R.RLIMIT_FSIZE, {1 << 20}), (_R.RLIMIT_NOFILE, 16), (_R.RLIMIT_NPROC, 0),"
              f" (_R.RLIMIT_CORE, 0)):\n    _R.setrlimit(_l, (_v, _v))\n")
    return f"{limits}{program}\nprint(repr(f({args})))\n"


def naive_execute(program: str, args: str, timeout: float, mem_mb: int) -> str | None:
    """stdout of `python -I -c CODE` in a fresh temp cwd, or None on error/timeout."""
    cwd = tempfile.mkdtemp(prefix="zp-naive-")
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-c", naive_code(program, args, timeout, mem_mb)],
                                cwd=cwd, env={}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
        return out[:100_000].decode(errors="replace").strip() if proc.returncode == 0 else None
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def naive_validate(jobs, parallel: int, timeout: float, mem_mb: int) -> list[str | None]:
    """Two fresh-interpreter executions per job (hash randomisation differs per process)."""
    flat = [j for j in jobs for _ in range(2)]
    with ThreadPoolExecutor(parallel) as ex:
        outs = list(ex.map(lambda j: naive_execute(j[0], j[1], timeout, mem_mb), flat))
    return [a if a is not None and a == b else None for a, b in zip(outs[::2], outs[1::2])]


def server_cpu_seconds(pids: list[int]) -> float:
    """CPU time of the servers and of their reaped children (user + system), from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])          # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------
def main(cfg: Config) -> None:
    jobs = make_programs(cfg.programs, cfg.seed)
    want = [expected_output(p, a) for p, a in jobs]
    pool = verifier.Pool(workers=cfg.workers or None, timeout=cfg.timeout)
    t = time.perf_counter()
    pool.start()
    startup = time.perf_counter() - t
    info = pool.server_info()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"ours: 2 servers x {pool.workers} children, drop={info[0]['drop']} "
          f"chroot={info[0]['chroot']}, start-up {startup * 1e3:.0f} ms")
    pool.validate_many(jobs[:20])                                     # warm-up
    best, pids = 0.0, pool.server_pids()
    for r in range(cfg.repeats):
        cpu0, own0 = server_cpu_seconds(pids), time.process_time()
        t = time.perf_counter()
        res = pool.validate_many(jobs)
        dt = time.perf_counter() - t
        cpu = (server_cpu_seconds(pids) - cpu0 + time.process_time() - own0) / len(jobs)
        wrong = sum(not (x.ok and x.value == w) for x, w in zip(res, want))
        rate = len(jobs) / dt
        best = max(best, rate)
        print(f"ours  repeat {r}: {len(jobs)} validations ({2 * len(jobs)} executions) in {dt:.2f} s "
              f"= {rate:.0f} validations/s, wrong {wrong}; CPU {cpu * 1e3:.2f} ms per validation "
              f"(caller + servers + children) -> at most {os.cpu_count() / cpu:.0f}/s on idle cores")
        if wrong:
            raise SystemExit(f"ours gave {wrong} wrong answers, e.g. {res[0]}")
    pool.close()

    naive_rate = float("nan")
    if cfg.naive_programs > 0:
        sub = jobs[: cfg.naive_programs]
        parallel = 2 * pool.workers
        ru0, own0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
        t = time.perf_counter()
        outs = naive_validate(sub, parallel, cfg.timeout, verifier.DEFAULT_MEMORY_MB)
        dt = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
               + time.process_time() - own0) / len(sub)
        wrong = sum(o != w for o, w in zip(outs, want))
        naive_rate = len(sub) / dt
        print(f"naive: {len(sub)} validations ({2 * len(sub)} fresh interpreters, {parallel} at once) "
              f"in {dt:.2f} s = {naive_rate:.0f} validations/s, wrong {wrong}; CPU {cpu * 1e3:.1f} ms "
              f"per validation -> at most {os.cpu_count() / cpu:.0f}/s on idle cores")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"RESULT validations_per_s={best:.1f} naive_validations_per_s={naive_rate:.1f} "
          f"ratio={best / naive_rate:.1f}")


if __name__ == "__main__":
    main(parse_config())
