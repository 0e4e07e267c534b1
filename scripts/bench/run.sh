#!/usr/bin/env bash
# scripts/bench/run.sh: the benchmark suite of issue 6 (`make bench`).
#
# Builds what is needed (plugins, the bench binary in the release profile, the Python
# baseline's venv), starts Kafka and Redis on loopback (scripts/services.sh), runs
# host/benches/wafer_bench.rs (in-process throughput and WASM cost, memory, end to end with
# the Python loop interleaved, latency at a fixed rate, operations: first commit, rebuild,
# hot-reload pause), profiles the in-process path
# (perf when the CPU counters are available, callgrind otherwise), and writes
# docs/benchmarks.md. Raw outputs go to target/bench/.
#
# Every measurement stops by itself; the whole run takes about 25 minutes on a 2-core machine,
# most of it the Python loop over the same events as Wafer (about 5 minutes per repetition);
# a hard cap stops the bench binary after WAFER_BENCH_TIMEOUT_S, default 3600 s.
# Knobs: see the WAFER_BENCH_* variables in host/benches/wafer_bench.rs and docs/benchmarks.md;
# WAFER_BENCH_PROFILER = auto | perf | callgrind | none; WAFER_BENCH_SKIP_BUILD=1 reuses the build;
# WAFER_BENCH_DOC writes the report elsewhere (default docs/benchmarks.md), WAFER_BENCH_OUT_DIR the raw
# outputs (default target/bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT_DIR="${WAFER_BENCH_OUT_DIR:-$ROOT/target/bench}"
DOC="${WAFER_BENCH_DOC:-$ROOT/docs/benchmarks.md}"
PROFILER="${WAFER_BENCH_PROFILER:-auto}"
PROFILE_EVENTS="${WAFER_BENCH_PROFILE_EVENTS:-50000}"
BENCH_TIMEOUT="${WAFER_BENCH_TIMEOUT_S:-3600}"

log() { printf 'bench: %s\n' "$*" >&2; }
STARTED="$(date +%s)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR/results.json"

