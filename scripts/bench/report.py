#!/usr/bin/env python3
"""Renders docs/benchmarks.md from the benchmark's results (scripts/bench/run.sh).

  report.py --results target/bench/results.json --profile-dir target/bench \
      --env target/bench/env.json --out docs/benchmarks.md

Inputs: the JSON written by host/benches/wafer_bench.rs, the environment facts gathered
by run.sh (env.json), and the profile outputs (callgrind_annotate or perf report text).
Standard library only.
"""

import argparse
import json
import math
import os
import re


def num(x, digits=0):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def batch_cap(section):
    """The run's `max_batch_size`, or a note that the run predates the option."""
    cap = section.get("max_batch_size")
    return num(cap) if cap is not None else "none (the run predates the option: no growth)"


def med(s):
    return s.get("median") if isinstance(s, dict) else None


def spread(s, digits=0, unit=""):
    """'median (min–max, n runs)'."""
    if not isinstance(s, dict) or s.get("median") is None:
        return "n/a"
    return (
        f"{num(s['median'], digits)}{unit} ({num(s['min'], digits)}–{num(s['max'], digits)}, "
        f"n={s['n']})"
    )


def status(value, target, higher_is_better=True):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "**meets**" if ok else "misses"


def others(cpu, own, cores):
    """Cores used by everything but the measured process, the broker and Redis."""
    try:
        busy = cpu["machine_busy_fraction"] * cores
        return max(0.0, busy - (own or 0) - (cpu.get("kafka_cores") or 0) - (cpu.get("redis_cores") or 0))
    except (KeyError, TypeError):
        return None


THREADS_OUT = []


def threads_table(cpu, label):
    """Per thread group of the bench process: cores used and cores' worth of waiting for a CPU."""
    threads = cpu.get("threads") or []
    if not threads:
        return
    w = THREADS_OUT.append
    w(
        f"Threads of the process during {label} (cores used; *waiting* = time runnable but not "
        f"running, in cores: the machine was busy elsewhere). Total waiting: "
        f"{num(cpu.get('runqueue_wait_cores'), 2)} cores."
    )
    w("")
    w("| threads | cores | waiting |")
    w("|---|---|---|")
    for t in threads[:10]:
        w(f"| `{t.get('threads')}` | {num(t.get('cores'), 3)} | {num(t.get('waiting_cores'), 3)} |")
    w("")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------ profile


# Components of the in-process path worth naming, with what each is in the code today.
COMPONENTS = [
    ("wafer::pipeline::Processor::process_batch", "`Processor::process_batch`: decode + windows, per run of one partition's records"),
    ("wafer::event::Schema::decode_into", "  decode: one streaming pass over the JSON (named fields only), interning, timestamp"),
    (
        "serde_json::value::de::<impl serde_core::de::Deserialize for serde_json::value::Value>::deserialize",
        "  building a `serde_json::Value` tree (no longer done: shown if it reappears)",
    ),
    ("core::ptr::drop_in_place<serde_json::value::Value>", "  dropping that tree"),
    ("wafer::event::parse_timestamp", "  timestamp parsing"),
    ("wafer::window::Partition::apply_batch", "windows: `Partition::apply_batch`"),
    ("wafer::window::entity::EntityWindow::insert", "  per-entity held-event inserts + aggregates"),
    ("alloc::collections::btree::map::BTreeMap<K,V,A>::insert", "  `BTreeMap` inserts (offset buckets; the expiry index until `expiry.rs`)"),
    ("wafer::pipeline::Processor::flush", "`Processor::flush`: drain, batch, plugin, feature records"),
    ("wafer::window::Partition::drain", "  drain: the aggregation row of each changed entity"),
    ("wafer::plugin::engine::Plugin::compute", "  plugin call (wasm: lowering, guest code, lifting, output check)"),
    ("wafer::pipeline::push_json_str", "  feature JSON: strings escaped in place (escaping only when needed)"),
    ("wafer::pipeline::Processor::key", "  online key: the template rendered per update"),
    ("__rustc::__rust_alloc", "allocator (mimalloc): allocations (all callers)"),
    ("mi_free", "allocator (mimalloc): `mi_free` (all callers)"),
    ("__rustc::__rust_realloc", "allocator (mimalloc): reallocations (all callers)"),
]

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)$")


def callgrind_entries(path):
    """(ir, pct, function, has_binary) of each line of callgrind_annotate output."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if not m:
                    continue
                ir = int(m.group(1).replace(",", ""))
                rest = m.group(3)
                has_binary = rest.rstrip().endswith("]")
                func = rest.rsplit(" [", 1)[0] if has_binary else rest
                func = func.split(":", 1)[1] if ":" in func else func
                out.append((ir, float(m.group(2)), func.strip(), has_binary, rest))
    except OSError:
        pass
    return out


def component_pct(entries, pattern):
    """Inclusive share of a function. callgrind_annotate lists a function once per source
    file its code came from (inlining) and once as seen by its callers; the callers' view
    holds the whole inclusive cost, so the largest entry is the function's share."""
    best = None
    for ir, pct, func, has_binary, _ in entries:
        if "PROGRAM TOTALS" in func or func != pattern:
            continue
        if best is None or pct > best:
            best = pct
    return best


PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+(?:([\d.]+)%\s+)?\[[.k]\]\s+(.*?)\s*(?:-\s+-\s*)?$")


