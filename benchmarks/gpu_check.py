"""The measuring parts of benchmarks/gpu_check.sh (the first run on a GPU), one subcommand each; every
subcommand writes one JSON file and keeps what it measured so far when its deadline comes.

    python benchmarks/gpu_check.py env     --out DIR
    python benchmarks/gpu_check.py speed   --out DIR --model DIR --device cuda [--rounds 3] [--fp16 both]
    python benchmarks/gpu_check.py gate    --out DIR --report DIR --junit FILE
    python benchmarks/gpu_check.py goldens --out DIR --session NAME=REPORT_DIR[,LOG] ...
    python benchmarks/gpu_check.py soak    --out DIR --device cuda [--warmup 10] [--streams 50]
    python benchmarks/gpu_check.py seed    --out DIR --results DIR [--skipped WHY]
    python benchmarks/gpu_check.py summary --out DIR --parts FILE

Every part JSON has "part", "status" ("ok", "failed: ..." or "skipped: ...") and "device"; the keys
each part adds are listed in PART_KEYS (tests/test_gpu_check.py checks them). A part that needs CUDA
on a machine without it says "skipped: no CUDA" where its figure would be.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NO_CUDA = "skipped: no CUDA"
# The streamed texts of the speed part: the gate suites' short and medium sentences (suites/inputs.py).
SPEED_TEXTS = {"short": "Hello there.",
               "medium": "The quick brown fox jumps over the lazy dog, then rests under the old oak tree."}
PARTS = ("a_speed", "b_gate", "c_quality", "d_soak", "e_seed_cost")
PART_KEYS: dict[str, tuple[str, ...]] = {
    "a_speed": ("model", "text", "rounds", "runs"),
    "b_gate": ("selection", "tests", "passed", "failed", "skipped", "errors", "failures", "figures", "report_dir"),
    "c_quality": ("selection", "sessions"),
    "d_soak": ("model", "warmup", "streams", "rss_mb", "cuda"),
    "e_seed_cost": ("results_dir", "results"),
}
COMMON_KEYS = ("part", "status", "device")
ENGINES = ("runtime", "upstream")   # this project's orchestration; upstream's class on the same components
TIMEOUT_CODES = (124, 137)   # timeout(1): the limit passed (124), or killed after the grace period (137)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)   # a part killed by its timeout leaves the last complete file, never half of one


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# -- env ------------------------------------------------------------------------------------------------
def cmd_env(args: argparse.Namespace) -> int:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    write_json(Path(args.out) / "env.json", info)
    return 0


# -- a: first chunk and RTF, runtime and upstream, fp32 and fp16 ----------------------------------------
def one_stream(engine: Any, text: str, voice: dict[str, Any]) -> dict[str, Any]:
    """One streamed request: first chunk from the call (frontend included, for both engines alike), wall
    time to the last chunk, audio seconds, RTF and speech tokens."""
    t0 = time.perf_counter()
    first: float | None = None
    samples, rate, tokens = 0, 1, 0
    for c in engine.stream(text, **voice):
        if first is None:
            first = time.perf_counter() - t0
        samples += int(c.audio.size)
        rate = c.sample_rate
        tokens += int(c.tokens)
    wall = time.perf_counter() - t0
    audio_s = samples / rate
    return {"first_chunk_s": first, "wall_s": wall, "audio_s": audio_s,
            "rtf": wall / audio_s if audio_s > 0 else None, "tokens": tokens}


def measure(engine: Any, text: str, voice: dict[str, Any], rounds: int, deadline: float) -> dict[str, Any]:
    """A cold request (the first of this engine), then up to `rounds` warm ones while time is left."""
    out: dict[str, Any] = {"status": "ok", "cold": one_stream(engine, text, voice), "warm": []}
    for _ in range(rounds):
        if time.monotonic() > deadline:
            out["status"] = f"ok: {len(out['warm'])} of {rounds} warm rounds (deadline)"
            break
        out["warm"].append(one_stream(engine, text, voice))
    firsts = [r["first_chunk_s"] for r in out["warm"] if r["first_chunk_s"] is not None]
    rtfs = [r["rtf"] for r in out["warm"] if r["rtf"] is not None]
    out["first_chunk_s_median"] = median(firsts)
    out["rtf_median"] = median(rtfs)
    return out


def cmd_speed(args: argparse.Namespace) -> int:
    import torch

    import cosyvoice_runtime
    from cosyvoice_runtime.upstream import UpstreamEngine
    from pytest_cosyvoice.host import default_prompt

    deadline = time.monotonic() + args.max_seconds
    path = Path(args.out) / "a_speed.json"
    cuda = args.device.startswith("cuda")
    prompt = default_prompt()
    voice = {"prompt_wav": prompt.wav, "prompt_text": prompt.text}
    text = SPEED_TEXTS[args.text]
    result: dict[str, Any] = {"part": "a_speed", "status": "ok", "device": args.device, "text": text,
                              "rounds": args.rounds, "voice": "zero-shot, pytest_cosyvoice/data/prompt.wav",
                              "model": {"dir": args.model, "size": args.size}, "runs": []}
    if args.build_s is not None:
        result["model"]["build_s"] = args.build_s
    write_json(path, result)
    dtypes = {"fp32": [False], "fp16": [True], "both": [False, True]}[args.fp16]
    has_cuda = cuda and torch.cuda.is_available()
    runnable = [f for f in dtypes if not f or has_cuda]
    # Every row is there from the start, so a part killed by its limit still lists all four.
    rows: dict[tuple[bool, str], dict[str, Any]] = {}
    for fp16 in dtypes:
        for name in ENGINES:
            rows[fp16, name] = {"engine": name, "dtype": "fp16" if fp16 else "fp32",
                                "status": "not reached" if fp16 in runnable else NO_CUDA}
            result["runs"].append(rows[fp16, name])
    write_json(path, result)
    last_load_s = 0.0
    for fp16 in runnable:
        dtype = "fp16" if fp16 else "fp32"
        if time.monotonic() > deadline:
            for name in ENGINES:
                rows[fp16, name]["status"] = "skipped: part deadline"
            write_json(path, result)
            continue
        t0 = time.perf_counter()
        try:
            rt = cosyvoice_runtime.load(args.model, device=args.device, fp16=fp16)
        except Exception as e:  # noqa: BLE001 - recorded, the other dtype still runs
            for name in ENGINES:
                rows[fp16, name]["status"] = f"failed: load: {e!r}"[:400]
            write_json(path, result)
            continue
        load_s = last_load_s = time.perf_counter() - t0
        loads_after = len(runnable) - 1 - runnable.index(fp16)
        # Counted on the loaded modules (not tiny.param_counts: its meta-device build leaves the process
        # unable to run a model afterwards).
        result["model"]["params_m"] = {k: round(sum(p.numel() for p in getattr(rt, k).parameters()) / 1e6, 1)
                                       for k in ("llm", "flow", "hift")}
        if has_cuda:
            torch.cuda.synchronize()
            result["model"][f"cuda_allocated_mb_{dtype}"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        for i, name in enumerate(ENGINES):
            run = rows[fp16, name]
            run.update(load_s=round(load_s, 2), status="running")
            # Warm rounds share the time left equally among the engine/dtype slots still to come (after
            # the loads they need), so a slow first slot cannot starve the fp16 rows.
            slots = 2 - i + 2 * loads_after
            share = (deadline - time.monotonic() - loads_after * last_load_s) / slots
            try:
                engine = rt if name == "runtime" else UpstreamEngine(rt)
                run.update(measure(engine, text, voice, args.rounds, min(deadline, time.monotonic() + share)))
            except Exception as e:  # noqa: BLE001 - recorded per engine
                run["status"] = f"failed: {type(e).__name__}: {e}"[:400]
            write_json(path, result)
        engine = rt = None   # both hold the modules: freed before the next dtype loads
        gc.collect()
        if has_cuda:
            torch.cuda.empty_cache()
    bad = [f"{r['engine']} {r['dtype']}" for r in result["runs"] if str(r["status"]).startswith("failed")]
    result["status"] = f"failed: {', '.join(bad)}" if bad else "ok"
    write_json(path, result)
    return 1 if bad else 0


# -- b: the gate suites' streamed tests -----------------------------------------------------------------
def junit_counts(path: Path) -> dict[str, Any]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "passed": 0, "failed": 0, "skipped": 0, "errors": 0, "failures": []}
    for suite in suites:
        for case in suite.iter("testcase"):
            counts["tests"] += 1
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None:
                counts["failed"] += 1
                counts["failures"].append(name)
            elif case.find("error") is not None:
                counts["errors"] += 1
                counts["failures"].append(name)
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    return counts


def rtf_figures(path: Path) -> dict[str, dict[str, Any]]:
    """Per test of the report's rtf.csv: measured runs, median RTF and median first chunk."""
    per: dict[str, dict[str, list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            d = per.setdefault(row["nodeid"], {"rtf": [], "first_chunk_ms": []})
            for k in ("rtf", "first_chunk_ms"):
                if row.get(k):
                    d[k].append(float(row[k]))
    return {nodeid: {"runs": len(d["rtf"]), "rtf_median": median(d["rtf"]),
                     "first_chunk_ms_median": median(d["first_chunk_ms"])} for nodeid, d in per.items()}


def cmd_gate(args: argparse.Namespace) -> int:
    report = Path(args.report)
    result: dict[str, Any] = {"part": "b_gate", "status": "ok", "device": args.device, "selection": args.selection,
                              "report_dir": str(report), "rc": args.rc, "tests": 0, "passed": 0, "failed": 0,
                              "skipped": 0, "errors": 0, "failures": [], "figures": {}}
    junit = Path(args.junit)
    if junit.is_file():
        result.update(junit_counts(junit))
    else:
        result["status"] = f"failed: no junit file (pytest exit {args.rc})"
    if (report / "rtf.csv").is_file():
        result["figures"] = rtf_figures(report / "rtf.csv")
    if args.rc in TIMEOUT_CODES:
        result["status"] = f"failed: timeout (pytest exit {args.rc})"
    elif result["status"] == "ok" and (args.rc != 0 or result["failed"] or result["errors"] or not result["tests"]):
        result["status"] = (f"failed: pytest exit {args.rc}, {result['failed']} failed, {result['errors']} errors"
                            f" of {result['tests']}")
    write_json(Path(args.out) / "b_gate.json", result)
    return 0


# -- c: quality goldens saved and rerun ------------------------------------------------------------------
SNR_CHECKS = ("token2wav", "audio")


def judge_rerun(quality_json: Path) -> dict[str, Any]:
    """What the rerun's quality.json says about the saved goldens: per check the statuses; the calls whose
    tokens matched the golden; the SNR checks whose figure is "inf" (sample-identical audio)."""
    data = json.loads(quality_json.read_text(encoding="utf-8"))
    checks: dict[str, dict[str, int]] = {}
    snrs: list[float] = []
    identical = judged = token_calls = token_same = 0
    for test in data["tests"].values():
        for c in test["checks"]:
            checks.setdefault(c["name"], {}).setdefault(c["status"], 0)
            checks[c["name"]][c["status"]] += 1
            if c["name"] == "tokens" and c["status"] != "note":
                token_calls += 1
                token_same += c["status"] == "pass" and c["figure"] is None  # None: no divergence at all
            if c["name"] in SNR_CHECKS and c["figure"] is not None:
                judged += 1
                if c["figure"] == "inf":
                    identical += 1
                else:
                    snrs.append(float(c["figure"]))
    return {"tests": len(data["tests"]), "checks": checks, "token_calls": token_calls,
            "token_calls_identical": token_same, "snr_checks": judged, "snr_checks_identical": identical,
            "min_snr_db": min(snrs) if snrs else None,
            "bit_identical": bool(judged) and identical == judged and token_same == token_calls}


def cmd_goldens(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"part": "c_quality", "status": "ok", "device": args.device,
                              "selection": args.selection, "sessions": {}}
    bad: list[str] = []
    for spec in args.session:
        name, _, rest = spec.partition("=")
        report, _, log = rest.partition(",")
        entry: dict[str, Any] = {"report_dir": report}
        rc_file = Path(report).parent / "rc.json"
        if rc_file.is_file():
            entry.update(json.loads(rc_file.read_text(encoding="utf-8")))
        if log:   # benchmarks/deterministic.py creates the file at configure and adds a line per warning
            entry["deterministic_switched_on"] = Path(log).is_file()
            lines = Path(log).read_text(encoding="utf-8").splitlines() if Path(log).is_file() else []
            entry["nondeterministic_ops"] = sorted(set(lines) - {""})
        q = Path(report) / "quality.json"
        if q.is_file():
            entry.update(judge_rerun(q))
            entry["status"] = "ok"
        elif entry.get("rerun_rc") in TIMEOUT_CODES or "rerun_rc" not in entry:
            entry["status"] = "failed: timeout in the rerun session"
        else:
            entry["status"] = f"failed: the rerun wrote no quality.json (exit {entry['rerun_rc']})"
        save_rc = entry.get("save_rc")
        if save_rc is None or save_rc in TIMEOUT_CODES:
            entry["status"] = "failed: timeout in the save session"
        elif save_rc != 0:
            entry["status"] = f"failed: save session exit {save_rc}"
        if entry["status"] != "ok":
            bad.append(name)
        result["sessions"][name] = entry
    for spec in args.skipped_session:
        name, _, why = spec.partition("=")
        result["sessions"][name] = {"status": f"skipped: {why}"}
    if bad:
        timed_out = all("timeout" in result["sessions"][n]["status"] for n in bad)
        result["status"] = f"failed: {'timeout in ' if timed_out else ''}{', '.join(bad)}"
    write_json(Path(args.out) / "c_quality.json", result)
    return 0


# -- d: memory over 50 streams ------------------------------------------------------------------------------
def rss_mb() -> float:
    import ctypes

    import psutil

    try:  # hand freed heap back first, as suites/test_soak_and_recovery.py does
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return float(psutil.Process().memory_info().rss / 2**20)


def cmd_soak(args: argparse.Namespace) -> int:
    import torch

    import cosyvoice_runtime
    from pytest_cosyvoice.host import default_prompt

    deadline = time.monotonic() + args.max_seconds
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    model = args.model
    if model is None:
        from cosyvoice_runtime.tiny import default_model_dir

        model = str(default_model_dir(2))
    path = Path(args.out) / "d_soak.json"
    result: dict[str, Any] = {"part": "d_soak", "status": "ok", "device": args.device, "model": model,
                              "warmup": args.warmup, "streams": 0, "streams_asked": args.streams,
                              "rss_mb": {}, "cuda": {} if cuda else NO_CUDA}
    write_json(path, result)   # every key there even if the load outlasts the part's limit
    rt = cosyvoice_runtime.load(model, device=args.device, fp16=args.fp16)
    prompt = default_prompt()
    kw = {"prompt_wav": prompt.wav, "prompt_text": prompt.text}

    def mem() -> dict[str, float]:
        torch.cuda.synchronize()
        return {"allocated_mb": torch.cuda.memory_allocated() / 2**20,
                "reserved_mb": torch.cuda.memory_reserved() / 2**20,
                "max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}

    for _ in range(args.warmup):   # the allocator and the prompt cache, as the suite's soak test warms them
        list(rt.stream("Warm up.", **kw))
    result["rss_mb"]["before"] = round(rss_mb(), 1)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        result["cuda"]["before"] = {k: round(v, 1) for k, v in mem().items()}
    t0 = time.perf_counter()
    for i in range(args.streams):
        if time.monotonic() > deadline:
            result["status"] = f"ok: {i} of {args.streams} streams (deadline)"
            break
        list(rt.stream(f"Soak request number {i}.", **kw))
        result["streams"] = i + 1
    result["seconds_streaming"] = round(time.perf_counter() - t0, 2)
    result["rss_mb"]["after"] = round(rss_mb(), 1)
    result["rss_mb"]["growth"] = round(result["rss_mb"]["after"] - result["rss_mb"]["before"], 1)
    result["active_requests_after"] = rt.active_requests
    if cuda:
        after = mem()
        result["cuda"]["after"] = {k: round(v, 1) for k, v in after.items()}
        result["cuda"]["growth_mb"] = round(after["allocated_mb"] - result["cuda"]["before"]["allocated_mb"], 2)
        result["cuda"]["peak_over_before_mb"] = round(after["max_allocated_mb"]
                                                      - result["cuda"]["before"]["allocated_mb"], 1)
    write_json(path, result)
    return 0


# -- e: the seeded vs unseeded cost (benchmarks/seed_cost.py) -------------------------------------------
def cmd_seed(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"part": "e_seed_cost", "status": "ok", "device": args.device,
                              "results_dir": args.results, "results": {}}
    if args.skipped:
        result["status"] = f"skipped: {args.skipped}"
    else:
        files = sorted(Path(args.results).glob("*.json"))
        for f in files:
            try:
                result["results"][f.name] = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                result["results"][f.name] = f"unreadable: {e}"
        if args.rc in TIMEOUT_CODES:
            result["status"] = f"failed: timeout (seed_cost.py exit {args.rc})"
        elif args.rc != 0:
            result["status"] = f"failed: seed_cost.py exit {args.rc}"
        elif not files:
            result["status"] = "failed: seed_cost.py wrote no JSON"
    write_json(Path(args.out) / "e_seed_cost.json", result)
    return 0


# -- summary ----------------------------------------------------------------------------------------------
def _f(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else "inf" if x == "inf" else format(float(x), spec) if isinstance(x, (int, float)) \
        else str(x)


def _lines_speed(d: dict[str, Any]) -> list[str]:
    m = d.get("model", {})
    out = [f"Model: {m.get('size') or m.get('dir')} ({m.get('params_m', '')}), text {len(d['text'])} characters, "
           f"zero-shot, {d['rounds']} warm rounds after one cold request.", "",
           "| engine | dtype | status | load s | cold first chunk s | first chunk s (median) | RTF (median) "
           "| warm rounds | tokens per round |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in d["runs"]:
        cold = r.get("cold") or {}
        tokens = ",".join(str(w["tokens"]) for w in r.get("warm", []))
        out.append(f"| {r['engine']} | {r['dtype']} | {r['status']} | {_f(r.get('load_s'), '.1f')} | "
                   f"{_f(cold.get('first_chunk_s'))} | {_f(r.get('first_chunk_s_median'))} | "
                   f"{_f(r.get('rtf_median'))} | {len(r.get('warm', []))} | {tokens or '-'} |")
    return out


def _lines_gate(d: dict[str, Any]) -> list[str]:
    out = [f"`-k {d['selection']}`: {d['tests']} tests, {d['passed']} passed, {d['failed']} failed, "
           f"{d['skipped']} skipped, {d['errors']} errors; report in `{d['report_dir']}`."]
    if d["failures"]:
        out.append("Failed: " + ", ".join(f"`{f}`" for f in d["failures"]))
    if d["figures"]:
        out += ["", "| test | runs | RTF (median) | first chunk ms (median) |", "|---|---|---|---|"]
        for nodeid, f in sorted(d["figures"].items()):
            out.append(f"| `{nodeid}` | {f['runs']} | {_f(f['rtf_median'])} | "
                       f"{_f(f['first_chunk_ms_median'], '.0f')} |")
    return out


def _lines_quality(d: dict[str, Any]) -> list[str]:
    out = [f"`-k {d['selection']}`; per session: save goldens, rerun against them.", "",
           "| session | status | tests | tokens identical | SNR checks inf (identical) | min SNR dB | "
           "bit-identical | nondeterministic ops warned |", "|---|---|---|---|---|---|---|---|"]
    for name, s in d["sessions"].items():
        ops = s.get("nondeterministic_ops")
        out.append(f"| {name} | {s['status']} | {s.get('tests', '-')} | {s.get('token_calls_identical', '-')}/"
                   f"{s.get('token_calls', '-')} | {s.get('snr_checks_identical', '-')}/{s.get('snr_checks', '-')} | "
                   f"{_f(s.get('min_snr_db'), '.1f')} | {s.get('bit_identical', '-')} | "
                   f"{'-' if ops is None else len(ops)} |")
    return out


def _lines_soak(d: dict[str, Any]) -> list[str]:
    rss = d.get("rss_mb", {})
    out = [f"{d['streams']} streams after {d['warmup']} warm-up ones; RSS {_f(rss.get('before'), '.0f')} -> "
           f"{_f(rss.get('after'), '.0f')} MB ({_f(rss.get('growth'), '+.1f')} MB)."]
    c = d["cuda"]
    if isinstance(c, str):
        out.append(f"CUDA memory: {c}.")
    elif c:
        b, a = c.get("before", {}), c.get("after", {})
        out.append(f"CUDA allocated {_f(b.get('allocated_mb'), '.1f')} -> {_f(a.get('allocated_mb'), '.1f')} MB "
                   f"(growth {_f(c.get('growth_mb'), '+.2f')} MB), peak {_f(a.get('max_allocated_mb'), '.1f')} MB, "
                   f"reserved {_f(a.get('reserved_mb'), '.1f')} MB.")
    return out


def _lines_seed(d: dict[str, Any]) -> list[str]:
    if not d["results"]:
        return []
    return [f"Raw results: `{d['results_dir']}` ({', '.join(sorted(d['results']))})."]


DETAILS = {"a_speed": _lines_speed, "b_gate": _lines_gate, "c_quality": _lines_quality, "d_soak": _lines_soak,
           "e_seed_cost": _lines_seed}
TITLES = {"a_speed": "a. First chunk and RTF", "b_gate": "b. Gate suites, streamed short/medium tests",
          "c_quality": "c. Quality goldens: save, then rerun", "d_soak": "d. Memory over the soak streams",
          "e_seed_cost": "e. Seeded vs unseeded cost"}


def read_parts(path: Path) -> dict[str, dict[str, Any]]:
    """parts.tsv lines written by gpu_check.sh: part, exit code, seconds, limit, log file."""
    parts: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, rc, secs, limit, log = line.split("\t")
        parts[name] = {"rc": int(rc), "seconds": float(secs), "limit_s": int(limit), "log": log}
    return parts


def _tail(log: str, n: int = 15) -> list[str]:
    try:
        return Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def cmd_summary(args: argparse.Namespace) -> int:
    out = Path(args.out)
    parts = read_parts(Path(args.parts)) if Path(args.parts).is_file() else {}
    env: dict[str, Any] = {}
    if (out / "env.json").is_file():
        env = json.loads((out / "env.json").read_text(encoding="utf-8"))
    lines = ["# GPU check", "",
             f"`bash benchmarks/gpu_check.sh {args.argv}` on {env.get('gpu', 'no GPU')} "
             f"(torch {env.get('torch', '?')}, CUDA {env.get('torch_cuda', '?')}, {env.get('cpu_count', '?')} CPUs, "
             f"commit {env.get('commit', '?')}); total {args.total_s:.0f} s of a {args.budget_s} s budget.", "",
             "| part | status | seconds | limit s | file |", "|---|---|---|---|---|"]
    details: list[str] = []
    for name in PARTS:
        p = parts.get(name)
        file = out / f"{name}.json"
        data: dict[str, Any] | None = None
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except ValueError:
                data = None
        if p is None and data is None:
            data = {"part": name, "status": "skipped: not run (out of budget)", "device": args.device}
        elif data is None or (p is not None and p["rc"] != 0 and str(data.get("status", "")).startswith("ok")):
            why = "timeout" if p and p["rc"] in TIMEOUT_CODES else f"exit {p['rc']}" if p else "no result"
            data = {**(data or {}), "part": name, "device": args.device,
                    "status": f"failed: {why}" + ("" if data is None else " (partial figures kept)"),
                    "log_tail": _tail(p["log"]) if p else []}
        for k in PART_KEYS[name]:   # a failed or skipped part still has every key (empty)
            data.setdefault(k, {} if k in ("results", "sessions", "figures", "model", "rss_mb", "cuda") else
                            [] if k in ("runs", "failures") else 0 if k in ("tests", "passed", "failed", "skipped",
                                                                              "errors", "streams", "warmup", "rounds")
                            else "")
        if p is not None:
            data["seconds"] = p["seconds"]
            data["limit_s"] = p["limit_s"]
            data["log"] = p["log"]
        write_json(file, data)
        lines.append(f"| {name} | {data['status']} | {_f(data.get('seconds'), '.0f')} | "
                     f"{data.get('limit_s', '-')} | `{file.name}` |")
        details += ["", f"## {TITLES[name]}", "", f"Status: {data['status']}."]
        if data.get("log_tail"):
            details += ["", "```", *data["log_tail"], "```"]
        try:
            details += [""] + DETAILS[name](data)
        except (KeyError, TypeError, ValueError) as e:
            details.append(f"(figures not readable: {type(e).__name__}: {e})")
    (out / "summary.md").write_text("\n".join(lines + details) + "\n", encoding="utf-8")
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kw)
        p.add_argument("--out", required=True, help="the output folder")
        p.add_argument("--device", default="cuda")
        return p

    add("env")
    p = add("speed")
    p.add_argument("--model", required=True)
    p.add_argument("--size", default=None, help="the builder size of --model, for its parameter counts")
    p.add_argument("--build-s", type=float, default=None, help="seconds the model took to build (recorded)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--text", choices=sorted(SPEED_TEXTS), default="medium")
    p.add_argument("--fp16", choices=("fp32", "fp16", "both"), default="both")
    p.add_argument("--max-seconds", type=float, default=150.0)
    p = add("gate")
    p.add_argument("--report", required=True)
    p.add_argument("--junit", required=True)
    p.add_argument("--selection", default="")
    p.add_argument("--rc", type=int, default=0)
    p = add("goldens")
    p.add_argument("--session", action="append", default=[], help="NAME=RERUN_REPORT_DIR[,NONDETERMINISM_LOG]")
    p.add_argument("--skipped-session", action="append", default=[], help="NAME=WHY: a session not run")
    p.add_argument("--selection", default="")
    p = add("soak")
    p.add_argument("--model", default=None, help="default: the embedded tiny v2 model")
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p = add("seed")
    p.add_argument("--results", required=True)
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--skipped", default="")
    p = add("summary")
    p.add_argument("--parts", required=True)
    p.add_argument("--argv", default="")
    p.add_argument("--total-s", type=float, default=0.0)
    p.add_argument("--budget-s", type=int, default=0)
    args = ap.parse_args(argv)
    if getattr(args, "max_seconds", 1) <= 0 or getattr(args, "rounds", 1) < 0:
        ap.error("--max-seconds must be positive and --rounds >= 0")
    fn = {"env": cmd_env, "speed": cmd_speed, "gate": cmd_gate, "goldens": cmd_goldens, "soak": cmd_soak,
          "seed": cmd_seed, "summary": cmd_summary}[args.cmd]
    return fn(args)


if __name__ == "__main__":
    sys.exit(main())