# ------------------------------------------------------------------------------ build
if [[ "${WAFER_BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building plugins (Rust, and the Python and JavaScript ones item 5 compares) and the test fixtures (the ops section hot-loads user_activity_v2.wasm)"
    make --no-print-directory plugins plugins-py plugins-js fixtures >&2
    log "building the bench binary (cargo bench --no-run, release profile)"
    cargo bench -p wafer --bench wafer_bench --no-run >&2
fi
BENCH_EXE="$(cargo bench -p wafer --bench wafer_bench --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
exe = ""
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "wafer_bench" and m.get("executable"):
        exe = m["executable"]
print(exe)')"
[[ -x "$BENCH_EXE" ]] || { log "cannot find the bench executable"; exit 1; }
log "bench binary: $BENCH_EXE"

PYTHON_BIN="$(scripts/bench/setup-venv.sh)" || {
    log "could not install the Python baseline's venv: the Python loop will not run"
    PYTHON_BIN=""
}

# ------------------------------------------------------------------------------ services
scripts/services.sh start >&2

# ------------------------------------------------------------------------------ run
log "running the suite (sections: ${WAFER_BENCH_SECTIONS:-inproc,memory,e2e,latency,ops})"
set +e
env ${PYTHON_BIN:+WAFER_BENCH_PYTHON="$PYTHON_BIN"} WAFER_BENCH_OUT="$OUT_DIR/results.json" \
    timeout -k 30 "$BENCH_TIMEOUT" "$BENCH_EXE"
BENCH_STATUS=$?
set -e
[[ $BENCH_STATUS -eq 0 ]] || log "the bench binary exited with status $BENCH_STATUS (partial results kept)"

# ------------------------------------------------------------------------------ profile
# The profile child replays the in-process stream (same density), warms the windows up for
# one window's worth of events without profiling, then profiles WAFER_BENCH_PROFILE_EVENTS
# events. With CPU counters, perf samples cycles; without them (VMs), callgrind counts
# instructions and, when perf runs at all, perf also samples the cpu-clock timer (time,
# including cache misses, which instruction counts do not show).
rm -f "$OUT_DIR/callgrind.json" "$OUT_DIR/perf.json"
# The profile child asks for "enable" before the profiled loop and "disable" after it on
# the fifo $1, and waits for a line on the fifo $2 after each; $3 and $4 are the commands that
# serve the two requests.
serve_control() { # CTL ACK ON_CMD OFF_CMD
    local cmd
    for _ in 1 2; do
        cmd="$(timeout 600 cat "$1")" || return 1
        case "$cmd" in
            enable) eval "$3" ;;
            disable) eval "$4" ;;
        esac
        timeout 60 bash -c 'echo ok >"$1"' _ "$2" || return 1
    done
}
run_callgrind() {
    log "profiling $PROFILE_EVENTS events under callgrind (after an uninstrumented warm-up)"
    rm -f "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
    mkfifo "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
    WAFER_BENCH_CHILD=profile WAFER_BENCH_PROFILE_EVENTS="$PROFILE_EVENTS" \
        WAFER_BENCH_CTL="$OUT_DIR/prof.ctl" WAFER_BENCH_ACK="$OUT_DIR/prof.ack" \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT_DIR/callgrind.out" \
        --toggle-collect='*profile_loop*' "$BENCH_EXE" >"$OUT_DIR/callgrind.stdout" 2>"$OUT_DIR/callgrind.stderr" &
    local vpid=$! watchdog
    # Bounded: the run is killed after 15 minutes whatever happens (the watchdog ends with it).
    (
        for _ in $(seq 900); do kill -0 "$vpid" 2>/dev/null || exit 0; sleep 1; done
        kill "$vpid" 2>/dev/null
    ) >/dev/null 2>&1 &
    watchdog=$!
    serve_control "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack" \
        "callgrind_control -i on $vpid >/dev/null" "callgrind_control -i off $vpid >/dev/null" ||
        log "callgrind: the profile child did not ask for instrumentation"
    local status=0
    wait "$vpid" || status=$?
    kill "$watchdog" 2>/dev/null || true
    if [[ $status -eq 0 ]] && grep -q 'Collected : [1-9]' "$OUT_DIR/callgrind.stderr"; then
        callgrind_annotate --inclusive=yes "$OUT_DIR/callgrind.out" >"$OUT_DIR/callgrind.inclusive.txt" 2>/dev/null
        callgrind_annotate "$OUT_DIR/callgrind.out" >"$OUT_DIR/callgrind.exclusive.txt" 2>/dev/null
        printf '{"tool": "callgrind", "events": %s, "child": %s}\n' "$PROFILE_EVENTS" \
            "$(tail -1 "$OUT_DIR/callgrind.stdout")" >"$OUT_DIR/callgrind.json"
    else
        log "callgrind run failed (see $OUT_DIR/callgrind.stderr)"
    fi
    rm -f "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
}
run_perf() { # EVENT
    local event="$1" events=$((PROFILE_EVENTS * 10))
    log "profiling $events events under perf record -e $event"
    rm -f "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
    mkfifo "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
    # Sampling starts disabled; the child enables it around the profiled loop only. No call
    # graphs: release builds have no frame pointers, so inclusive shares would be wrong.
    if WAFER_BENCH_CHILD=profile WAFER_BENCH_PROFILE_EVENTS="$events" \
        WAFER_BENCH_CTL="$OUT_DIR/prof.ctl" WAFER_BENCH_ACK="$OUT_DIR/prof.ack" timeout -k 10 600 \
        perf record -q -e "$event" -D -1 --control "fifo:$OUT_DIR/prof.ctl,$OUT_DIR/prof.ack" \
        -o "$OUT_DIR/perf.data" "$BENCH_EXE" >"$OUT_DIR/perf.stdout" 2>"$OUT_DIR/perf.stderr"; then
        perf report -i "$OUT_DIR/perf.data" --stdio --sort symbol --percent-limit 0.05 \
            >"$OUT_DIR/perf.report.txt" 2>/dev/null
        printf '{"tool": "perf", "event": "%s", "events": %s, "child": %s}\n' "$event" "$events" \
            "$(tail -1 "$OUT_DIR/perf.stdout")" >"$OUT_DIR/perf.json"
    else
        log "perf run failed (see $OUT_DIR/perf.stderr)"
    fi
    rm -f "$OUT_DIR/prof.ctl" "$OUT_DIR/prof.ack"
}
perf_counters() { command -v perf >/dev/null && ! perf stat -e instructions true 2>&1 | grep -q -i -e 'not supported' -e 'permission'; }
perf_timer() { command -v perf >/dev/null && perf stat -e cpu-clock true >/dev/null 2>&1; }
have_callgrind() { command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; }
case "$PROFILER" in
    auto)
        if perf_counters; then
            PROFILER="perf (cycles)"; run_perf cycles
        else
            PROFILER=""
            if have_callgrind; then PROFILER="callgrind"; run_callgrind; fi
            if perf_timer; then PROFILER="${PROFILER:+$PROFILER + }perf (cpu-clock)"; run_perf cpu-clock; fi
            PROFILER="${PROFILER:-none}"
        fi
        ;;
    callgrind) run_callgrind ;;
    perf) run_perf "${WAFER_BENCH_PERF_EVENT:-cycles}"; PROFILER="perf (${WAFER_BENCH_PERF_EVENT:-cycles})" ;;
    *) PROFILER=none ;;