def perf_entries(path):
    """(first %, second % or None, symbol) of each line of a perf report --stdio."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                m = PERF_LINE.match(line.rstrip())
                if m:
                    second = float(m.group(2)) if m.group(2) else None
                    out.append((float(m.group(1)), second, m.group(3).strip()))
    except OSError:
        pass
    return out


FAMILIES = [
    ("window state (`wafer::window::*`)", lambda f: f.startswith("wafer::window::")),
    (
        "allocator (mimalloc's `mi_*` and glibc's `malloc`, `free`, `realloc` and their internals)",
        lambda f: f.startswith(("mi_", "_mi_"))
        or f.split("@")[0]
        in {"malloc", "_int_malloc", "free", "cfree", "_int_free", "realloc", "_int_realloc",
            "unlink_chunk.constprop.0", "malloc_consolidate", "__libc_malloc", "__libc_free",
            "__libc_realloc", "alloc_perturb", "tcache_get", "tcache_put"},
    ),
    ("JSON (`serde_json::*`)", lambda f: "serde_json::" in f),
    ("plugin (wasm code and wasmtime)", lambda f: f.startswith("wasm[") or "wasmtime" in f or "cranelift" in f),
    ("`memcpy`/`memmove`/`memcmp`", lambda f: f.startswith("__mem")),
    ("timestamps (`chrono::*`)", lambda f: "chrono::" in f),
    ("string searching and formatting (`core::str`, `core::fmt`, `alloc::fmt`)", lambda f: f.startswith(("core::str", "<core::str", "core::fmt", "<core::fmt", "alloc::fmt", "<alloc::string::String as core::fmt"))),
    ("the rest of `wafer::*` (pipeline, decoding)", lambda f: f.startswith("wafer::") or f.startswith("<wafer::")),
    ("hash maps and ordered trees (`hashbrown`, `alloc::collections`)", lambda f: "hashbrown" in f or "collections::btree" in f),
]


def perf_families(entries):
    sums = [0.0] * (len(FAMILIES) + 1)
    for pct, _, sym in entries:
        for i, (_, test) in enumerate(FAMILIES):
            if test(sym):
                sums[i] += pct
                break
        else:
            sums[-1] += pct
    listed = sum(sums)
    out = [(name, sums[i]) for i, (name, _) in enumerate(FAMILIES)]
    out.append(("everything else (incl. functions under 0.05% each)", sums[-1] + max(0.0, 100.0 - listed)))
    return sorted(out, key=lambda x: -x[1])


def child_info(meta):
    child = meta.get("child") or {}
    state = child.get("state") or [None, None]
    return (
        f"after an unprofiled warm-up of {num(child.get('warm_events'))} events that fills the 1 h "
        f"window ({num(state[0])} entities and {num(state[1])} events held at the end)"
    )


def profile_section(profile_dir, results):
    cg = load(os.path.join(profile_dir, "callgrind.json"))
    pf = load(os.path.join(profile_dir, "perf.json"))
    lines = []
    if not cg and not pf:
        lines.append("No profile was taken (neither perf nor valgrind ran).")
        return lines
    lines.append(
        "The profiled program is the full in-process path (`Processor::process_batch` in runs of 64 "
        "records of a partition + `flush` every 5,000 "
        "events, wasm plugin) on the same stream as the in-process section (same users and event-time "
        "density), " + child_info(cg or pf) + "."
    )
    lines.append("")
    if cg:
        incl = callgrind_entries(os.path.join(profile_dir, "callgrind.inclusive.txt"))
        excl = callgrind_entries(os.path.join(profile_dir, "callgrind.exclusive.txt"))
        total = next((ir for ir, _, f, _, _ in incl if "PROGRAM TOTALS" in f), None)
        events = cg.get("events")
        lines.append(
            f"**callgrind** (instructions; `perf stat -e instructions true` says `<not supported>` on this VM, "
            f"so there are no hardware counters): {num(events)} profiled events, collected only inside the "
            f"loop (`--toggle-collect=*profile_loop*`)."
            + (f" {num(total)} instructions, **{num(total / events)} per event**." if total and events else "")
            + " Instruction counts do not show cache misses."
        )
        lines.append("")
    if pf:
        pexcl = perf_entries(os.path.join(profile_dir, "perf.report.txt"))
        lines.append(
            f"**perf** (`{pf.get('event')}` samples, i.e. time, cache misses included): {num(pf.get('events'))} "
            "profiled events, sampling enabled around the loop only (`perf record -D -1 --control`); "
            "own time per function only (no call graphs: the release build has no frame pointers)."
        )
        lines.append("")
    if cg:
        lines.append("callgrind, inclusive share of the loop's instructions:")
        lines.append("")
        lines.append("| component (inclusive) | share of instructions | instructions per event |")
        lines.append("|---|---|---|")
        for pattern, label in COMPONENTS:
            a = component_pct(incl, pattern)
            if a is None:
                continue
            per = f"{num(total * a / 100 / events)}" if total and events else "n/a"
            lines.append(f"| {label} | {a:.1f}% | {per} |")
        lines.append("")
    if cg:
        lines.append(
            "callgrind, top functions by own instructions (`0x…` is JIT-compiled wasm: the plugin):"
        )
        lines.append("")
        lines.append("| own instructions | function |")
        lines.append("|---|---|")
        shown = 0
        for ir, pct, func, _, rest in excl:
            if "PROGRAM TOTALS" in func:
                continue
            lines.append(f"| {pct:.1f}% | `{func[:110]}` |")
            shown += 1
            if shown >= 15:
                break
        lines.append("")
    if pf:
        fam = perf_families(pexcl)
        lines.append("perf, own time by family of functions:")
        lines.append("")
        lines.append("| family | share of time |")
        lines.append("|---|---|")
        for name, pct in fam:
            lines.append(f"| {name} | {pct:.1f}% |")
        lines.append("")
        lines.append("perf, top functions by own samples (`wasm[0]::function[N]` is the plugin):")
        lines.append("")
        lines.append("| own time | function |")
        lines.append("|---|---|")
        for pct, _, sym in pexcl[:15]:
            lines.append(f"| {pct:.1f}% | `{sym[:110]}` |")
        lines.append("")
    return lines


# ------------------------------------------------------------------------------ document


def render(results, env, profile_dir):
    inproc = results.get("inproc", {})
    memory = results.get("memory", {})
    e2e = results.get("e2e", {})
    latency = results.get("latency", {})
    ops = results.get("ops", {})
    wall = inproc.get("derived", {}).get("wall", {})
    cpu = inproc.get("derived", {}).get("cpu", {})
    try:
        cores = int(env.get("cores") or os.cpu_count() or 2)
    except ValueError:
        cores = 2
    out = []
    w = out.append

    w("# Benchmarks")
    w("")
    w(
        f"Generated by `make bench` (`scripts/bench/run.sh`, `host/benches/wafer_bench.rs`) on "
        f"{env.get('date', '?')}. Rerun it rather than editing this file."
    )
    w("")
    w(
        "> **Noise.** This is a 2-core VM shared with other work (other developers' builds and tests "
        "can run at the same time; the *everything else* columns of the end-to-end and latency CPU "
        "tables show how much did during those runs). Every comparison is interleaved within one "
        "invocation and repeated, so both sides of a ratio see the same conditions, but "
        "absolute numbers can move by tens of percent between invocations. The load average "
        f"was {env.get('loadavg_before', '?')} before the run and {env.get('loadavg_after', '?')} "
        "after it (1, 5, 15 min). In-process figures are also given per thread-CPU second, "
        "which is less sensitive to sharing the core."
    )
    w("")
    w(
        f"Code measured: commit `{env.get('commit', '?')}`"
        + (
            f" plus uncommitted changes to {env.get('dirty_files')} tracked files in the work tree"
            if env.get("dirty_files")
            else ""
        )
        + ". What was optimized since the first measurement is listed under *What dominates*."
    )
    w("")

    # ---------------------------------------------------------------- summary
    w("## Summary against the targets of issue 6")
    w("")
    w("Medians over the repetitions, (min–max, n) after them.")
    w("")
    w("| measure | target | measured | status |")
    w("|---|---|---|---|")
    e2e_rate = e2e.get("wafer_events_per_s")
    w(
        f"| end to end, sustained events/s (Kafka → Redis + `ml-features`, 4 partitions) | ≥ 300,000 | "
        f"{spread(e2e_rate)} | {status(med(e2e_rate), 300_000)} |"
    )
    for run in latency.get("runs", []):
        w(
            f"| event-to-Redis p99 at {num(run.get('offered_rate'))} events/s, `linger_ms` = {run.get('linger_ms')} | ≤ 50 ms | "
            f"p50 {num(run.get('p50_ms'), 1)} ms, p99 {num(run.get('p99_ms'), 1)} ms | "
            f"{status(run.get('p99_ms'), 50, higher_is_better=False)} |"
        )
    if not latency.get("runs"):
        w("| event-to-Redis p99 at 20,000 events/s | ≤ 50 ms | not measured | not measured |")
    ratio = e2e.get("wafer_over_python")
    w(
        f"| Wafer / Python loop throughput, same broker, Redis and events | ≥ 30× | "
        f"{spread(ratio, 1, '×')} | {status(med(ratio), 30)} |"
    )
    inproc_rate = wall.get("full_events_per_s")
    w(
        f"| in-process events/s on one core (decode → windows → wasm plugin → discard) | ≥ 2,000,000 | "
        f"{spread(inproc_rate)} | {status(med(inproc_rate), 2_000_000)} |"
    )
    steady_rate = wall.get("full_steady_events_per_s")
    w(
        f"| the same with the window full (the run's second hour of event time: events expiring as others arrive) | ≥ 2,000,000 | "
        f"{spread(steady_rate)} | {status(med(steady_rate), 2_000_000)} |"
    )
    wr = wall.get("wasm_over_native_path")
    w(
        f"| WASM path / native path throughput, in-process | ≥ 0.8 | {spread(wr, 3)} | {status(med(wr), 0.8)} |"
    )
    pc = wall.get("plugin_call_wasm_over_native")
    w(
        f"| plugin call alone, same batches: native time / wasm time (informative) | — | {spread(pc, 3)} | — |"
    )
    fit = memory.get("fit", {})
    bpe = fit.get("rss_delta", {}).get("bytes_per_event")
    bpn = fit.get("rss_delta", {}).get("bytes_per_entity")
    w(
        f"| window state bytes per event in window (RSS fit) | ≤ 48 B | {spread(bpe, 1, ' B')} | "
        f"{status(med(bpe), 48, higher_is_better=False)} |"
    )
    w(
        f"| window state bytes per active entity, fixed (RSS fit) | ≤ 256 B | {spread(bpn, 0, ' B')} | "
        f"{status(med(bpn), 256, higher_is_better=False)} |"
    )
    rss1m = memory.get("rss_total_at_1m_entities")
    w(
        f"| process RSS with 1M active entities (1 event each) | report | "
        f"{num(med(rss1m) / 2**20 if med(rss1m) else None)} MiB | — |"
    )
    fc = ops.get("first_commit", {}).get("seconds")
    rb = ops.get("rebuild", {}).get("events_per_s")
    pause = ops.get("reload", {}).get("pause_ms")
    if fc or rb or pause:
        w(
            f"| operations: time from `wafer::run` to the first commit, warm plugin cache, nothing to rebuild (item 7) | ≤ 1 s | "
            f"{spread(fc, 2, ' s')} | {status(med(fc), 1.0, higher_is_better=False)} |"
        )
        w(
            f"| operations: state-rebuild rate (replay on assignment) | — (report) | "
            f"{num(rb)} events/s ({num(ops.get('rebuild', {}).get('replayed'))} events) | — |"
        )
        w(
            f"| operations: processing pause of a hot reload under load | ≤ 10 ms | "
            f"{spread(pause, 3, ' ms')} | {status(med(pause), 10, higher_is_better=False)}"
            + (" (median; the largest misses)" if (pause or {}).get("max", 0) > 10 else "")
            + " |"
        )
    else:
        w(
            "| operations: time to first commit, rebuild rate, hot-reload pause (item 7) | ≤ 1 s, —, ≤ 10 ms | not measured | not measured |"
        )
    w("")

    # ---------------------------------------------------------------- machine
    w("## Machine and versions")
    w("")
    w("| item | value |")
    w("|---|---|")
    for key, label in [
        ("cpu_model", "CPU"),
        ("cores", "cores (nproc)"),
        ("memory", "memory"),
        ("kernel", "kernel"),
        ("rustc", "rustc"),
        ("wasmtime", "wasmtime (Cargo.lock)"),
        ("rdkafka", "rdkafka / bundled librdkafka (Cargo.lock)"),
        ("redis_crate", "redis crate (Cargo.lock)"),
        ("kafka", "Kafka broker (scripts/services.sh, KRaft, single node)"),
        ("java", "JVM of the broker"),
        ("redis", "Redis server"),
        ("python", "Python (baseline)"),
        ("python_libs", "baseline libraries"),
        ("profiler", "profiler"),
    ]:
        w(f"| {label} | {env.get(key, '?')} |")
    w("")
    w(
        "Kafka and Redis run on the same machine, on loopback, started by `scripts/services.sh` "
        "(broker heap 512 MiB, no Redis persistence)."
    )
    w("")

    # ---------------------------------------------------------------- in-process
    w("## In process: throughput and WASM cost")
    w("")
    if "error" in inproc:
        w(f"Failed: `{inproc['error']}`")
        w("")
    elif inproc:
        w("**Method.**")
        w("")
        w(
            f"- Events: {num(inproc.get('events'))} JSON payloads (`user_id`, `action`, `value`, ISO-8601 "
            f"`timestamp`; {num(inproc.get('payload_bytes_avg'), 1)} bytes on average), generated before "
            f"timing into one buffer; {num(inproc.get('users'))} users, skewed (user = ⌊a·b/n⌋ for uniform a, b: "
            f"{num(inproc.get('distinct_users'))} distinct users occur); {inproc.get('partitions')} partitions "
            f"(user mod 4); event times advance evenly over {num(inproc.get('span_s') / 3600 if inproc.get('span_s') else None, 1)} h, "
            f"one event in ten up to 2 s out of order, none late. With the 1 h window, half the stream's time "
            f"is spent with a full window, so flushes re-emit decayed entities too."
        )
        w(
            f"- **full**: `Processor::process_batch` on every payload, in runs of up to 64 records of one partition "
            f"(as the Kafka source applies them), `Processor::flush` of every partition every "
            f"{num(inproc.get('flush_every'))} events (the default `batch_size`) and at the end, updates discarded; "
            f"the user-activity component (`target/plugins/user_activity.wasm`), default limits, epoch ticker on. "
            f"{num(inproc.get('updates_per_run'))} updates per run. One thread."
        )
        w(
            "- **core** (no plugin): the same events through the same public pieces the processor uses "
            "(`event::Schema::decode`, an interner like the processor's, `window::Partition::apply`, "
            "`Partition::drain` at the same points), without building plugin batches, calling the plugin "
            "or formatting feature records."
        )
        w(
            f"- **plugin alone**: the {num(inproc.get('batches'))} batches ({num(inproc.get('rows'))} rows, "
            f"median {num(inproc.get('rows_per_batch_median'))} rows per batch) that these flushes hand the "
            f"plugin, captured once (built exactly as `Processor` builds them), then timed through "
            f"(i) `Plugin::compute` on the wasm component, (ii) **native**: the plugin's own logic "
            f"(user-activity's columnar `compute_batch`: nulls read as 0, the average divided out, the last "
            f"action's column passed through) compiled natively in the bench, and (iii) **native-sdk-rows**: "
            f"the Rust SDK's per-row path natively (what a plugin that only writes the per-row `compute` runs: "
            f"a `Value` per cell, text lent per row, `compute` returning a `Vec<Value>`, typed column builders "
            f"with a dictionary) over user-activity's per-row `compute`. "
            f"The three give identical outputs (checked before timing)."
        )
        w(
            "- **WASM cost.** The processor only takes a wasm `Plugin`, so the native path is not run as such; "
            "per repetition it is computed as *full − plugin(wasm) + plugin(native)* on the same batches, "
            "and the ratio is *native path time / full time* = WASM-path throughput / native-path throughput. "
            "This assumes the plugin call does not change the cost of the rest (caches), which favours neither side much."
        )
        w(
            f"- {inproc.get('reps')} repetitions; within each, the variants run one after the other, the order "
            f"rotated by one each repetition. A fresh processor and freshly loaded plugin per *full* run, "
            f"which starts from an empty window and is timed in two parts: its first "
            f"{num(inproc.get('fill_events'))} events fill the window (one hour of event time, no event "
            f"expires yet), the rest run with the window full (each event also expires older ones): the "
            f"steady state of a long-running pipeline. "
            f"Throughput = events / time, from wall-clock time and, separately, the thread's CPU time "
            f"(`/proc/thread-self/schedstat`)."
        )
        w("")
        w("| | wall clock | thread CPU |")
        w("|---|---|---|")
        for key, label in [
            ("full_events_per_s", "full path, events/s"),
            ("full_steady_events_per_s", "full path with the window full (after the first hour of event time), events/s"),
            ("core_events_per_s", "core only (decode + windows + drain), events/s"),
            ("native_path_events_per_s", "native path (the plugin's logic natively), events/s"),
            ("sdk_rows_path_events_per_s", "native path (the SDK's per-row path), events/s"),
            ("wasm_over_native_path", "**WASM path / native path**"),
            ("wasm_over_sdk_rows_path", "WASM path / native path (the SDK's per-row path)"),
            ("plugin_call_wasm_over_native", "plugin call alone: native time / wasm time"),
        ]:
            digits = 3 if "over" in key else 0
            w(f"| {label} | {spread(wall.get(key), digits)} | {spread(cpu.get(key), digits)} |")
        w("")
        w("Where the time of the full path goes (wall clock, ns per event, medians):")
        w("")
        w("| part | ns/event | share |")
        w("|---|---|---|")
        nspe = wall.get("ns_per_event", {})
        full_ns = med(nspe.get("full"))
        for key, label in [
            ("core", "decode + windows + drain"),
            ("plugin_wasm", "plugin call (wasm)"),
            ("glue", "the rest of `flush`: batch building, feature JSON, counters (and online keys, in runs before 2026-11-29 11:00 UTC) (full − core − plugin)"),
            ("full", "full path"),
        ]:
            v = med(nspe.get(key))
            share = f"{100 * v / full_ns:.0f}%" if v is not None and full_ns else "n/a"
            w(f"| {label} | {num(v)} | {share} |")
        w("")
        nspr = wall.get("ns_per_row", {})
        w(
            f"Per plugin row (one changed entity): wasm {num(med(nspr.get('plugin_wasm')), 1)} ns, "
            f"native {num(med(nspr.get('plugin_native_columnar')), 1)} ns, "
            f"native-sdk-rows {num(med(nspr.get('plugin_native_sdk')), 1)} ns."
        )
        other = wall.get("other_languages", {})
        notes = inproc.get("other_languages_notes", {})
        if other or notes:
            w("")
            w(
                f"Other guest languages, same logic, plugin call alone on the first "
                f"{num(inproc.get('other_languages_rows'))} rows of the same batches:"
            )
            w("")
            w("| plugin | ns per row | rows/s |")
            w("|---|---|---|")
            w(
                f"| Rust (wasm), all batches | {num(med(nspr.get('plugin_wasm')), 0)} | "
                f"{num(1e9 / med(nspr.get('plugin_wasm')) if med(nspr.get('plugin_wasm')) else None)} |"
            )
            for label, r in other.items():
                w(f"| {label} (`user_activity_{label[:2] if label == 'python' else 'js'}.wasm`) | {spread(r.get('ns_per_row'))} | {spread(r.get('rows_per_s'))} |")
            for label, note in notes.items():
                w(f"| {label} | {note} | — |")
        languages = wall.get("languages_full_path_events_per_s", {})
        if languages:
            w("")
            w(
                f"The same plugin in each language, full path (decode, windows, plugin, feature JSON) "
                f"on the first {num(inproc.get('languages_full_path_events'))} events, the ones whose "
                f"flushes made those batches:"
            )
            w("")
            w("| plugin | events/s (wall) |")
            w("|---|---|")
            for label, r in languages.items():
                w(f"| {label} | {spread(r)} |")
        w("")

    # ---------------------------------------------------------------- memory
    w("## Memory of the window state")
    w("")
    if "error" in memory:
        w(f"Failed: `{memory['error']}`")
        w("")
    elif memory:
        sk = memory.get("skewed", [{}])[0]
        di = memory.get("distinct", [{}])[0]
        w("**Method.** Each scenario runs in a fresh child process (the bench binary re-executed):")
        w("")
        w(
            "1. generate the payloads (30 min of event time, so every event stays in the 1 h window), load "
            "the plugin, create the processor and warm it up (one event on a scratch partition, flushed, released);"
        )
        w(
            "2. read the RSS (`/proc/self/statm`, resident pages × page size) and the live heap bytes (a counting "
            "wrapper around the allocator, on only in these children);"
        )
        w(
            "3. feed every event through `Processor::process_batch` with a flush every 5,000 events (updates "
            "discarded), then read both again. The deltas are the window state (entities, events, aggregates, "
            "expiry index, interner), including allocator overhead and growth slack; RSS also keeps what the "
            "allocator freed but did not return (flush garbage)."
        )
        w("")
        w(
            f"Scenarios: **skewed**: {num(sk.get('events_fed'))} events over {num(sk.get('entities'))} users "
            f"(of {num(results.get('inproc', {}).get('users') or 100000)}, skewed); **distinct**: "
            f"{num(di.get('events_fed'))} users with one event each (1M active entities). User ids are 12 "
            f"bytes (`user_0001234`). Bytes per event and per entity come from solving "
            f"*delta = a × events held + b × entities* over the two scenarios (per repetition); a is the "
            f"marginal cost of one more event in an entity's window, b the fixed cost of an entity (its "
            f"key, slot, entry in the key table, aggregates and distinct-count map, expiry index entry, the first allocation of its event buffer)."
        )
        w("")
        w("| | RSS delta | live heap delta |")
        w("|---|---|---|")
        rf, hf = fit.get("rss_delta", {}), fit.get("heap_delta", {})
        w(f"| bytes per event in window (a) | {spread(rf.get('bytes_per_event'), 1)} | {spread(hf.get('bytes_per_event'), 1)} |")
        w(f"| bytes per entity, fixed (b) | {spread(rf.get('bytes_per_entity'))} | {spread(hf.get('bytes_per_entity'))} |")
        w(
            f"| skewed: delta / events held ({num(sk.get('events_held'))} events, {num(sk.get('entities'))} entities) | "
            f"{spread(rf.get('skewed_bytes_per_event_held'), 1)} | {spread(hf.get('skewed_bytes_per_event_held'), 1)} |"
        )
        w(
            f"| distinct: delta / entity (1M entities × 1 event) | {spread(rf.get('distinct_bytes_per_entity'))} | "
            f"{spread(hf.get('distinct_bytes_per_entity'))} |"
        )
        w(f"| process RSS at 1M active entities | {num(med(rss1m) / 2**20 if med(rss1m) else None)} MiB | — |")
        w("")
        kinds = memory.get("kinds") or {}
        if kinds:
            w("### By window kind")
            w("")
            w(
                "The window state alone (no plugin, no processor): user-activity's aggregations (count, "
                "distinct actions, sum of values, last action) over one 1 h window of each kind instead of its "
                "sliding window, fed the same two scenarios through the processor's public pieces (decode, "
                "`Partition::apply`, `Partition::drain` every 5,000 events) in fresh child processes, and fitted "
                "the same way. Hopping windows hop by 15 min; sessions close after a 15 min gap and stay "
                "visible for 1 h. *Events held* is what the entities keep: a tumbling, hopping or session "
                "window keeps the events of its open and last fired instances (each event once, whatever the "
                "number of instances holding it) and also the watermark each arrived at; a sliding window "
                "keeps running aggregates and no watermark."
            )
            w("")
            w("| window kind | bytes per event held (RSS) | bytes per entity (RSS) | bytes per event held (live heap) | bytes per entity (live heap) | events held (skewed) | entities (skewed) |")
            w("|---|---|---|---|---|---|---|")
            order = ["sliding", "tumbling", "hopping", "session"]
            for kind in sorted(kinds, key=lambda k: order.index(k) if k in order else len(order)):
                k = kinds[kind]
                kf = k.get("fit", {})
                kr, kh = kf.get("rss_delta", {}), kf.get("heap_delta", {})
                ks = (k.get("skewed") or [{}])[0]
                w(
                    f"| {kind} | {spread(kr.get('bytes_per_event'), 1)} | {spread(kr.get('bytes_per_entity'))} | "
                    f"{spread(kh.get('bytes_per_event'), 1)} | {spread(kh.get('bytes_per_entity'))} | "
                    f"{num(ks.get('events_held'))} | {num(ks.get('entities'))} |"
                )
            w("")

    # ---------------------------------------------------------------- e2e
    w("## End to end on Kafka and Redis, and the Python loop")
    w("")
    if "error" in e2e:
        w(f"Failed: `{e2e['error']}`")
        w("")
    elif e2e:
        w("**Method.**")
        w("")
        w(
            f"- A fresh topic of {e2e.get('partitions')} partitions per invocation, {num(e2e.get('events'))} events "
            f"pre-produced into it (keyed by `user_id`, partition = user mod 4, lz4, "
            f"{num(e2e.get('produce_seconds'), 1)} s to produce); {num(e2e.get('users'))} users, skewed "
            f"({num(e2e.get('distinct_users'))} distinct occur); event times over the {num(e2e.get('span_s') / 3600 if e2e.get('span_s') else None, 1)} h "
            "before the wall clock (so the Python loop's wall-clock hour holds about half of them)."
        )
        w(
            f"- **Wafer**: `wafer::run` in-process with a `[kafka]` + `[redis]` config like the tests' "
            f"(`Env::config`) but with this batching (`batch_size` = {e2e.get('batch_size')}, "
            f"`linger_ms` = {e2e.get('linger_ms')}, `max_in_flight_batches` = {e2e.get('max_in_flight_batches', 'n/a')}, "
            f"`max_batch_size` = {batch_cap(e2e)}, "
            f"`commit_interval_ms` = {e2e.get('commit_interval_ms', 'n/a')}), "
            "its own group, Redis key prefix and output topic per run (the shipped defaults are `batch_size` 5000, "
            "`linger_ms` 10, `max_in_flight_batches` 2, `max_batch_size` 100,000, `commit_interval_ms` 250). "
            "The bench polls the group's committed offsets every 50 ms; **sustained events/s = events / "
            "(time from calling `run` to all four committed offsets at the end offsets)**, so start-up "
            "(plugin load from the artifact cache, group join) is included. *Steady* excludes it: "
            "events committed after the first commit was seen / time since then."
        )
        w(
            f"- **Python loop** (`scripts/bench/python_loop.py`, confluent-kafka + redis-py, see the file for "
            f"what it does per event): its own group on the same topic, over the first "
            f"{num(e2e.get('python_events'))} events"
            + (
                f" of the {num(e2e.get('events'))} (fewer, to keep the run within minutes: it is the per-event "
                "loop; its per-event cost grows with each user's history, so a shorter run flatters it)"
                if (e2e.get("python_events") or 0) < (e2e.get("events") or 0)
                else " (the same events as Wafer, as issue 6 asks: the loop's per-event cost grows with each "
                "user's history, so its rate depends on how many events it has seen)"
            )
            + (
                "; **some runs hit the time cap** and covered fewer events (see the raw results)"
                if any(r.get("capped") for r in e2e.get("python_runs") or [])
                else ""
            )
            + f", with a time cap of {num(e2e.get('python_max_seconds'))} s. Rate = events consumed / time from "
            "start to the last produce acknowledged (start-up included, like Wafer's); *steady* = first to last event."
        )
        w(
            "- Wafer and Python alternate within each repetition (Wafer first in odd ones), so the "
            "ratio is taken per repetition between neighbours in time."
        )
        w("")
        w("| | events/s (from start) | steady events/s |")
        w("|---|---|---|")
        w(f"| Wafer | {spread(e2e.get('wafer_events_per_s'))} | {spread(e2e.get('wafer_steady_events_per_s'))} |")
        w(f"| Python loop | {spread(e2e.get('python_events_per_s'))} | {spread(e2e.get('python_steady_events_per_s'))} |")
        w(f"| **Wafer / Python** | {spread(e2e.get('wafer_over_python'), 1, '×')} | {spread(e2e.get('wafer_over_python_steady'), 1, '×')} |")
        w("")
        w(
            f"Wafer: time to the first commit seen {spread(e2e.get('wafer_first_commit_s'), 2, ' s')}; "
            f"run time {spread(e2e.get('wafer_seconds'), 1, ' s')}."
        )
        reports = e2e.get("wafer_reports") or []
        if reports:
            c = reports[0].get("counters", {})
            w(
                f"Counters of one Wafer run: {num(c.get('events_in'))} events in, {num(c.get('updates'))} updates, "
                f"{num(c.get('tombstones'))} tombstones, {num(c.get('commits'))} commits, "
                f"{num(c.get('late'))} late, {num(c.get('dead_letters'))} dead letters."
            )
            wr = reports[0].get("writes")
            if wr:
                (nr, tr), (na, ta), (nc, tc) = wr["redis_write"], wr["kafka_ack"], wr["commit"]
                w(
                    f"Its writer: {num(nr)} Redis writes taking {num(tr, 1)} s in all ({num(1000 * tr / max(nr, 1), 1)} ms per "
                    f"batch), {num(na)} waits for acknowledgements {num(ta, 1)} s, {num(nc)} commits {num(tc, 1)} s "
                    f"({num(1000 * tc / max(nc, 1), 1)} ms each), against {spread(e2e.get('wafer_seconds'), 1, ' s')} of run time."
                )
            w("")
            w("CPU during the runs, in cores used on average (CPU seconds / wall seconds; 2 cores = 2.0):")
            w("")
            w("| run | Wafer or Python process | Kafka broker | Redis | everything else (other work on the machine) | whole machine busy |")
            w("|---|---|---|---|---|---|")
            for i, r in enumerate(reports):
                cpu_ = r.get("cpu", {})
                w(
                    f"| Wafer {i + 1} | {num(cpu_.get('bench_process_cores'), 2)} | {num(cpu_.get('kafka_cores'), 2)} | "
                    f"{num(cpu_.get('redis_cores'), 2)} | {num(others(cpu_, cpu_.get('bench_process_cores'), cores), 2)} | "
                    f"{num(100 * cpu_.get('machine_busy_fraction', float('nan')))}% |"
                )
            for i, r in enumerate(e2e.get("python_runs") or []):
                cpu_ = r.get("cpu", {})
                py_cores = (
                    r.get("process_cpu_seconds", 0) / r["seconds"] if r.get("seconds") else None
                )
                w(
                    f"| Python {i + 1} | {num(py_cores, 2)} | {num(cpu_.get('kafka_cores'), 2)} | "
                    f"{num(cpu_.get('redis_cores'), 2)} | {num(others(cpu_, py_cores, cores), 2)} | "
                    f"{num(100 * cpu_.get('machine_busy_fraction', float('nan')))}% |"
                )
            w("")
            threads_table(reports[0].get("cpu", {}), "Wafer run 1")
            out.extend(THREADS_OUT)
            THREADS_OUT.clear()
        if e2e.get("python_missing"):
            w("")
            w("The Python loop did not run: no venv (`scripts/bench/setup-venv.sh`).")
        for err in e2e.get("errors") or []:
            w(f"- error: `{err}`")
        w("")

    # ---------------------------------------------------------------- latency
    w("## Event-to-Redis latency at a fixed offered rate")
    w("")
    runs = latency.get("runs", [])
    if "error" in latency:
        w(f"Failed: `{latency['error']}`")
        w("")
    elif runs:
        r0 = runs[0]
        w(
            f"**Method.** A fresh 4-partition topic and group per run; Wafer (`wafer::run`, Kafka + Redis config "
            f"as above) is started, and a producer thread in the bench offers {num(r0.get('offered_rate'))} events/s "
            f"(paced every 0.5 ms, `linger.ms` = 1) for {r0.get('warmup_s')} s of warm-up plus {r0.get('measured_s')} s "
            f"measured; event time = send time. Every {num(50)}th event goes to one of 1,000 probe users "
            "(round robin), the rest to the skewed 100k users. Redis keyspace notifications "
            "(`notify-keyspace-events` set to include `K$` for the run, then restored) tell a listener "
            "thread when a probe's key is set; it reads the value back (`GET`) and attributes every probe "
            "event now counted in `event_count_1h` to the moment the value was read. Latency = read-back "
            "time − send time, for probe events sent after the warm-up. The read-back adds a loopback round "
            "trip, so the figures are slightly pessimistic. Wafer runs with `batch_size` = "
            f"{r0.get('batch_size')}, `max_in_flight_batches` = {r0.get('max_in_flight_batches', 'n/a')}, "
            f"`max_batch_size` = {batch_cap(r0)}, "
            f"`commit_interval_ms` = {r0.get('commit_interval_ms', 'n/a')} and the "
            "`linger_ms` shown; the producer, the listener and Wafer share the process."
        )
        w("")
        w("| `linger_ms` | achieved rate | samples | p50 | p90 | p99 | max | unobserved | cores: Wafer+bench process / Kafka / Redis / everything else | machine busy |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            c = r.get("cpu", {})
            w(
                f"| {r.get('linger_ms')} | {num(r.get('achieved_rate'))}/s | {num(r.get('probe_samples'))} | "
                f"{num(r.get('p50_ms'), 1)} ms | {num(r.get('p90_ms'), 1)} ms | {num(r.get('p99_ms'), 1)} ms | "
                f"{num(r.get('max_ms'), 1)} ms | {num(r.get('unobserved_probe_events'))} | "
                f"{num(c.get('bench_process_cores'), 2)} / {num(c.get('kafka_cores'), 2)} / {num(c.get('redis_cores'), 2)} / "
                f"{num(others(c, c.get('bench_process_cores'), cores), 2)} | "
                f"{num(100 * c.get('machine_busy_fraction', float('nan')))}% |"
            )
        w("")
        warm = latency.get("broker_warmup")
        if isinstance(warm, list) and warm:
            figures = "; ".join(
                f"run {k}: failed (`{r['error']}`)"
                if "error" in r
                else f"run {k}: p50 {num(r.get('p50_ms'), 1)} ms, p99 {num(r.get('p99_ms'), 1)} ms, "
                f"Kafka {num(r.get('cpu', {}).get('kafka_cores'), 2)} cores"
                for k, r in enumerate(warm, 1)
            )
            w(
                f"Before these runs, {len(warm)} run(s) like them (`linger_ms` = {warm[0].get('linger_ms')}) warmed the "
                "broker and were not measured. A broker's first tens of seconds of a steady stream of small "
                "requests (after its start, or after only the bulk traffic of the end-to-end section) are much "
                "slower: in paired runs, a p99 of seconds with the broker using over a core, settling over one to "
                "three runs (presumably its JIT compiling). Warm-up runs go on until the broker's CPU in a run "
                "falls by less than a tenth from the run before, at most `WAFER_BENCH_LAT_BROKER_WARMUP` runs; the rule "
                f"reads the broker's CPU, not the latency. Their figures: {figures}."
            )
            w("")
        elif isinstance(warm, dict) and "p99_ms" in warm:
            wc = warm.get("cpu", {})
            w(
                f"Before these runs, one run like them (`linger_ms` = {warm.get('linger_ms')}) warmed the broker "
                "and was not measured: a broker's first seconds of a steady stream of small requests "
                "(after its start, or after only the bulk traffic of the end-to-end section) can be much slower "
                "(in paired runs, a p99 of seconds with the broker using over a core; presumably its JIT "
                f"compiling). Its figures: p50 {num(warm.get('p50_ms'), 1)} ms, "
                f"p99 {num(warm.get('p99_ms'), 1)} ms, Kafka {num(wc.get('kafka_cores'), 2)} cores."
            )
            w("")
        elif isinstance(warm, dict) and "error" in warm:
            w(f"The broker warm-up run failed: `{warm['error']}`")
            w("")
        threads_table(runs[-1].get("cpu", {}), f"the latency run with `linger_ms` = {runs[-1].get('linger_ms')} (producer and listener threads included)")
        out.extend(THREADS_OUT)
        THREADS_OUT.clear()
        for err in latency.get("errors") or []:
            w(f"- error: `{err}`")
    else:
        w("Not measured.")
        w("")

    # ---------------------------------------------------------------- operations
    w("## Operations: first commit, rebuild, hot reload")
    w("")
    if "error" in ops:
        w(f"Failed: `{ops['error']}`")
        w("")
    elif ops:
        render_ops(w, ops)
    else:
        w("Not measured.")
        w("")

    # ---------------------------------------------------------------- profile
    w("## What dominates")
    w("")
    w("### In process (profile)")
    w("")
    out.extend(profile_section(profile_dir, results))
    w("")
    w("### Reading")
    w("")
    nspe = wall.get("ns_per_event", {})
    full_ns = med(nspe.get("full"))
    core_ns = med(nspe.get("core"))
    glue_ns = med(nspe.get("glue"))
    plug_ns = med(nspe.get("plugin_wasm"))
    if full_ns:
        w(
            f"- In process, an event costs about {num(full_ns)} ns: {num(core_ns)} ns to decode it, update "
            f"the windows and drain them, {num(glue_ns)} ns of flush work outside the plugin (batches, one feature JSON and one "
            f"key per update) and {num(plug_ns)} ns of plugin call. The 2M "
            f"events/s target is 500 ns per event in total."
        )
    cg = load(os.path.join(profile_dir, "callgrind.json"))
    pf = load(os.path.join(profile_dir, "perf.json"))
    incl = callgrind_entries(os.path.join(profile_dir, "callgrind.inclusive.txt")) if cg else []
    pc_ = lambda pattern: component_pct(incl, pattern)
    child = (cg or pf).get("child") or {}
    rows_per_event = (child.get("updates") or 0) / child["events"] if child.get("events") else None
    def pct(x):
        return f"{x:.0f}%" if x is not None else "n/a"
    if cg:
        w(
            f"- **Instructions** (callgrind): `flush` is {pct(pc_('wafer::pipeline::Processor::flush'))} of them "
            f"(feature JSON strings {pct(pc_('wafer::pipeline::push_json_str'))}, "
            + (f"online keys {pct(keys_pct)}, " if (keys_pct := pc_('wafer::pipeline::Processor::key')) is not None else "")
            + f"the wasm call {pct(pc_('wafer::plugin::engine::Plugin::compute'))}, "
            f"drain {pct(pc_('wafer::window::Partition::drain'))}), `process_batch` {pct(pc_('wafer::pipeline::Processor::process_batch'))} "
            f"(decode {pct(pc_('wafer::event::Schema::decode_into'))}; window updates "
            f"{pct(pc_('wafer::window::Partition::apply_batch'))}). With a full window, every event also "
            "evicts an older one, so a flush emits more rows than it received events (decayed entities are re-emitted; "
            f"{num(rows_per_event, 2)} updates per event in the profiled run): per-row costs (JSON, plugin row, "
            "drain) count that many times per event."
        )
    if pf:
        fam = dict(perf_families(perf_entries(os.path.join(profile_dir, "perf.report.txt"))))
        win = fam.get(FAMILIES[0][0])
        alloc = fam.get(FAMILIES[1][0])
        w(
            f"- **Time** (perf, `{pf.get('event')}`): the window state's own code is {pct(win)} of the time although "
            f"it is a small share of the instructions: it is memory-bound. Each event touches its entity's "
            "slot, its buffer of held events, its aggregates and distinct-count list and re-keys the entity in the expiry "
            "index, and (window full) does the same for the entity whose event leaves the window; "
            "`aggregate` then reads them again at drain. With ~90k entities this state does not stay in cache. "
            f"The allocator's own code is {pct(alloc)} of the time."
        )
    nspr = wall.get("ns_per_row", {})
    rw, rs, rc = (med(nspr.get(k)) for k in ("plugin_wasm", "plugin_native_sdk", "plugin_native_columnar"))
    if rw and rs and rc is not None and full_ns and plug_ns is not None:
        w(
            f"- The WASM boundary is not what limits throughput today: the wasm call is "
            f"{100 * plug_ns / full_ns:.0f}% of the in-process path. Per row it costs {num(rw, 1)} ns "
            f"(the plugin's columnar logic: {num(rc, 1)} ns natively; the rest is lowering and lifting the "
            f"columns and the output checks). The SDK's per-row path, which a plugin that writes only the "
            f"per-row `compute` runs, costs {num(rs)} ns per row natively (a `Value` per cell, a `Vec` per "
            f"row, a dictionary lookup per text value)."
        )
    if reports := e2e.get("wafer_reports"):
        cores = [r.get("cpu", {}).get("bench_process_cores") for r in reports]
        cores = [c for c in cores if isinstance(c, (int, float))]
        busy = [r.get("cpu", {}).get("machine_busy_fraction") for r in reports]
        busy = [b for b in busy if isinstance(b, (int, float))]
        if cores:
            avg = sum(cores) / len(cores)
            avg_busy = 100 * sum(busy) / len(busy) if busy else float("nan")
            bound = (
                "so Wafer is not CPU-bound end to end: it waits. "
                if avg_busy < 80
                else "so CPU was scarce during these runs. "
            )
            if e2e.get("max_in_flight_batches") == 0:
                flushes = (
                    "With `max_in_flight_batches` = 0, at every flush (each `batch_size` events or "
                    "`linger_ms`), consumption stops until the Redis pipeline, the acknowledgements of the "
                    "`ml-features` records (`acks=all`, `linger.ms` = 5) and the synchronous offset commit have "
                    "completed, one after the other (the consuming thread, `tokio-rt-worker` in the thread "
                    "table, is the busiest); the in-process cost per event above bounds what one core could do "
                    "in any case."
                )
            else:
                flushes = (
                    "Flushes do not stop consumption: each flushed batch (plugin calls done, feature records "
                    "queued, checkpoints taken at the boundary) goes to the writer, whose write stage writes the "
                    "Redis pipeline and whose commit stage then waits for the `ml-features` acknowledgements, "
                    "appends the offline log and commits, each in order, while the consuming task "
                    "(`tokio-rt-worker`) applies the next batch; `max_in_flight_batches` bounds the batches "
                    "handed off (see docs/architecture.md). The Redis writes take most of the writer's time "
                    "(above), and that is mostly the Redis server's CPU running the guarded script."
                )
            split = ""
            wr = reports[0].get("writes") or {}
            runs = (e2e.get("wafer_seconds") or {}).get("values") or []
            if "flush" in wr and "writer_wait" in wr and runs and e2e.get("events"):
                tf, tw = wr["flush"][1], wr["writer_wait"][1]
                rest = runs[0] - tf - tw
                split = (
                    f" In run 1 ({num(runs[0], 1)} s), the consuming task spent {num(tf, 1)} s preparing flushed "
                    f"batches (drain, plugin, feature records, Kafka records queued) and {num(tw, 1)} s waiting for "
                    f"a free in-flight slot; the other {num(rest, 1)} s, {num(1e6 * rest / e2e['events'], 1)} µs per "
                    "event, it applied events or waited for records"
                    + (
                        f" (in process, decode, windows and drain cost {num(core_ns / 1000, 1)} µs per event on one core)."
                        if core_ns
                        else "."
                    )
                )
            w(
                f"- End to end, the Wafer process used {num(avg, 2)} cores on average while catching up, and the "
                f"whole machine (broker and Redis included) was {num(avg_busy)}% busy, " + bound + flushes + split
            )
            cpu0 = reports[0].get("cpu", {})
            events = e2e.get("events")
            wall = cpu0.get("wall_s")
            parts = [cpu0.get(k) for k in ("bench_process_cores", "redis_cores", "kafka_cores")]
            if events and wall and all(isinstance(x, (int, float)) for x in parts):
                us = [1e6 * x * wall / events for x in parts]
                total = sum(us)
                w(
                    f"- CPU per event end to end (run 1): Wafer {num(us[0], 1)} µs, Redis {num(us[1], 1)} µs, "
                    f"the broker {num(us[2], 1)} µs, {num(total, 1)} µs in all. On this 2-core machine, with the "
                    f"broker and Redis on it, that caps any schedule at about {num(2e6 / total)} events/s; "
                    "300,000 events/s would leave 6.7 µs per event for all three, less than Wafer's in-process "
                    "path and Redis's guarded write per event take today."
                )
    w("")
    w("### Optimized so far")
    w("")
    w(
        "- Decoding is one streaming pass over the JSON that reads only the fields the plugin and the "
        "schema name, skips the rest without building it, and borrows strings without escapes "
        "(previously: a full `serde_json::Value` tree per event). A unit test checks it against the "
        "value-tree decoder on 20,000 random payloads per entity-key shape."
    )
    w(
        "- Feature records are written without per-value allocations (integers and floats formatted "
        "in place exactly as serde_json prints them, strings escaped only when they need it), and "
        "the online key comes from a template split once (previously: `serde_json::to_string` per "
        "string, two `str::replace` and a `format!` per update)."
    )
    w(
        "- Redis writes: one guarded script call carries up to 128 entities of a view (previously one "
        "`EVALSHA` per entity update, about 1.12 per event, whose fixed per-call cost in Redis was about "
        "a third of the Redis time). Old and new binaries (both on commit `4ac3c23`) run alternately in one session (e2e section, "
        "2 repetitions each, three times, 2026-11-26): Redis CPU per entity update (`INFO commandstats`, "
        "`evalsha` usec over updates) went from 5.8-6.2 µs to 4.4-4.7 µs (about -24%), and Wafer end to "
        "end from 56,500-63,700 to 69,700-77,000 events/s (medians 62,400 and 73,100: ×1.17). What remains per "
        "entity is mostly the guard's `GET` and the `SET ... EX` themselves (about 2.7 µs as plain "
        "commands on this machine) and the Lua calls around them."
    )
    w(
        "- End to end: flushed batches are written and committed by a writer while the source consumes "
        "the next batch (`[pipeline] max_in_flight_batches`; 0 is the previous synchronous flush); commits "
        "stay in order and after their batch's writes, a revoke waits for the batches in flight. The "
        "writer has two stages (Redis writes; acknowledgements and commits), so from 2 batches in flight "
        "a batch's Redis write runs during the previous batch's commit. Measured on one binary per step, "
        "single e2e runs alternating on a quiet machine (2026-11-26 14:20-14:40 UTC): synchronous (0) vs one "
        "writer task (1): 62,400 / 68,600 / 63,000 vs 75,400 / 71,000 / 69,200 events/s; one task (1) vs "
        "two stages (2): 75,800 / 72,900 / 77,700 vs 83,800 / 72,500 / 93,000 events/s. Event-to-Redis "
        "p99 at 20,000 events/s with `linger_ms` 20, single runs: 94 ms synchronous, 65 ms with one task, "
        "40 ms with two stages (24.5 ms at `linger_ms` 10); the shipped `linger_ms` went from 100 to 10 "
        "(a full run at 20 measured p99 53 ms); these runs use `max_in_flight_batches` 2 (then not yet the default)."
    )
    w(
        "- Offsets are committed at most every `[pipeline] commit_interval_ms` (250 ms) instead of with "
        "every flush (at `linger_ms` 10 and a low rate that was 100 synchronous commits a second, each "
        "in the path of the next batch with one batch in flight). Old and new binaries alternating, single "
        "runs, 2026-11-26 17:10-17:20 UTC: event-to-Redis p99 at 20,000 events/s (`linger_ms` 10, "
        "`max_in_flight_batches` 2) 283 and 82 ms before, 28 and 27 ms after (p50 about 14 ms both); end to "
        "end with `max_in_flight_batches` 1 (then the default), 56,000 and 62,300 before, 92,900 and 106,300 "
        "events/s after."
    )
    w(
        "- Batches grow while the writer is behind (`[pipeline] max_batch_size`, default 100,000): when "
        "every in-flight slot is taken, the source keeps applying records to the batch instead of waiting, "
        "and flushes it once the oldest batch completes. An entity's updates within a batch are coalesced, "
        "so under a backlog each event costs fewer Redis writes, feature records and plugin rows. A "
        "flush's Redis calls now go out in pipelines of 32 script calls (about 4,000 entities), one after "
        "the other: one pipeline for a whole large batch took longer than the Redis client's 500 ms "
        "response timeout, and the write was retried forever (a 200,000-record cap stalled that way "
        "before the split). Paired single e2e runs, old binary (`07a5831`) and new ones alternating, "
        "2026-11-27 02:40-03:50 UTC, with the Python loop's runs (first two rounds) or a short one between: "
        "without growth 58,500 / 66,300 / 62,700 / 69,400 events/s and 1.12-1.13 updates per event "
        "(202 batches per 1M events); a 50,000 cap 77,200 / 88,900 / 80,800 / 82,600 events/s, 0.66-0.69 "
        "updates per event (38 batches); a 200,000 cap 92,600 / 87,000 events/s, 0.44 updates per event "
        "(15 batches); the shipped 100,000 cap 81,700 / 48,100 against 47,700 / 34,900 events/s without "
        "growth in the same minutes (a busier machine), 0.60-0.62 updates per event (22-25 batches). "
        "Batches do not grow at rates the writer keeps up with, so the latency runs at 20,000 events/s "
        "are unaffected."
    )
    w(
        "- The latency section first makes unmeasured runs at the offered rate, to warm the broker "
        "(`WAFER_BENCH_LAT_BROKER_WARMUP`). The p99 of seconds in the run of 2026-11-27 05:02 UTC came "
        "from the broker, not from batch growth: one binary with `max_batch_size` 100,000 and 0 "
        "alternating at `linger_ms` 10 (2026-11-27 07:10-07:30 UTC) gave p99 5,858 / 164 / 47 ms with "
        "growth and 123 / 85 / 34 ms without, the first run right after the broker started; after a "
        "restart with the end-to-end section first, 7,368 / 82 ms without growth and 49 ms with it; "
        "after another restart, three runs with growth gave 5,292 / 293 / 61 ms. Whichever binary ran "
        "first after the broker's start, its p99 was seconds and the broker used 1.2-1.3 cores instead "
        "of about 0.6; the runs after it were in the tens of milliseconds."
    )
    w(
        "- One warm-up run was not always enough: on 2026-11-27 11:40-11:50 UTC, after a broker "
        "restart, the run after the warm-up run still had p50 1.7 s and p99 5.0 s, the broker using "
        "0.95 cores (1.35 in the warm-up run) and the machine 98% busy. Redis's own latency monitor "
        "showed single commands (an `EVALSHA`, even a plain `GET` of 40 ms) taking up to 1.4 s: Redis "
        "was waiting for a core, not working. Four restarts, each followed by two runs: p99 6,094 / "
        "1,785, 6,848 / 51, 6,475 / 4,755 and 8,517 / 79 ms, the broker at 1.29-1.32 cores in the "
        "first run and 0.72-0.92 in the second (half of them with a 1 GiB broker heap instead of "
        "512 MiB, which changed nothing); a third run had 0.67 cores and p99 53 ms. The broker's GC "
        "log (`scripts/services.sh` now writes it beside the broker's log) shows young pauses of "
        "10-28 ms every 2 s, not pauses of seconds. So the warm-up now repeats until the broker's CPU "
        "settles (until it falls by less than a tenth from one run to the next, at most four runs); the rule reads the "
        "broker's CPU, not the latency. It does not remove every tail: its first use, after a restart, "
        "gave warm-up p99 5,298 / 535 / 47.5 / 47.1 ms (broker 1.30 / 0.82 / 0.63 / 0.59 cores), then "
        "186.7 ms in the measured run. A single run at 20,000 events/s can still have a tail of hundreds "
        "of milliseconds on this shared machine; in the one such tail looked at closely (timelines of "
        "every flush, Redis write and acknowledgement wait), flushes stayed small and regular while the "
        "probes' events reached Redis together, 100-250 ms late, and a few Redis writes took 50-100 ms "
        "instead of 5-10."
    )
    w(
        "- The Kafka outputs count acknowledgements per batch (one counter the producer's delivery "
        "callback increments, waking the commit stage once all are in) instead of a future per record "
        "(a channel allocated per record, completed from the producer's thread and awaited one by one). "
        "Paired single runs end to end (same session): 84,400 and 72,400 before, 99,100 and 91,500 events/s "
        "after. Records the consumer has already fetched are then applied in one run, without going "
        "through the loop's wake-up `select!` (timer and notifications) per record: 107,100 and 105,900 "
        "before, 108,700 and 112,800 events/s after."
    )
    w(
        "- With these, end to end is bound by Redis: measured alone on this machine (all calls pipelined, "
        "60,000 entities, Redis CPU from `INFO cpu`), one entity costs Redis about 3.9 µs in the guarded "
        "script, 2.8 µs in a script with the `SET ... EX` alone (no guard) and 1.8 µs as a plain pipelined "
        "`SET ... EX`; end to end it is about 5 µs per update, on a single-threaded server. Two batches "
        "in flight keep Redis busier (paired single runs: 94,700 and 109,700 events/s with 1, 118,400 and "
        "116,200 with 2); 2 became the default once the crash tests emulated a crash by shutting the "
        "host's whole runtime down (aborting the run's future let a stage finish the offline append it was in "
        "after the abort, which a crash test caught). The `json` guard then read `computed_at` at its fixed place from the record's end "
        "instead of with a pattern match: Redis CPU per update 5.63 and 5.23 µs before, 5.52 and 4.76 after "
        "(paired e2e runs while a CI build shared the machine)."
    )
    w(
        "- Since then, the consuming task is the larger bound, not Redis. The flush and writer-wait "
        "timings (`wafer_flush_duration_seconds`, `wafer_writer_wait_duration_seconds`, added "
        "2026-11-27) split the consuming task's time in single e2e runs of 1,000,000 events "
        "(2026-11-27 10:40-10:50 UTC): of 9.3-10.8 s, 2.1-2.5 s went to preparing flushed batches, "
        "1.4-2.0 s to waiting for a free in-flight slot (Redis writing 5.3-6.6 s in all), 0.8-1.3 s to "
        "waiting for records (temporary timers around the loop's `select!`) and 5.1-5.6 s to applying "
        "events: about 5.2 µs per event, against 3.0 µs for decode, windows and drain in process. The "
        "difference is the shared machine (broker and Redis on the same two cores) and librdkafka's "
        "per-message work; no single function stands out in a perf profile of the consuming thread."
    )
    w(
        "- `computed_at` for each Redis update is formatted by hand (fixed width, years 0-9999; chrono's "
        "`format` parsed its pattern on every call, about 5% of the consuming thread end to end)."
    )
    w(
        "- The window state is prefetched: emission (`Partition::drain`) asks the CPU for the slots of the "
        "dirty entities 8 ahead and for the state those slots point to (oldest and newest held events, "
        "sliding aggregates, distinct counts) 4 ahead; advancing stream time does the same for the next "
        "entries of the expiry index (the entities due next, in order) and, 2 ahead, for their distinct-count "
        "lists. Each entity's misses then overlap with the work on the ones before it instead of following "
        "it. Old and new binaries alternating, in-process section with 3 repetitions each, three pairs "
        "(2026-11-27 00:00-00:35 UTC): core path 188,800 / 191,900 / 224,000 before, 283,300 / 264,100 / "
        "263,000 events/s after (×1.2-1.5); full path with the plugin 160,400 / 171,600 / 154,800 before, "
        "174,300 / 187,000 / 184,900 after (×1.09-1.19). In the profile, emission's own code (`drain`, "
        "`aggregate`, `shows_nothing`) went from about 17% of the time to under 7%. Emitting an entity "
        "moves its key into its update instead of copying it."
    )
    w(
        "- The entities' expiry index is a calendar queue (`window/expiry.rs`) instead of an ordered set "
        "of (time, slot): one vector per 1/256 of the plan's reach (about 14 s for 1 h), the bucket due "
        "next sorted once when reached and popped in order, so re-keying an entity is a push; a re-keyed "
        "entity's old entry stays until reached and is skipped there (swept once such entries outnumber "
        "live ones by 4,096); times past 1,024 buckets wait in an ordered set. A proptest checks it "
        "against an ordered set. Old and new binaries alternating, in-process section with 3 repetitions "
        "each, three pairs (2026-11-27 07:45-07:55 UTC): core path 267,500 / 235,200 / 267,700 before, "
        "301,500 / 285,500 / 309,600 events/s after (×1.13-1.21); full path with the plugin 187,700 / "
        "201,200 / 197,600 before, 180,600 / 220,600 / 219,000 after (×0.96-1.11). Memory section, one "
        "run: 233 B per entity (RSS fit; 250 before), 43.6 B per event in window (43.1)."
    )
    w(
        "- The Rust SDK's row loop inside the plugin lends each text cell to the rows that have it (one "
        "`Value` per dictionary entry per batch, moved into the row's cell and back) instead of copying "
        "the string per row, and finds a returned text's dictionary code by scanning a dictionary of up "
        "to 16 entries (a hash map beyond) instead of hashing it with SipHash. The same bench binary with "
        "the old and new component alternating (in-process section, 2 repetitions each, five pairs, "
        "2026-11-27 14:00-14:15 UTC): the wasm call per row 477 / 381 ns before (medians of the first three "
        "and last two pairs), 367 / 317 ns after (about -20%); full path 164-217k events/s before, "
        "179-247k after (pair medians ×1.06-1.33)."
    )
    w(
        "- The JavaScript SDK reads int64 cells from their two 32-bit words (a number when it is a safe "
        "integer) and writes int64 features the same way, instead of a BigInt per value, and builds its "
        "rows without copying each one twice. Old and new component alternating (in-process section, 2 "
        "repetitions each, three pairs, 2026-11-27 14:35-14:45 UTC): the JavaScript full path 12,600-17,600 "
        "events/s before, 20,900-37,600 after (medians 15,500 and 22,900: ×1.48); its plugin call 75 µs per "
        "row before, 42 µs after (medians). A unit test checks int64 cells and features at the safe-integer "
        "edges and beyond against BigInt arithmetic."
    )
    w(
        "- Decoding and feature records (2026-11-27 17:00-18:10 UTC, commit `a621ad8`): (i) decoding "
        "reads a flat object whose keys and strings hold no escapes with a hand-written scanner (numbers "
        "that serde_json reads exactly in one step, ISO-8601 UTC timestamps without chrono) and leaves "
        "anything else, errors included, to the serde_json pass, so results and error texts are "
        "unchanged (random-payload tests compare the two, floats to the bit, and the timestamp parser "
        "with chrono); (ii) each view's fixed record text (the opening up to a single-field entity id, "
        "every feature's escaped `,\"name\":`) is escaped once per plugin version and `computed_at` once "
        "per flush, instead of in every record. callgrind on the profiling child (50,000 events after "
        "50,000, window not yet full): decode 2,628 → 1,490 instructions per event, flush -14%, all "
        "instructions -20.8%. Old and new binaries alternating, three pairs each: in-process section (2 "
        "repetitions) full path 169 / 201 / 148k before and 222 / 220 / 182k events/s after (×1.09-1.31), "
        "core path ×1.15-1.37; end to end (one run each) 82.0 / 79.0 / 80.5k before and 87.3 / 90.7 / "
        "93.9k events/s after (×1.06-1.17)."
    )
    w(
        "- Columnar plugin logic (2026-11-27 22:00-22:50 UTC): the Rust SDK's `FeaturePlugin` gained an "
        "optional `compute_batch` over the batch's WIT columns (the default still runs the per-row "
        "`compute`), and user-activity implements it: its counts pass through with nulls read as 0, "
        "the average is one division per row, the latest-action column passes through unchanged, so "
        "no `Value`, `Vec` or string is made per row (a test checks it against the per-row path on "
        "random batches with nulls). callgrind on the profiling child: all instructions 662M → 493M "
        "(-25.5%), the plugin call 173.5M → 4.3M. The same bench binary with the per-row and the "
        "columnar component alternating (in-process section, 2 repetitions each, five pairs): the "
        "wasm call 297-482 → 12-21 ns per row; full path ×0.96 / 0.99 / 1.18 / 1.23 / 1.29 (202-256k → "
        "232-261k events/s). End to end it is not detectable: six pairs of single runs (old binary and "
        "per-row component against new binary and columnar component, which includes the `MGET` change "
        "below) gave ×0.87-1.18, median about ×1.0, the plugin being a small share of the consuming "
        "task there. The WASM-cost ratio now compares against this logic run natively (the plugin's "
        "own), and reports the SDK's per-row path beside it."
    )
    w(
        "- The Redis `json` guard reads a call's stored records in one `MGET` instead of a `GET` per "
        "entity, and the `json` and `hash` scripts take the view's TTL once per call instead of per "
        "entity: Redis time per entity written 6.6-7.0 → 6.0-6.1 µs (-12%; same 100,000 records "
        "three times per variant, three rounds, `INFO commandstats`)."
    )
    w(
        "- mimalloc as the global allocator (the `wafer` binary and the bench), and the decoder's "
        "strings read eight bytes at a time (2026-11-28 01:40-02:05 UTC; a word test finds the first "
        "quote, backslash or control character, checked against a byte-by-byte search on random words, "
        "and the random-payload tests now also draw strings longer than a word). callgrind on the "
        "profiling child (50,000 events after 50,000): all instructions 493.2M → 429.7M (mimalloc) → "
        "414.5M (strings), the string reader 50.5M → 35.2M. Old and new bench binaries alternating: the "
        "profiling child's steady state (window full, 300,000 events after 500,000; six pairs) ×1.48-1.92, "
        "median about ×1.55 (146-250k → 222-326k events/s); the in-process section, which starts from an "
        "empty window (four pairs, 2 repetitions each), full path ×0.97 / 1.05 / 1.07 / 1.40; end to end "
        "(five pairs of single runs) ×1.17 / 1.34 / 1.18 / 1.16 / 0.88, median ×1.17 (90-141k → "
        "120-132k events/s). The gain shows once the window is full, when events expire and entities' "
        "buffers shrink and grow (glibc's heap fragmenting is the likely cause, not shown); the earlier "
        "tries (below) timed runs dominated by filling the window. Cost: mimalloc keeps more freed "
        "memory resident, so the RSS fit of bytes per event in window rose from 43.5 to about 54 B "
        "(the live heap stays 46.0 B). Returning freed pages at once (`MIMALLOC_PURGE_DELAY=0`) was "
        "measured on 2026-11-28 13:50 UTC on commit 52939e4: RSS fit 45.6 → 36.5 B per event (one run "
        "of each memory child), but the profiling child's steady state (window full, 500,000 events "
        "after 500,000; five alternating pairs) ×0.69-0.88, median ×0.84 (likely the freed pages faulted "
        "in and cleared again, not shown), so the default (purging after a delay) is kept."
    )
    w(
        "- Window state for the RSS fit of bytes per event (2026-11-28 04:30-05:10 UTC). An entity's "
        "held-events buffer grows by an eighth of its events instead of doubling (and gives back half "
        "once three quarters stand empty, for entities whose rate fell), and a partition's entity slots "
        "grow in fixed chunks of 1,024 instead of one vector that doubles by copying every slot (over "
        "100 MB at a million entities, a stall while it copies). Memory children, same machine, two "
        "runs each: bytes per event in window by the RSS fit 56.0 → 51.8 (chunks) → 45.6 B (and the "
        "growth), live heap 46.0 → 41.7 → 31.3 B; bytes per entity 218 → 231 B (RSS fit). Growing by "
        "quarters gave 47.3 B, by sixteenths 45.6 B. Speed, old and new bench binaries alternating: "
        "the profiling child's steady state (window full; five pairs) ×0.93-1.21, median ×1.05; "
        "filling the window (500,000 events from empty; six rounds) chunks alone median about ×1.06, "
        "with the growth by eighths about ×0.98 (each growth copies the buffer: about eight events' "
        "words per event held)."
    )
    w(
        "- Arriving events' state is prefetched too (2026-11-28 19:30-20:10 UTC). The sources apply "
        "records in runs of up to 64 of one partition (`Processor::process_batch`: the Kafka source takes "
        "the records the consumer has already fetched, the file source 64 lines), and the windows "
        "(`Partition::apply_batch`) hash a run's keys first, then ask for each entity's index line 16 "
        "events before applying its event, its slot 8 before, the state the slot points to 4 before and "
        "its distinct-count lists 2 before (each stage's addresses are read from the one before). The "
        "entity index is now an open-addressing table of (32 bits of the key's hash, slot id) instead of "
        "hashbrown's table, whose lookup gives no address to prefetch; growing it no longer reads every "
        "key. Advancing stream time now prefetches every expiry-index entry that reached a stage since "
        "the last advance (entries were skipped when one advance took several entities). A run's events "
        "share one buffer of decoded fields, and an emitted row keeps up to 4 aggregation cells inline "
        "(one allocation less per row). Proptests apply random streams in batches of 2-39 events against "
        "the naive reference (and the replay property), besides one by one. Old and new bench binaries "
        "alternating, the profiling child's steady state (window full, 500,000 events after 500,000; "
        "four pairs): 227 / 260 / 278 / 235k before, 365 / 367 / 387 / 351k events/s after (×1.39-1.61, "
        "median ×1.45); by step, the batched lookups with the new index ×1.06-1.42 (five pairs), the "
        "expiry prefetch ×1.03 / 1.26 / 1.04, the fields buffer and inline cells ×0.98-1.18 (four pairs). "
        "In the perf profile, `find` (11.7% of the time) is gone and `EntityWindow::insert` went from "
        "7.4% to 3.4%; `Partition::advance` (13%) and the allocator (about 10%) lead. End to end (e2e "
        "section without the Python loop, one run each, three pairs): 131 / 121 / 151k before, 143 / 137 / "
        "140k events/s after (×0.93-1.13, median ×1.09), within the noise of single runs: end to end is "
        "bound by Redis and the two shared cores more than by applying events."
    )
    w(
        "- A rebuild replays in runs too (2026-11-29 10:00-10:20 UTC, after the full run above): the Kafka "
        "source's replay takes up to 64 records the replay consumer has already fetched and hands each "
        "view those from its own rebuild offset as one run (`Processor::replay_batch`), which the windows "
        "apply with `Partition::apply_batch` between the recorded idle advances (a run is cut before "
        "each one, redone at its offset as before). The replay property (random streams of every window "
        "kind) now also replays in runs of 2-39 events, and a test replays a stream with idle advances "
        "through the plugin one record at a time and in runs of 1-100 (the same checkpoints, counters "
        "and feature updates after). Old and new bench binaries alternating, the operations section's "
        "rebuild of 500,000 events (three pairs of single runs): 422 / 549 / 484k before, 547 / 619 / "
        "680k events/s after (×1.30 / 1.13 / 1.40, median ×1.30). `wafer backfill` applies its records "
        "in runs of 64 as well (not timed here); a test backfills with a flush every 150 records and "
        "checks every row against the reference at its as-of time."
    )
    w(
        "- Online keys are made by the online stores, not by the flush (2026-11-29 10:40-10:55 UTC): a "
        "feature update carries its entity id and no key, the Redis sink renders each key from the "
        "view's template (split once per view, as the flush did) where it used to copy the flush's, "
        "and the `json` guard's as-of text is formatted once per run of equal as-of times instead of "
        "per entity. The consuming task no longer allocates, renders and frees a key per update (3% of "
        "its instructions in the last callgrind profile); the writer allocates one instead of two. "
        "Old and new bench binaries alternating, the profiling child's steady state (window full, "
        "500,000 events after 500,000; eleven pairs): ×0.78-1.32, median ×1.03, within this machine's "
        "noise."
    )
    w(
        "- Tried and dropped (no gain or slower, in-process A/B on this machine): mimalloc as the global "
        "allocator on 2026-11-26 and 2026-11-27 (end to end and in process within noise then; adopted "
        "on 2026-11-28, above); prefetching the entities due to expire twice as far ahead on 2026-11-28 (4, "
        "12 and 20 entries instead of 2, 4 and 8; six pairs of the profiling child's steady state "
        "×0.95-1.10, median ×0.99); expiring entities once per run of 64 events instead of before each "
        "event that moves stream time (a prototype on 2026-11-29, stream time still set per event; "
        "four alternating pairs of the profiling child's steady state ×0.86 / 1.40 / 0.84 / 0.90, median "
        "about ×0.88: the cost in `Partition::advance` is the expiring entities' cold state, not the "
        "calls; it was not exact either: the updates emitted and the events held differed from "
        "applying one event at a time, 901,746 against 908,709 updates); "
        "a binary heap with lazy deletion for the "
        "entities' expiry schedule instead of the ordered set (core path about 8% slower: expiry times "
        "arrive nearly in order, which suits the B-tree's hot rightmost leaf); `GETRANGE` of the record's "
        "tail instead of `GET` in the Redis guard (slower in Redis). `SET ... GET` would save a Redis call "
        "per entity (about 15% of the script's time) but cannot keep the stored record's TTL when the "
        "write is skipped, which the TTL rule promises (docs/config.md), so it was not adopted. "
        "Transparent huge pages for the heap (glibc's `glibc.malloc.hugetlb=1`, the process "
        "re-executing itself with it set; 2026-11-27 13:30-14:05 UTC): the profiling child's "
        "steady state (window full, 500,000 events) gained in 17 of 20 alternating pairs, median about "
        "×1.1, but the in-process section (three pairs: full path 158-260k events/s with, 172-216k "
        "without) and end to end (three pairs: 90,800 / 97,400 / 83,300 with, 89,300 / 89,500 / "
        "86,100 events/s without) did not move beyond noise, so the re-execution was not kept."
    )
    w(
        "- First measured (commit `0038d89`, 2026-11-26 03:26 UTC, same machine): in-process "
        "231,506 events/s per thread-CPU second (core only 367,161), 33.5 B per event in window and "
        "709 B per entity; with the two changes above alone (commit `e300ca8`) the full path "
        "reached about 280,000 events/s per thread-CPU second (a 3-repetition run of the in-process "
        "section only)."
    )
    w(
        "- **Regression since then, partly recovered**: the window engine was rewritten for tumbling, "
        "hopping and session windows, watermarks and the exact replay rule (commit `ea4b024`: 87.5 B per "
        "event in window, 940 B per entity, core only about 238,000 events/s per thread-CPU second). "
        "Then (branch `winperf`): each entity keeps its held events in one buffer (time, stored fields, "
        "and the arrival watermark only when the plan has a tumbling, hopping or session window, the only "
        "ones that read it) instead of one deque per column; no offset is kept per event (the replay "
        "start comes from per-time-bucket first offsets, 1/64 of the plan's reach, instead of an "
        "offset-to-time map of every held event); the entity index is a table of slot ids with the key "
        "kept once, inline in the slot up to 22 bytes; sliding `first`/`last` read the newest or oldest "
        "event instead of collecting the window's indexes; session and sliding state is allocated only "
        "for plans with such windows. Measured on the memory section (one run each, same machine; "
        "after merging the tiles and sketches): 87.5 → 42.6 B per event in window and 940 → 442 B per "
        "entity (RSS fit; live heap 92.0 → 44.4 B and 736 → 376 B), RSS at 1M entities 1,108 → 594 MiB. *Core* events per thread-CPU second "
        "did not clearly move: 0.96–1.18× the previous commit's over four pairs of in-process runs "
        "(each binary once per pair, alternating; median 1.03×; full path median 0.98×) on a loaded "
        "machine (load average 3–10 on 2 cores), so the 238,000 → 367,000 gap is not closed. In a cpu-clock profile of the core path, most "
        "samples of the window code fall on the first load of cold entity state (the key table and "
        "slot, the newest held event, the aggregates, the distinct-count map): it is memory-bound."
    )
    w(
        "- Fixed cost per entity (2026-11-26, commit after `18a1184`): the sliding windows' counts, "
        "running sums and moments are one allocation of words per entity (previously one for the "
        "windows, one per window for its sums, one for its moments); a distinct-count keeps up to two "
        "values inline, then a list sized to its values, a hash map only past 32 values (previously a "
        "hash map from the first value: about 84 bytes of table for one value); the slot's dirty flag "
        "is a bit in the partition, its expiry time has no `Option` tag, and the rarely used session "
        "and tile state are one-pointer vectors. Memory section, same machine, one run before and "
        "after: 442 → 250 B per entity (RSS fit; live heap 376 → 218 B), 42.6 → 43.2 B per event in "
        "window (the distinct-count lists of entities with several values now count per event: live "
        "heap 44.4 → 45.5 B)."
    )
    w("")

    # ---------------------------------------------------------------- caveats
    w("## Not measured yet, and caveats")
    w("")
    w("- Operations: the hot-reload pause is the host's own measure of the swap (see the operations section); the flush of the batch in progress that precedes it is a normal batch-boundary flush and is not counted in it. Times from the host's readiness transitions have millisecond resolution.")
    w("- The native path of the WASM-cost ratio is computed (full − wasm call + native call on the same batches), not run: `Processor` only accepts a wasm plugin.")
    w("- Memory figures include allocator overhead and capacity slack of the current data structures; RSS deltas also include freed-but-retained heap, the live-heap column does not.")
    w("- The bench binary installs a counting global allocator (for the memory section); outside the memory children it costs one relaxed atomic load per allocation (about 1.5% of the instructions in the profile).")
    w("- Python's run covers the same events as Wafer's unless `WAFER_BENCH_PY_EVENTS` is set lower (or the time cap stops it): the loop slows as its histories grow, so a shorter Python run gives it a higher rate.")
    w("- Latency samples come from probe users only (one event in 50), with a Redis read-back per notification.")
    w("- Single runs of a shared VM: treat differences under ~10–20% as noise.")
    w("")
    w("## Rerunning")
    w("")
    w("```sh")
    w("make bench                 # builds, starts Kafka + Redis, runs everything, rewrites this file (about 25 min)")
    w("WAFER_BENCH_SECTIONS=inproc,memory make bench   # a subset (inproc, memory, e2e, latency, ops)")
    w("```")
    w("")
    w(
        "Knobs (environment): `WAFER_BENCH_REPS` (in-process/memory repetitions, default 5), "
        "`WAFER_BENCH_INPROC_EVENTS` (1,000,000), `WAFER_BENCH_USERS` (100,000), `WAFER_BENCH_FLUSH_EVERY` "
        "(5,000), `WAFER_BENCH_SPAN_S` (7,200), `WAFER_BENCH_EVENTS` (end to end, 1,000,000), "
        "`WAFER_BENCH_E2E_REPS` (3), `WAFER_BENCH_BATCH_SIZE` / `WAFER_BENCH_LINGER_MS` (5,000 / the shipped `linger_ms`, 10), "
        "`WAFER_BENCH_IN_FLIGHT` (`max_in_flight_batches` of the e2e and latency runs; the shipped default, 2), "
        "`WAFER_BENCH_MAX_BATCH` (their `max_batch_size`; the shipped default, 100,000), "
        "`WAFER_BENCH_PY_EVENTS` (`WAFER_BENCH_EVENTS`), `WAFER_BENCH_PY_SECONDS` (900), `WAFER_BENCH_LAT_RATE` (20,000), "
        "`WAFER_BENCH_LAT_SECONDS` (20), `WAFER_BENCH_LAT_WARMUP_S` (5), `WAFER_BENCH_LAT_LINGERS` (`10,20,100`), `WAFER_BENCH_LAT_BROKER_WARMUP` (4: at most four unmeasured latency runs first, until the broker's CPU settles; 0: none), "
        "`WAFER_BENCH_OPS_REPS` (first-commit runs, 5), `WAFER_BENCH_OPS_FIRST_EVENTS` (20,000), "
        "`WAFER_BENCH_OPS_REBUILD_EVENTS` (500,000), `WAFER_BENCH_OPS_RATE` (10,000), `WAFER_BENCH_OPS_USERS` "
        "(10,000), `WAFER_BENCH_OPS_RELOADS` (10), `WAFER_BENCH_OPS_RELOAD_EVERY_MS` (1,000), "
        "`WAFER_BENCH_PROFILE_EVENTS` (50,000), `WAFER_BENCH_PROFILER` (`auto`, `perf`, `callgrind`, `none`). "
        "Raw results: `target/bench/results.json`."
    )
    w("")
    return "\n".join(out)


def render_ops(w, ops):
    fc = ops.get("first_commit") or {}
    rb = ops.get("rebuild") or {}
    rl = ops.get("reload") or {}
    w(
        f"Real Kafka and Redis as above; fresh topics, groups and Redis prefixes per invocation; Wafer "
        f"with `batch_size` = {ops.get('batch_size')}, `linger_ms` = {ops.get('linger_ms')}, the "
        "admin endpoint on a free loopback port."
    )
    w("")
    w("### Time to the first commit")
    w("")
    if fc:
        w(
            f"**Method.** A 4-partition topic holding {num(fc.get('events_in_topic'))} events. The artifact cache "
            "(`~/.cache/wafer/artifacts`) is warm (the plugin was loaded before), and one unmeasured run "
            f"warms the broker and librdkafka up; then {fc.get('runs')} runs, each with a fresh group (no "
            "commit, so nothing to rebuild): time from calling `wafer::run` until the bench sees a committed "
            f"offset on any partition (it polls the group's committed offsets every {fc.get('poll_every_ms')} ms). "
            "The assignment time comes from the host's readiness (`/partitions`, first `assigned` "
            "transition, wall clock in ms). *Plugin load* is what `View::build` does, timed alone: an engine "
            "with the artifact cache and `load_file` of the component."
        )
        w("")
        w("| | median (min–max, n) |")
        w("|---|---|")
        w(f"| **call → first committed offset** | {spread(fc.get('seconds'), 3, ' s')} |")
        w(f"| call → partitions assigned (engine, plugin load, connect, group join) | {spread(fc.get('call_to_assignment_s'), 3, ' s')} |")
        w(f"| assignment → first committed offset (first fetch, first batch, flush, commit) | {spread(fc.get('assignment_to_first_commit_s'), 3, ' s')} |")
        w(f"| plugin load from the warm artifact cache, alone | {spread(fc.get('plugin_load_ms'), 2, ' ms')} |")
        w("")
    w("### State rebuild (replay on assignment)")
    w("")
    if rb:
        w(
            f"**Method.** A 4-partition topic with {num(rb.get('events'))} events whose event times span the "
            "30 minutes before the wall clock, so that every event is still in the 1 h window at the end. "
            f"A first run processes and commits them all ({num(rb.get('first_run_seconds'), 1)} s). A second "
            "run of the **same group** then rebuilds each assigned partition's window state by replaying "
            "from the checkpoint's `rebuild_from` to the committed offset, partition after partition. "
            "Rate = records replayed (the `replay` of `/partitions`) / time from the first partition's "
            "`rebuilding` transition to the last one's `ready`."
        )
        w("")
        w("| | value |")
        w("|---|---|")
        w(f"| records replayed (`/partitions`; `wafer_replayed_total` says {num(rb.get('replayed_counter'))}) | {num(rb.get('replayed'))} |")
        w(f"| **rebuild time** | {num(rb.get('rebuild_ms'))} ms |")
        w(f"| **rebuild rate** | {num(rb.get('events_per_s'))} events/s |")
        w(f"| first assignment → every partition ready | {num(rb.get('assignment_to_ready_ms'))} ms |")
        state = rb.get("state") or [None, None]
        w(f"| window state at the end (entities, events) | {num(state[0])}, {num(state[1])} |")
        w("")
        parts = rb.get("partitions") or []
        if parts:
            w("Per partition (in rebuild order):")
            w("")
            w("| partition | records | ms | events/s |")
            w("|---|---|---|---|")
            for p in parts:
                w(f"| {p.get('partition')} | {num(p.get('records'))} | {num(p.get('ms'))} | {num(p.get('events_per_s'))} |")
            w("")
            first_rate = parts[0].get("events_per_s") or 0
            later = parts[1:]
            later_rates = sorted(p.get("events_per_s") or 0 for p in later)
            if first_rate and later_rates and first_rate > 2 * later_rates[len(later_rates) // 2]:
                extra = sorted(
                    (p.get("ms") or 0) - 1000 * (p.get("records") or 0) / first_rate for p in later
                )
                w(
                    f"The first partition replays at {num(first_rate)} events/s, the later ones at about "
                    f"{num(later_rates[len(later_rates) // 2])}: each later partition's replay (the same replay "
                    f"consumer, reassigned from one partition to the next) carries about "
                    f"{num(extra[len(extra) // 2])} ms (median) more than its records need at the first one's "
                    f"rate; together {num(100 * sum(extra) / rb['rebuild_ms'] if rb.get('rebuild_ms') else None)}% "
                    "of the rebuild time."
                )
                w("")
    w("### Hot-reload pause")
    w("")
    if rl:
        ups = rl.get("uploads") or []
        validated = sorted(u.get("validated_ms") for u in ups if u.get("validated_ms") is not None)
        active = sorted(u.get("active_after_ms") for u in ups if u.get("active_after_ms") is not None)
        def mid(xs):
            return xs[len(xs) // 2] if xs else None
        w(
            f"**Method.** Wafer runs on a fresh topic while a producer thread offers {num(rl.get('rate'))} "
            f"events/s (event time = send time, {num(rl.get('users'))} skewed users). After 2 s, every "
            f"{num(rl.get('reload_every_ms'))} ms the bench uploads a new version through the admin endpoint "
            "(`POST /plugins`), alternately `target/fixtures/user_activity_v2.wasm` (same logic, version "
            "`0.2.0-reload`) and the shipped plugin, and waits until it is active; "
            f"{rl.get('reloads')} reloads. The **pause** is the host's own measure of each swap "
            "(`swap_pause_us` of each version, also the `wafer_plugin_swap_pause_seconds` histogram): from "
            "taking the validated version to the replaced one kept for rollback and the one before it dropped. "
            "No batch is processed during it. The flush of the batch in progress just before the swap is a "
            "normal batch-boundary flush brought forward and is not counted. Once the stream ends and every "
            "partition is committed, every user's features in Redis are compared with a recomputation from "
            "the events sent (all of them are inside the 1 h window): `event_count_1h`, `unique_actions_1h` "
            "and `avg_value_1h`."
        )
        w("")
        pm = rl.get("pause_ms")
        chk = rl.get("check") or {}
        w("| | value |")
        w("|---|---|")
        w(f"| **swap pause** | {spread(pm, 3, ' ms')} |")
        w(f"| largest swap pause | {num(rl.get('pause_max_ms'), 3)} ms |")
        w(f"| swaps counted (`wafer_reloads_total`) | {num(rl.get('reloads_counted'))} of {num(rl.get('reloads'))} uploads |")
        w(f"| upload answered (compile from cache, validate, smoke run), median | {num(mid(validated), 1)} ms |")
        w(f"| upload sent → version active (next batch boundary; polled every 5 ms), median (max) | {num(mid(active), 1)} ms ({num(active[-1] if active else None, 1)} ms) |")
        w(f"| events sent / consumed / late / dead letters | {num(rl.get('events_sent'))} / {num(rl.get('events_in'))} / {num(rl.get('late'))} / {num(rl.get('dead_letters'))} |")
        ok = (
            chk.get("events_missing") == 0
            and chk.get("events_double_counted") == 0
            and chk.get("users_otherwise_wrong") == 0
            and chk.get("users_absent") == 0
        )
        w(
            f"| end state vs recomputation ({num(chk.get('users'))} users) | "
            f"{'**exact**: ' if ok else '**differs**: '}{num(chk.get('events_missing'))} events missing, "
            f"{num(chk.get('events_double_counted'))} counted twice, {num(chk.get('users_absent'))} users absent, "
            f"{num(chk.get('users_otherwise_wrong'))} users with other wrong values |"
        )
        w("")
        vals = (pm or {}).get("values") or []
        if vals:
            w(
                "Pauses in order (ms): " + ", ".join(num(v, 3) for v in vals) + ". The run's first swap has "
                "no older version to drop; every later swap also drops the version two back (the only extra work), "
                "hence the difference."
            )
            w("")
    for err in ops.get("errors") or []:
        w(f"- error: `{err}`")
    if ops.get("errors"):
        w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--profile-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    text = render(load(args.results), load(args.env), args.profile_dir)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"report: wrote {args.out}")


if __name__ == "__main__":
    main()