esac

# ------------------------------------------------------------------------------ environment
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
KAFKA_STATUS="$(scripts/services.sh status 2>&1 || true)"
LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" KAFKA_STATUS="$KAFKA_STATUS" PROFILER="$PROFILER" \
PYTHON_BIN="$PYTHON_BIN" STARTED="$STARTED" python3 - "$OUT_DIR/env.json" <<'PY'
import json, os, re, subprocess, sys, time

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""

def lock_version(name):
    text = open("Cargo.lock").read()
    m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return m.group(1) if m else "?"

cpuinfo = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
mem = re.search(r"MemTotal:\s*(\d+) kB", open("/proc/meminfo").read())
kafka = re.search(r"kafka: up .*version ([\w.\-]+)", os.environ.get("KAFKA_STATUS", ""))
redis = re.search(r"redis_version:(\S+)", sh("redis-cli -h 127.0.0.1 -p ${WAFER_REDIS_PORT:-6379} INFO server"))
if not redis:
    redis = re.search(r"v=(\S+)", sh("redis-server --version"))
py = {}
try:
    py = json.loads(sh((os.environ.get("PYTHON_BIN") or "false") + " scripts/bench/python_loop.py --versions"))
except ValueError:
    pass
dirty = [l for l in sh("git status --porcelain --untracked-files=no").splitlines() if l.strip()]
env = {
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "cpu_model": model.group(1).strip() if model else "?",
    "cores": sh("nproc"),
    "memory": f"{int(mem.group(1)) / 2**20:.1f} GiB" if mem else "?",
    "kernel": sh("uname -r"),
    "rustc": sh("rustc --version"),
    "wasmtime": lock_version("wasmtime"),
    "rdkafka": f"{lock_version('rdkafka')} / {lock_version('rdkafka-sys')}",
    "redis_crate": lock_version("redis"),
    "kafka": kafka.group(1) if kafka else "?",
    "java": sh("java -version 2>&1 | head -1"),
    "redis": redis.group(1) if redis else "?",
    "python": py.get("python", "?"),
    "python_libs": f"confluent-kafka {py.get('confluent_kafka', '?')} (librdkafka {py.get('librdkafka', '?')}), redis-py {py.get('redis_py', '?')}",
    "profiler": os.environ.get("PROFILER", "?")
    + (", " + sh("valgrind --version") if "callgrind" in os.environ.get("PROFILER", "") else "")
    + (", " + sh("perf --version") if "perf" in os.environ.get("PROFILER", "") else ""),
    "commit": sh("git rev-parse --short HEAD"),
    "dirty_files": len(dirty),
    "loadavg_before": os.environ.get("LOAD_BEFORE"),
    "loadavg_after": os.environ.get("LOAD_AFTER"),
    "total_seconds": time.time() - int(os.environ.get("STARTED", time.time())),
}
json.dump(env, open(sys.argv[1], "w"), indent=1)
PY

# ------------------------------------------------------------------------------ report
python3 scripts/bench/report.py --results "$OUT_DIR/results.json" --env "$OUT_DIR/env.json" \
    --profile-dir "$OUT_DIR" --out "$DOC"
log "done in $(( $(date +%s) - STARTED )) s: $DOC"
exit "$BENCH_STATUS"
