//! `wafer_bench`: the benchmark harness of issue 6 (first version: measurement only).
//!
//! Run it through `scripts/bench/run.sh` (`make bench`), which builds what is needed,
//! starts Kafka and Redis, runs this binary and renders `docs/benchmarks.md` from the
//! JSON it writes. By hand: `cargo bench -p wafer --bench wafer_bench` (release profile).
//!
//! Sections (`WAFER_BENCH_SECTIONS`, comma-separated; default `inproc,memory,e2e,latency,ops`):
//! - `inproc`: generator -> JSON bytes -> `Processor::process_batch` (runs of up to 64
//!   records of one partition, as the Kafka source applies them) -> `Processor::flush` every
//!   `WAFER_BENCH_FLUSH_EVERY` events, no I/O; next to it, in the same repetition, the same
//!   path without the plugin (decode + windows + drain, rebuilt from the public pieces), and
//!   the plugin call alone on the same batches: the wasm component vs native Rust
//!   reimplementations of user-activity. The variants are interleaved and repeated.
//! - `memory`: window state bytes per event-in-window and per entity, from RSS and live-heap
//!   deltas measured in fresh child processes (this binary re-executed): the whole processor
//!   with user-activity, then the window state alone per window kind (user-activity's
//!   aggregations over one sliding, tumbling, hopping or session window, same events).
//! - `e2e`: real Kafka + Redis: events pre-produced into a fresh 4-partition topic, then,
//!   interleaved per repetition, `wafer::run` until the group's committed offsets reach the
//!   end, and the Python loop (`scripts/bench/python_loop.py`) over the same topic.
//! - `latency`: event-to-Redis latency at a fixed offered rate, with probe users observed
//!   through Redis keyspace notifications, after one unmeasured run that warms the broker.
//! - `ops`: operations on real Kafka + Redis: time from calling `wafer::run` to the first
//!   committed offset (warm artifact cache, fresh group), the rebuild rate of a restarted
//!   group (replay on assignment, from the host's `/partitions` transitions), and the
//!   processing pause of hot reloads under a steady stream (the host's `swap_pause_us`),
//!   with the end state in Redis checked against a recomputation.
//!
//! Every measurement stops by itself (bounded counts and time caps) and talks to loopback
//! only (`WAFER_KAFKA_BROKERS`, `WAFER_REDIS_URL` default to 127.0.0.1).
//! Results go to `WAFER_BENCH_OUT` (default `target/bench/results.json`), rewritten after
//! every section; progress goes to stderr.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mimalloc::MiMalloc;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;

use wafer::event::{format_time, FieldValue, Schema};
use wafer::metrics::Counters;
use wafer::pipeline::{Processor, Record};
use wafer::plugin::{
    AggregationKind, Batch, Column, ColumnData, Descriptor, Plugin, PluginEngine, PluginLimits,
    TextColumn, ValueType, WindowKind,
};
use wafer::window::{AggCell, Arrival, Partition, Plan, Row};

// ------------------------------------------------------------------------------------------
// Live-heap accounting (used by the memory child processes only).

/// The `wafer` binary's allocator (mimalloc), counting live bytes while `COUNTING` is set.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc(layout) };
        if COUNTING.load(Ordering::Relaxed) && !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if COUNTING.load(Ordering::Relaxed) && !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if COUNTING.load(Ordering::Relaxed) && !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ------------------------------------------------------------------------------------------
// Settings.

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn brokers() -> String {
    env_str("WAFER_KAFKA_BROKERS", "127.0.0.1:9092")
}

fn redis_url() -> String {
    env_str("WAFER_REDIS_URL", "redis://127.0.0.1:6379")
}

/// Partitions of the input (in-process and Kafka alike).
const PARTITIONS: i32 = 4;
/// Records of one partition applied together in process (the Kafka source's chunk).
const RUN: usize = 64;
/// 2026-03-01T00:00:00Z: event times of the in-process and memory sections start here.
const START_MS: i64 = 1_772_323_200_000;
const HOUR_MS: i64 = 3_600_000;

struct Settings {
    plugin: PathBuf,
    users: u64,
    reps: usize,
    inproc_events: usize,
    flush_every: usize,
    span_ms: i64,
    e2e_events: usize,
    e2e_reps: usize,
    e2e_timeout: Duration,
    batch_size: usize,
    linger_ms: u64,
    in_flight: usize,
    max_batch: usize,
    py_events: usize,
    py_seconds: f64,
    python: Option<PathBuf>,
    lat_rate: u64,
    lat_seconds: u64,
    lat_warmup: u64,
    lat_lingers: Vec<u64>,
    lat_broker_warmup: u32,
    ops_reps: usize,
    ops_first_events: usize,
    ops_rebuild_events: usize,
    ops_rate: u64,
    ops_users: u64,
    ops_reloads: usize,
    ops_reload_every_ms: u64,
}

impl Settings {
    fn from_env() -> Self {
        let root = repo_root();
        let python = std::env::var_os("WAFER_BENCH_PYTHON")
            .map(PathBuf::from)
            .or_else(|| {
                let p = root.join(".toolchains/bench-venv/bin/python");
                p.exists().then_some(p)
            });
        let shipped = wafer::config::PipelineConfig::default();
        let e2e_events = env_or("WAFER_BENCH_EVENTS", 1_000_000);
        Self {
            plugin: std::env::var_os("WAFER_BENCH_PLUGIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/plugins/user_activity.wasm")),
            users: env_or("WAFER_BENCH_USERS", 100_000),
            reps: env_or("WAFER_BENCH_REPS", 5),
            inproc_events: env_or("WAFER_BENCH_INPROC_EVENTS", 1_000_000),
            flush_every: env_or("WAFER_BENCH_FLUSH_EVERY", 5000),
            span_ms: env_or("WAFER_BENCH_SPAN_S", 7200i64) * 1000,
            e2e_events,
            e2e_reps: env_or("WAFER_BENCH_E2E_REPS", 3),
            e2e_timeout: Duration::from_secs(env_or("WAFER_BENCH_E2E_TIMEOUT_S", 240)),
            batch_size: env_or("WAFER_BENCH_BATCH_SIZE", 5000),
            linger_ms: env_or("WAFER_BENCH_LINGER_MS", shipped.linger_ms),
            in_flight: env_or("WAFER_BENCH_IN_FLIGHT", shipped.max_in_flight_batches),
            max_batch: env_or("WAFER_BENCH_MAX_BATCH", shipped.max_batch_size),
            // Issue 6 compares throughputs over the same number of events: the
            // loop slows down as its in-memory histories grow.
            py_events: env_or("WAFER_BENCH_PY_EVENTS", e2e_events),
            py_seconds: env_or("WAFER_BENCH_PY_SECONDS", 900.0),
            python,
            lat_rate: env_or("WAFER_BENCH_LAT_RATE", 20_000),
            lat_seconds: env_or("WAFER_BENCH_LAT_SECONDS", 20),
            lat_warmup: env_or("WAFER_BENCH_LAT_WARMUP_S", 5),
            lat_broker_warmup: env_or("WAFER_BENCH_LAT_BROKER_WARMUP", 4u32),
            lat_lingers: env_str("WAFER_BENCH_LAT_LINGERS", "10,20,100")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            ops_reps: env_or("WAFER_BENCH_OPS_REPS", 5),
            ops_first_events: env_or("WAFER_BENCH_OPS_FIRST_EVENTS", 20_000),
            ops_rebuild_events: env_or("WAFER_BENCH_OPS_REBUILD_EVENTS", 500_000),
            ops_rate: env_or("WAFER_BENCH_OPS_RATE", 10_000),
            ops_users: env_or("WAFER_BENCH_OPS_USERS", 10_000),
            ops_reloads: env_or("WAFER_BENCH_OPS_RELOADS", 10),
            ops_reload_every_ms: env_or("WAFER_BENCH_OPS_RELOAD_EVERY_MS", 1000),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Measurement helpers.

/// CPU time of the calling thread, in ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of this process in bytes (`/proc/self/statm`, resident pages).
fn rss_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // The kernel reports the page size to every process in its auxiliary vector; the
    // statm unit is that page size. 4 KiB on x86-64 Linux unless huge pages are forced.
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| {
            auxv.chunks_exact(16).find_map(|kv| {
                let key = u64::from_ne_bytes(kv[..8].try_into().ok()?);
                let value = u64::from_ne_bytes(kv[8..].try_into().ok()?);
                (key == 6).then_some(value) // AT_PAGESZ
            })
        })
        .unwrap_or(4096)
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one).
fn process_cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

/// (busy, total) CPU ticks of the whole machine (`/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The pid of a service started by scripts/services.sh (`kafka` or `redis`).
fn service_pid(name: &str) -> Option<String> {
    let dir = std::env::var_os("WAFER_SERVICES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/wafer-services"))
        })?;
    let pid = std::fs::read_to_string(dir.join("run").join(format!("{name}.pid"))).ok()?;
    let pid = pid.trim().to_owned();
    Path::new("/proc").join(&pid).exists().then_some(pid)
}

/// Per thread of this process: (name, CPU ns, ns spent runnable but waiting for a CPU),
/// from `/proc/self/task/*/{comm,schedstat}`.
fn threads_snapshot() -> HashMap<String, (String, u64, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let mut f = stat
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        let (cpu, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (name, cpu, wait),
        );
    }
    out
}

/// Thread names grouped: digits and trailing separators dropped (`rdk:broker12` -> `rdk:broker`).
fn thread_group(name: &str) -> String {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '/' || c == '_');
    if t.is_empty() {
        name.to_owned()
    } else {
        t.to_owned()
    }
}

/// CPU used by this process, the broker, Redis and the whole machine over a span.
struct CpuSpan {
    start: Instant,
    threads: HashMap<String, (String, u64, u64)>,
    me: Option<f64>,
    kafka: Option<(String, f64)>,
    redis: Option<(String, f64)>,
    machine: (u64, u64),
}

impl CpuSpan {
    fn start() -> Self {
        let svc = |name: &str| {
            let pid = service_pid(name)?;
            let cpu = process_cpu_s(&pid)?;
            Some((pid, cpu))
        };
        Self {
            start: Instant::now(),
            threads: threads_snapshot(),
            me: process_cpu_s("self"),
            kafka: svc("kafka"),
            redis: svc("redis"),
            machine: machine_ticks(),
        }
    }

    /// Cores used on average (CPU seconds / wall seconds) by each, over the span.
    fn finish(&self) -> Json {
        let wall = self.start.elapsed().as_secs_f64();
        let cores = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(b), Some(n)) => json!((n - b) / wall),
            _ => Json::Null,
        };
        let svc = |s: &Option<(String, f64)>| match s {
            Some((pid, b)) => cores(Some(*b), process_cpu_s(pid)),
            None => Json::Null,
        };
        let (busy, total) = machine_ticks();
        let machine = (busy - self.machine.0) as f64 / (total - self.machine.1).max(1) as f64;
        // Per thread group of this process: cores used, and cores' worth of time spent
        // runnable but not running (the machine was busy with something else).
        let mut groups: HashMap<String, (f64, f64)> = HashMap::new();
        let (mut wait_total, wall_ns) = (0.0, wall * 1e9);
        for (tid, (name, cpu, wait)) in threads_snapshot() {
            let (cpu0, wait0) = self.threads.get(&tid).map_or((0, 0), |(_, c, w)| (*c, *w));
            let g = groups.entry(thread_group(&name)).or_default();
            g.0 += cpu.saturating_sub(cpu0) as f64 / wall_ns;
            g.1 += wait.saturating_sub(wait0) as f64 / wall_ns;
            wait_total += wait.saturating_sub(wait0) as f64 / wall_ns;
        }
        let mut groups: Vec<(String, (f64, f64))> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        let threads: Vec<Json> = groups
            .iter()
            .filter(|(_, (c, w))| *c >= 0.005 || *w >= 0.005)
            .map(|(name, (c, w))| json!({ "threads": name, "cores": c, "waiting_cores": w }))
            .collect();
        json!({
            "threads": threads,
            "runqueue_wait_cores": wait_total,
            "wall_s": wall,
            "bench_process_cores": cores(self.me, process_cpu_s("self")),
            "kafka_cores": svc(&self.kafka),
            "redis_cores": svc(&self.redis),
            "machine_busy_fraction": machine,
        })
    }
}

/// Wall and thread-CPU time of one timed run.
#[derive(Debug, Clone, Copy, Default)]
struct Timing {
    wall_ns: u64,
    cpu_ns: u64,
}

impl Timing {
    fn measure<R>(f: impl FnOnce() -> R) -> (Self, R) {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        let r = f();
        let wall_ns = start.elapsed().as_nanos() as u64;
        let cpu_ns = thread_cpu_ns().saturating_sub(cpu);
        (Self { wall_ns, cpu_ns }, r)
    }
}

/// Median, min, max and spread of a sample.
fn stats(xs: &[f64]) -> Json {
    if xs.is_empty() {
        return Json::Null;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (min, max) = (v[0], v[v.len() - 1]);
    json!({
        "median": median,
        "min": min,
        "max": max,
        "spread_pct": if median != 0.0 { (max - min) / median.abs() * 100.0 } else { 0.0 },
        "n": v.len(),
        "values": xs,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

// ------------------------------------------------------------------------------------------
// Event generator.

/// Tiny deterministic generator (xorshift*), so every run sees the same stream.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const ACTIONS: [&str; 6] = [
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "search",
    "share",
];

#[derive(Debug, Clone, Copy)]
enum Users {
    /// `n` users, skewed: user `a*b/n` for uniform a, b (low ids much more frequent).
    Skewed(u64),
    /// Every event has its own user.
    Distinct,
}

/// Pre-generated JSON payloads in one buffer, with their partition and event time.
struct Events {
    buf: Vec<u8>,
    ends: Vec<usize>,
    partition: Vec<i32>,
    time_ms: Vec<i64>,
    user: Vec<u32>,
}

impl Events {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn payload(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    fn key(&self, i: usize) -> String {
        user_name(self.user[i])
    }

    fn distinct_users(&self) -> usize {
        let mut u = self.user.clone();
        u.sort_unstable();
        u.dedup();
        u.len()
    }
}

fn user_name(k: u32) -> String {
    format!("user_{k:07}")
}

fn write_event(buf: &mut Vec<u8>, user: &str, action: &str, value: f64, time_ms: i64) {
    use std::io::Write;
    write!(
        buf,
        r#"{{"user_id":"{user}","action":"{action}","value":{value},"timestamp":"{}"}}"#,
        format_time(time_ms)
    )
    .expect("writing to a Vec cannot fail");
}

/// `n` events of `users`, event times advancing evenly from `start_ms` over `span_ms`,
/// one in ten up to 2 s out of order (never late); user k lives on partition k mod 4.
fn generate(n: usize, users: Users, start_ms: i64, span_ms: i64, seed: u64) -> Events {
    let mut rng = Rng::new(seed);
    let mut ev = Events {
        buf: Vec::with_capacity(n * 100),
        ends: Vec::with_capacity(n),
        partition: Vec::with_capacity(n),
        time_ms: Vec::with_capacity(n),
        user: Vec::with_capacity(n),
    };
    for i in 0..n {
        let k = match users {
            Users::Skewed(u) => (rng.below(u) * rng.below(u)) / u.max(1),
            Users::Distinct => i as u64,
        } as u32;
        let mut t = start_ms + ((i as i128 * span_ms as i128) / n.max(1) as i128) as i64;
        if rng.below(10) == 0 {
            t -= rng.below(2000) as i64;
        }
        let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
        let value = rng.below(100_000) as f64 / 100.0;
        write_event(&mut ev.buf, &user_name(k), action, value, t);
        ev.ends.push(ev.buf.len());
        ev.partition.push((k % PARTITIONS as u32) as i32);
        ev.time_ms.push(t);
        ev.user.push(k);
    }
    ev
}

// ------------------------------------------------------------------------------------------
// Plugin loading.

fn engine() -> anyhow::Result<PluginEngine> {
    PluginEngine::with_cache(wafer::config::default_cache_dir())
}

fn load(engine: &PluginEngine, path: &Path, timeout: Duration) -> anyhow::Result<Plugin> {
    let limits = PluginLimits {
        call_timeout: timeout,
        ..PluginLimits::default()
    };
    engine
        .load_file(path, limits)
        .with_context(|| format!("loading {}", path.display()))
}

fn processor(plugin: Plugin) -> Processor {
    Processor::new(plugin, "timestamp", 86_400_000, Counters::default())
}

// ------------------------------------------------------------------------------------------
// In-process: the full path through `Processor`.

/// Feeds every event to `p` and flushes every partition every `flush_every` events
/// (and at the end), discarding the updates. Returns the number of updates.
/// Events are applied as the Kafka source applies them: in runs of up to
/// [`RUN`] records of one partition (as fetched), through `process_batch`.
fn feed(p: &mut Processor, ev: &Events, flush_every: usize) -> u64 {
    feed_range(p, ev, 0..ev.len(), flush_every)
}

/// [`feed`] over the events of `range` only (offsets count from the range's start).
/// Always inlined, so that the profiled loop has its own copy (callgrind's toggle on
/// `profile_loop` would otherwise also count the warm-up's calls).
#[inline(always)]
fn feed_range(
    p: &mut Processor,
    ev: &Events,
    range: std::ops::Range<usize>,
    flush_every: usize,
) -> u64 {
    let mut outcomes = Vec::new();
    let mut updates = 0u64;
    in_runs(ev, range, flush_every, |k, run, flush| {
        p.process_batch((0, k as i32), run, &mut outcomes);
        black_box(&outcomes);
        if flush {
            updates += black_box(p.flush((0, k as i32))).updates.len() as u64;
        }
    });
    updates
}

/// Hands the events of `range` to `apply` as the Kafka source applies records:
/// runs of up to [`RUN`] records of one partition (partition index, run, then
/// whether to flush that partition), offsets counting from the range's start.
/// Every `flush_every` events and at the end, every partition's run so far is
/// handed over with the flush flag set (an empty run too).
#[inline(always)]
fn in_runs<'e>(
    ev: &'e Events,
    range: std::ops::Range<usize>,
    flush_every: usize,
    mut apply: impl FnMut(usize, &[Record<'e>], bool),
) {
    let mut offsets = [range.start as i64; PARTITIONS as usize];
    let mut runs: [Vec<Record<'e>>; PARTITIONS as usize] = Default::default();
    fn apply_all<'e>(
        runs: &mut [Vec<Record<'e>>],
        apply: &mut impl FnMut(usize, &[Record<'e>], bool),
    ) {
        for (k, run) in runs.iter_mut().enumerate() {
            apply(k, run, true);
            run.clear();
        }
    }
    for i in range {
        let part = ev.partition[i] as usize;
        runs[part].push(Record {
            offset: offsets[part],
            reference_ms: ev.time_ms[i],
            payload: Some(ev.payload(i)),
        });
        offsets[part] += 1;
        if runs[part].len() == RUN {
            apply(part, &runs[part], false);
            runs[part].clear();
        }
        if (i + 1).is_multiple_of(flush_every) {
            apply_all(&mut runs, &mut apply);
        }
    }
    apply_all(&mut runs, &mut apply);
}

// ------------------------------------------------------------------------------------------
// In-process: the same path without the plugin, from the public pieces
// (`Schema::decode`, an interner like the processor's, `Partition::apply`, `Partition::drain`).

/// Interns text values as `Processor` does, so windows store 8-byte cells.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
}

struct Core {
    plan: Plan,
    schema: Schema,
    parts: Vec<Partition>,
    interner: Interner,
    cells: Vec<u64>,
}

impl Core {
    fn new(d: &Descriptor) -> Self {
        let plan = Plan::new(d);
        let parts = (0..PARTITIONS).map(|_| Partition::new(&plan)).collect();
        Self {
            schema: Schema {
                entity: wafer::entity::EntityKey::single(&d.entity_key),
                timestamp_field: "timestamp".into(),
                inputs: d.inputs.iter().map(|i| (i.name.clone(), i.kind)).collect(),
                max_future_ms: 86_400_000,
            },
            plan,
            parts,
            interner: Interner::default(),
            cells: Vec::new(),
        }
    }

    /// Decodes a run of one partition's records and applies them as one batch,
    /// as `Processor::process_batch` does.
    fn apply_run(&mut self, part: usize, run: &[Record<'_>]) {
        self.cells.clear();
        let mut decoded = Vec::with_capacity(run.len());
        for r in run {
            let Ok(event) = self.schema.decode(r.payload, r.reference_ms) else {
                continue;
            };
            for (input, _) in &self.plan.stored {
                self.cells.push(match &event.fields[*input] {
                    FieldValue::Int(v) => *v as u64,
                    FieldValue::Float(v) => v.to_bits(),
                    FieldValue::Bool(v) => u64::from(*v),
                    FieldValue::Text(s) => u64::from(self.interner.intern(s)),
                });
            }
            decoded.push((r.offset, event.entity, event.time_ms));
        }
        let width = self.plan.stored.len();
        let arrivals: Vec<Arrival<'_>> = decoded
            .iter()
            .enumerate()
            .map(|(k, (offset, entity, t))| Arrival {
                offset: *offset,
                entity,
                t: *t,
                cells: &self.cells[k * width..(k + 1) * width],
            })
            .collect();
        self.parts[part].apply_batch(&self.plan, &arrivals, |_, r| {
            let _ = black_box(r);
        });
    }

    /// Feeds every event, draining every partition every `flush_every` events; with
    /// `capture`, turns each drain into the plugin batch the processor would build.
    fn feed(&mut self, ev: &Events, flush_every: usize, capture: bool) -> (u64, Vec<Batch>) {
        let mut rows = 0u64;
        let mut batches = Vec::new();
        in_runs(ev, 0..ev.len(), flush_every, |k, run, flush| {
            self.apply_run(k, run);
            if flush {
                let emission = black_box(self.parts[k].drain(&self.plan));
                rows += emission.rows.len() as u64;
                if capture && !emission.rows.is_empty() {
                    batches.push(self.batch(&emission.rows));
                }
            }
        });
        (rows, batches)
    }

    /// The plugin input for `rows`, laid out as `Processor` lays it out: one column per
    /// aggregation, text dictionary-encoded per batch, `valid` empty when nothing is null.
    fn batch(&self, rows: &[Row]) -> Batch {
        let columns = self
            .plan
            .aggs
            .iter()
            .enumerate()
            .map(|(a, op)| {
                let cells: Vec<AggCell> = rows.iter().map(|r| r.cells[a].clone()).collect();
                let valid: Vec<bool> = cells.iter().map(|c| *c != AggCell::Null).collect();
                let valid = if valid.iter().all(|v| *v) {
                    Vec::new()
                } else {
                    valid
                };
                let stored = |c: &AggCell| match c {
                    AggCell::Stored(x) => *x,
                    _ => 0,
                };
                let data = match (op.kind, op.field_type) {
                    (AggregationKind::First | AggregationKind::Last, Some(kind)) => match kind {
                        ValueType::Int64 => {
                            ColumnData::Int64(cells.iter().map(|c| stored(c) as i64).collect())
                        }
                        ValueType::Float64 => ColumnData::Float64(
                            cells.iter().map(|c| f64::from_bits(stored(c))).collect(),
                        ),
                        ValueType::Boolean => {
                            ColumnData::Boolean(cells.iter().map(|c| stored(c) != 0).collect())
                        }
                        ValueType::Text => {
                            let mut local: FxHashMap<u32, u32> = FxHashMap::default();
                            let mut dictionary = Vec::new();
                            let codes = cells
                                .iter()
                                .map(|c| {
                                    let id = stored(c) as u32;
                                    *local.entry(id).or_insert_with(|| {
                                        dictionary
                                            .push(self.interner.strings[id as usize].to_string());
                                        (dictionary.len() - 1) as u32
                                    })
                                })
                                .collect();
                            ColumnData::Text(TextColumn { dictionary, codes })
                        }
                    },
                    _ => match cells.iter().find(|c| **c != AggCell::Null) {
                        Some(AggCell::Int(_)) => ColumnData::Int64(
                            cells
                                .iter()
                                .map(|c| if let AggCell::Int(v) = c { *v } else { 0 })
                                .collect(),
                        ),
                        _ => ColumnData::Float64(
                            cells
                                .iter()
                                .map(|c| if let AggCell::Float(v) = c { *v } else { 0.0 })
                                .collect(),
                        ),
                    },
                };
                Column { data, valid }
            })
            .collect();
        Batch {
            rows: rows.len() as u32,
            columns,
        }
    }
}

// ------------------------------------------------------------------------------------------
// Native user-activity, two ways.
//
// `native_columnar` is the plugin's own logic (plugins/user-activity's `compute_batch`,
// which the component runs): whole columns, nulls read as 0, the average divided out,
// the last action's column passed through. The WASM-cost ratio compares against it.
//
// `native_sdk` is the Rust SDK's per-row path (guest-sdk/rust/src/glue.rs's
// `compute_rows`, what a plugin that only writes `compute` runs) over user-activity's
// per-row `compute`: per row, one `Value` per cell (a text cell lent from one `Value`
// per dictionary entry, built once per batch), `compute` returning a `Vec<Value>`,
// typed column builders with a per-batch dictionary (scanned up to 16 entries, hashed
// beyond).

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

fn sdk_cell(column: &Column, row: usize) -> Value {
    if !column.valid.is_empty() && !column.valid.get(row).copied().unwrap_or(false) {
        return Value::Null;
    }
    let value = match &column.data {
        ColumnData::Int64(v) => v.get(row).map(|x| Value::Int(*x)),
        ColumnData::Float64(v) => v.get(row).map(|x| Value::Float(*x)),
        ColumnData::Boolean(v) => v.get(row).map(|x| Value::Bool(*x)),
        ColumnData::Text(t) => t
            .codes
            .get(row)
            .and_then(|c| t.dictionary.get(*c as usize))
            .map(|s| Value::Text(s.clone())),
        // The user-activity plugin asks for no raw events.
        ColumnData::EventList(_) => None,
    };
    value.unwrap_or(Value::Null)
}

/// plugins/user-activity's `compute`, over the SDK's row accessors.
fn user_activity_row(cells: &[Value]) -> Result<Vec<Value>, String> {
    let int = |i: usize| match cells.get(i) {
        Some(Value::Int(v)) => Some(*v),
        _ => None,
    };
    let float = |i: usize| match cells.get(i) {
        Some(Value::Float(v)) => Some(*v),
        Some(Value::Int(v)) => Some(*v as f64),
        _ => None,
    };
    let text = |i: usize| match cells.get(i) {
        Some(Value::Text(v)) => Some(v.as_str()),
        _ => None,
    };
    let count = int(0).unwrap_or(0);
    let unique = int(1).unwrap_or(0);
    let sum = float(2).unwrap_or(0.0);
    let avg = if count > 0 { sum / count as f64 } else { 0.0 };
    let last = text(3).map_or(Value::Null, |a| Value::Text(a.to_owned()));
    Ok(vec![
        Value::Int(count),
        Value::Int(unique),
        Value::Float(avg),
        last,
    ])
}

struct SdkColumnBuilder {
    data: ColumnData,
    valid: Vec<bool>,
    any_null: bool,
    dictionary_index: HashMap<String, u32>,
}

impl SdkColumnBuilder {
    fn new(kind: ValueType, rows: usize) -> Self {
        let data = match kind {
            ValueType::Int64 => ColumnData::Int64(Vec::with_capacity(rows)),
            ValueType::Float64 => ColumnData::Float64(Vec::with_capacity(rows)),
            ValueType::Boolean => ColumnData::Boolean(Vec::with_capacity(rows)),
            ValueType::Text => ColumnData::Text(TextColumn {
                dictionary: Vec::new(),
                codes: Vec::with_capacity(rows),
            }),
        };
        Self {
            data,
            valid: Vec::with_capacity(rows),
            any_null: false,
            dictionary_index: HashMap::new(),
        }
    }

    fn push(&mut self, value: Value) -> Result<(), String> {
        let is_null = matches!(value, Value::Null);
        match (&mut self.data, value) {
            (ColumnData::Int64(v), Value::Int(x)) => v.push(x),
            (ColumnData::Int64(v), Value::Null) => v.push(0),
            (ColumnData::Float64(v), Value::Float(x)) => v.push(x),
            (ColumnData::Float64(v), Value::Int(x)) => v.push(x as f64),
            (ColumnData::Float64(v), Value::Null) => v.push(0.0),
            (ColumnData::Boolean(v), Value::Bool(x)) => v.push(x),
            (ColumnData::Boolean(v), Value::Null) => v.push(false),
            (ColumnData::Text(t), Value::Text(s)) => {
                let dictionary = &mut t.dictionary;
                let index = &mut self.dictionary_index;
                let found = if dictionary.len() <= 16 {
                    dictionary.iter().position(|d| *d == s).map(|c| c as u32)
                } else {
                    index.get(&s).copied()
                };
                let code = found.unwrap_or_else(|| {
                    let code = dictionary.len() as u32;
                    dictionary.push(s);
                    if dictionary.len() > 16 {
                        if index.is_empty() {
                            index.extend(dictionary.iter().cloned().zip(0..));
                        } else {
                            index.insert(dictionary[code as usize].clone(), code);
                        }
                    }
                    code
                });
                t.codes.push(code);
            }
            (ColumnData::Text(t), Value::Null) => t.codes.push(0),
            (_, value) => return Err(format!("value {value:?} does not match the column")),
        }
        self.any_null |= is_null;
        self.valid.push(!is_null);
        Ok(())
    }

    fn finish(self) -> Column {
        Column {
            data: self.data,
            valid: if self.any_null {
                self.valid
            } else {
                Vec::new()
            },
        }
    }
}

/// The feature list, rebuilt per call as the SDK's glue rebuilds the descriptor.
fn user_activity_features() -> Vec<(String, ValueType)> {
    vec![
        ("event_count_1h".to_owned(), ValueType::Int64),
        ("unique_actions_1h".to_owned(), ValueType::Int64),
        ("avg_value_1h".to_owned(), ValueType::Float64),
        ("last_action".to_owned(), ValueType::Text),
    ]
}

fn native_sdk(input: &Batch) -> Result<Vec<Column>, String> {
    let features = user_activity_features();
    let rows = input.rows as usize;
    let mut builders: Vec<SdkColumnBuilder> = features
        .iter()
        .map(|(_, kind)| SdkColumnBuilder::new(*kind, rows))
        .collect();
    let mut texts: Vec<Vec<Value>> = input
        .columns
        .iter()
        .map(|c| match &c.data {
            ColumnData::Text(t) => t
                .dictionary
                .iter()
                .map(|s| Value::Text(s.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut lent: Vec<Option<usize>> = vec![None; input.columns.len()];
    let mut cells: Vec<Value> = vec![Value::Null; input.columns.len()];
    for r in 0..rows {
        for (c, column) in input.columns.iter().enumerate() {
            let valid = column.valid.is_empty() || column.valid.get(r).copied().unwrap_or(false);
            lent[c] = match &column.data {
                ColumnData::Text(t) if valid => t
                    .codes
                    .get(r)
                    .map(|code| *code as usize)
                    .filter(|code| *code < texts[c].len()),
                _ => None,
            };
            cells[c] = match lent[c] {
                Some(code) => std::mem::replace(&mut texts[c][code], Value::Null),
                None => sdk_cell(column, r),
            };
        }
        let out = user_activity_row(&cells);
        for (c, code) in lent.iter().enumerate() {
            if let Some(code) = code {
                texts[c][*code] = std::mem::replace(&mut cells[c], Value::Null);
            }
        }
        let out = out.map_err(|e| format!("row {r}: {e}"))?;
        if out.len() != features.len() {
            return Err(format!("row {r}: wrong number of values"));
        }
        for ((value, builder), (name, _)) in out.into_iter().zip(&mut builders).zip(&features) {
            builder
                .push(value)
                .map_err(|e| format!("row {r}, feature {name}: {e}"))?;
        }
    }
    Ok(builders.into_iter().map(SdkColumnBuilder::finish).collect())
}

fn native_columnar(input: &Batch) -> Vec<Column> {
    let rows = input.rows as usize;
    // A column's numbers with each null read as `null` (`Column::into_int64s` and
    // `into_float64s` of the SDK).
    let ints = |c: &Column| match &c.data {
        ColumnData::Int64(v) => with_nulls(v.clone(), &c.valid, 0),
        _ => vec![0; rows],
    };
    let count = ints(&input.columns[0]);
    let unique = ints(&input.columns[1]);
    let sum = match &input.columns[2].data {
        ColumnData::Float64(v) => with_nulls(v.clone(), &input.columns[2].valid, 0.0),
        _ => vec![0.0; rows],
    };
    let avg = sum
        .iter()
        .zip(&count)
        .map(|(s, n)| if *n > 0 { s / *n as f64 } else { 0.0 })
        .collect();
    vec![
        Column {
            data: ColumnData::Int64(count),
            valid: Vec::new(),
        },
        Column {
            data: ColumnData::Int64(unique),
            valid: Vec::new(),
        },
        Column {
            data: ColumnData::Float64(avg),
            valid: Vec::new(),
        },
        Column {
            data: input.columns[3].data.clone(),
            valid: input.columns[3].valid.clone(),
        },
    ]
}

fn with_nulls<T: Copy>(mut values: Vec<T>, valid: &[bool], null: T) -> Vec<T> {
    for (v, ok) in values.iter_mut().zip(valid) {
        if !ok {
            *v = null;
        }
    }
    values
}

/// Checks that the three implementations agree on `batches` (a sanity check, untimed).
fn check_same_outputs(plugin: &mut Plugin, batches: &[Batch]) -> anyhow::Result<()> {
    for b in batches.iter().take(20) {
        let wasm = plugin.compute(b).context("wasm compute")?;
        let sdk = native_sdk(b).map_err(anyhow::Error::msg)?;
        let col = native_columnar(b);
        for (name, out) in [("native-sdk", &sdk), ("native-columnar", &col)] {
            if out.len() != wasm.len() {
                bail!("{name}: {} columns, wasm {}", out.len(), wasm.len());
            }
            for (i, (a, w)) in out.iter().zip(&wasm).enumerate() {
                if !same_column(a, w) {
                    bail!("{name}: column {i} differs from the wasm plugin's");
                }
            }
        }
    }
    Ok(())
}

fn same_column(a: &Column, b: &Column) -> bool {
    let rows = |c: &Column| -> Vec<String> {
        let n = match &c.data {
            ColumnData::Int64(v) => v.len(),
            ColumnData::Float64(v) => v.len(),
            ColumnData::Boolean(v) => v.len(),
            ColumnData::Text(t) => t.codes.len(),
            ColumnData::EventList(l) => l.offsets.len().saturating_sub(1),
        };
        (0..n)
            .map(|r| {
                if !c.valid.is_empty() && !c.valid[r] {
                    return "null".into();
                }
                match &c.data {
                    ColumnData::Int64(v) => v[r].to_string(),
                    ColumnData::Float64(v) => v[r].to_string(),
                    ColumnData::Boolean(v) => v[r].to_string(),
                    ColumnData::Text(t) => t.dictionary[t.codes[r] as usize].clone(),
                    ColumnData::EventList(l) => format!("{:?}", l.times),
                }
            })
            .collect()
    };
    rows(a) == rows(b)
}

// ------------------------------------------------------------------------------------------
// Section: in-process throughput and WASM cost.

fn section_inproc(s: &Settings) -> anyhow::Result<Json> {
    let n = s.inproc_events;
    say(format!(
        "inproc: generating {n} events over {} users",
        s.users
    ));
    let ev = generate(n, Users::Skewed(s.users), START_MS, s.span_ms, 1);
    let engine = engine()?;
    let mut wasm = load(&engine, &s.plugin, Duration::from_secs(1))?;
    let descriptor = wasm.descriptor().clone();

    // The batches the processor hands the plugin, captured once (untimed).
    let (rows, batches) = Core::new(&descriptor).feed(&ev, s.flush_every, true);
    let batch_rows: Vec<u32> = batches.iter().map(|b| b.rows).collect();
    check_same_outputs(&mut wasm, &batches)?;
    say(format!(
        "inproc: {} batches, {rows} rows; outputs of wasm and native agree",
        batches.len()
    ));

    // Python and JavaScript builds of user-activity, when they were built.
    let mut others: Vec<(&str, Plugin)> = Vec::new();
    // The same languages' full paths (Processor with that plugin), Rust's included.
    let mut full_paths: Vec<(&str, &str, PathBuf)> =
        vec![("rust", "prefix-full-rust", s.plugin.clone())];
    let mut other_notes = serde_json::Map::new();
    for (label, file) in [
        ("python", "user_activity_py.wasm"),
        ("javascript", "user_activity_js.wasm"),
    ] {
        let path = repo_root().join("target/plugins").join(file);
        if !path.exists() {
            other_notes.insert(label.into(), json!("not built"));
            continue;
        }
        say(format!(
            "inproc: loading {file} (compiled once, then cached)"
        ));
        match load(&engine, &path, Duration::from_secs(10)) {
            Ok(p) => {
                others.push((label, p));
                let key = if label == "python" {
                    "prefix-full-python"
                } else {
                    "prefix-full-javascript"
                };
                full_paths.push((label, key, path));
            }
            Err(e) => {
                other_notes.insert(label.into(), json!(format!("{e:#}")));
            }
        }
    }
    // The interpreted guests run on a prefix of the batches (about 20k rows).
    let mut subset = 0;
    let mut subset_rows = 0u64;
    while subset < batches.len() && subset_rows < 20_000 {
        subset_rows += u64::from(batches[subset].rows);
        subset += 1;
    }
    // The events whose flushes made those batches (a flush makes one batch per
    // partition with changes), for the full path of every language.
    let prefix_events = (subset.div_ceil(PARTITIONS as usize) * s.flush_every).min(n);

    // The events of the first window length of event time (the stream's density
    // is even): after them, the window is full.
    let fill = ((HOUR_MS as f64 * n as f64 / s.span_ms.max(1) as f64) as usize).min(n);
    let variants = ["full", "core", "plugin-wasm", "plugin-native"];
    let mut raw: HashMap<&str, Vec<Timing>> = HashMap::new();
    let mut updates = 0u64;
    for rep in 0..s.reps {
        let mut order = variants.to_vec();
        order.rotate_left(rep % variants.len());
        for v in order {
            match v {
                "full" => {
                    // Timed in two parts: filling the window (its first hour of
                    // event time), then with the window full, events expiring as
                    // others arrive, as in a long-running pipeline.
                    let mut p = processor(load(&engine, &s.plugin, Duration::from_secs(1))?);
                    let (filling, u) =
                        Timing::measure(|| feed_range(&mut p, &ev, 0..fill, s.flush_every));
                    let (steady, v) =
                        Timing::measure(|| feed_range(&mut p, &ev, fill..n, s.flush_every));
                    updates = u + v;
                    raw.entry("full").or_default().push(Timing {
                        wall_ns: filling.wall_ns + steady.wall_ns,
                        cpu_ns: filling.cpu_ns + steady.cpu_ns,
                    });
                    if fill < n {
                        raw.entry("full-steady").or_default().push(steady);
                    }
                }
                "core" => {
                    let mut core = Core::new(&descriptor);
                    let (t, _) = Timing::measure(|| core.feed(&ev, s.flush_every, false));
                    raw.entry("core").or_default().push(t);
                }
                "plugin-wasm" => {
                    let (t, _) = Timing::measure(|| {
                        for b in &batches {
                            black_box(wasm.compute(b).expect("wasm compute"));
                        }
                    });
                    raw.entry("plugin-wasm").or_default().push(t);
                    for (label, p) in &mut others {
                        let (t, _) = Timing::measure(|| {
                            for b in &batches[..subset] {
                                black_box(p.compute(b).expect("compute"));
                            }
                        });
                        raw.entry(label).or_default().push(t);
                    }
                    for (_, key, path) in &full_paths {
                        let mut p = processor(load(&engine, path, Duration::from_secs(10))?);
                        let (t, _) = Timing::measure(|| {
                            feed_range(&mut p, &ev, 0..prefix_events, s.flush_every)
                        });
                        raw.entry(*key).or_default().push(t);
                    }
                }
                _ => {
                    let (t, _) = Timing::measure(|| {
                        for b in &batches {
                            black_box(native_sdk(black_box(b)).expect("native compute"));
                        }
                    });
                    raw.entry("plugin-native-sdk").or_default().push(t);
                    let (t, _) = Timing::measure(|| {
                        for b in &batches {
                            black_box(native_columnar(black_box(b)));
                        }
                    });
                    raw.entry("plugin-native-columnar").or_default().push(t);
                }
            }
        }
        let full = raw["full"].last().expect("measured");
        say(format!(
            "inproc rep {}/{}: full {:.0} ev/s (wall), {:.0} ev/s (thread cpu)",
            rep + 1,
            s.reps,
            n as f64 / (full.wall_ns as f64 / 1e9),
            n as f64 / (full.cpu_ns as f64 / 1e9),
        ));
    }

    let per = |name: &str, f: &dyn Fn(&Timing) -> f64| -> Vec<f64> {
        raw.get(name)
            .map(|ts| ts.iter().map(f).collect())
            .unwrap_or_default()
    };
    let wall = |t: &Timing| t.wall_ns as f64;
    let cpu = |t: &Timing| t.cpu_ns as f64;
    let mut derived = serde_json::Map::new();
    for (clock, f) in [("wall", &wall as &dyn Fn(&Timing) -> f64), ("cpu", &cpu)] {
        let full = per("full", f);
        let core = per("core", f);
        let pw = per("plugin-wasm", f);
        let ps = per("plugin-native-sdk", f);
        let pc = per("plugin-native-columnar", f);
        let rate =
            |ns: &[f64], count: f64| -> Vec<f64> { ns.iter().map(|t| count / (t / 1e9)).collect() };
        // Per repetition: the full path with the plugin call replaced by a native
        // call: the plugin's own (columnar) logic, and the SDK's per-row path.
        let native_path: Vec<f64> = (0..full.len()).map(|i| full[i] - pw[i] + pc[i]).collect();
        let sdk_rows_path: Vec<f64> = (0..full.len()).map(|i| full[i] - pw[i] + ps[i]).collect();
        let glue: Vec<f64> = (0..full.len()).map(|i| full[i] - core[i] - pw[i]).collect();
        let mut other = serde_json::Map::new();
        for (label, _) in &others {
            let t = per(label, f);
            other.insert(
                (*label).into(),
                json!({
                    "ns_per_row": stats(&t.iter().map(|t| t / subset_rows as f64).collect::<Vec<_>>()),
                    "rows_per_s": stats(&rate(&t, subset_rows as f64)),
                }),
            );
        }
        let mut languages = serde_json::Map::new();
        for (label, key, _) in &full_paths {
            languages.insert(
                (*label).into(),
                json!(stats(&rate(&per(key, f), prefix_events as f64))),
            );
        }
        derived.insert(
            clock.into(),
            json!({
                "full_events_per_s": stats(&rate(&full, n as f64)),
                "full_steady_events_per_s": stats(&rate(&per("full-steady", f), (n - fill) as f64)),
                "languages_full_path_events_per_s": languages,
                "core_events_per_s": stats(&rate(&core, n as f64)),
                "native_path_events_per_s": stats(&rate(&native_path, n as f64)),
                "sdk_rows_path_events_per_s": stats(&rate(&sdk_rows_path, n as f64)),
                "ns_per_event": {
                    "full": stats(&full.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                    "core": stats(&core.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                    "plugin_wasm": stats(&pw.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                    "plugin_native_sdk": stats(&ps.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                    "plugin_native_columnar": stats(&pc.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                    "glue": stats(&glue.iter().map(|t| t / n as f64).collect::<Vec<_>>()),
                },
                "ns_per_row": {
                    "plugin_wasm": stats(&pw.iter().map(|t| t / rows as f64).collect::<Vec<_>>()),
                    "plugin_native_sdk": stats(&ps.iter().map(|t| t / rows as f64).collect::<Vec<_>>()),
                    "plugin_native_columnar": stats(&pc.iter().map(|t| t / rows as f64).collect::<Vec<_>>()),
                },
                "wasm_over_native_path": stats(&(0..full.len()).map(|i| native_path[i] / full[i]).collect::<Vec<_>>()),
                "wasm_over_sdk_rows_path": stats(&(0..full.len()).map(|i| sdk_rows_path[i] / full[i]).collect::<Vec<_>>()),
                "plugin_call_wasm_over_native": stats(&(0..full.len()).map(|i| pc[i] / pw[i]).collect::<Vec<_>>()),
                "other_languages": other,
            }),
        );
    }
    let mut sorted_rows = batch_rows.clone();
    sorted_rows.sort_unstable();
    Ok(json!({
        "events": n,
        "users": s.users,
        "distinct_users": ev.distinct_users(),
        "partitions": PARTITIONS,
        "flush_every": s.flush_every,
        "span_s": s.span_ms / 1000,
        "payload_bytes_avg": ev.buf.len() as f64 / n as f64,
        "reps": s.reps,
        "fill_events": fill,
        "updates_per_run": updates,
        "batches": batches.len(),
        "rows": rows,
        "rows_per_batch_median": sorted_rows.get(sorted_rows.len() / 2).copied().unwrap_or(0),
        "other_languages_rows": subset_rows,
        "languages_full_path_events": prefix_events,
        "other_languages_notes": other_notes,
        "derived": derived,
    }))
}

// ------------------------------------------------------------------------------------------
// Section: memory, in child processes.

fn memory_child() -> anyhow::Result<()> {
    COUNTING.store(true, Ordering::SeqCst);
    let scenario = env_str("WAFER_BENCH_MEM_SCENARIO", "skewed");
    let n: usize = env_or("WAFER_BENCH_MEM_EVENTS", 1_000_000);
    let users: u64 = env_or("WAFER_BENCH_USERS", 100_000);
    let plugin_path = Settings::from_env().plugin;
    let who = match scenario.as_str() {
        "distinct" => Users::Distinct,
        _ => Users::Skewed(users),
    };
    // 30 minutes of event time: every event stays inside the 1 h window.
    let ev = generate(n, who, START_MS, HOUR_MS / 2, 7);
    let engine = engine()?;
    let plugin = load(&engine, &plugin_path, Duration::from_secs(1))?;
    let kind = env_str("WAFER_BENCH_MEM_KIND", "");
    if !kind.is_empty() {
        return window_memory_child(&scenario, &kind, plugin.descriptor(), &ev);
    }
    let mut p = processor(plugin);
    // A first flush warms the plugin instance up before the baseline is taken.
    let warm = generate(1, Users::Distinct, START_MS - HOUR_MS * 10, 1, 3);
    p.process((0, 99), 0, warm.time_ms[0], Some(warm.payload(0)));
    drop(p.flush((0, 99)));
    p.release((0, 99));
    let (rss0, heap0) = (rss_bytes(), LIVE_BYTES.load(Ordering::SeqCst));
    let updates = feed(&mut p, &ev, 5000);
    let (rss1, heap1) = (rss_bytes(), LIVE_BYTES.load(Ordering::SeqCst));
    let (entities, events) = p.state_size();
    println!(
        "{}",
        json!({
            "scenario": scenario,
            "events_fed": n,
            "entities": entities,
            "events_held": events,
            "rss_delta": rss1 as i64 - rss0 as i64,
            "heap_delta": heap1 - heap0,
            "rss_total": rss1,
            "updates": updates,
        })
    );
    Ok(())
}

/// Window kinds of the per-kind memory measure, each 1 h long: hopping hops by 15 min,
/// sessions close after a 15 min gap (and stay visible for 1 h).
const MEMORY_KINDS: [&str; 4] = ["sliding", "tumbling", "hopping", "session"];

/// The window state alone: user-activity's aggregations over one window of `kind`
/// instead of its sliding window, fed through the processor's public pieces (decode,
/// `Partition::apply`, `Partition::drain` every 5,000 events; no plugin).
fn window_memory_child(
    scenario: &str,
    kind: &str,
    descriptor: &Descriptor,
    ev: &Events,
) -> anyhow::Result<()> {
    let mut d = descriptor.clone();
    let w = &mut d.windows[0];
    w.length_ms = HOUR_MS as u64;
    match kind {
        "sliding" => w.kind = WindowKind::Sliding,
        "tumbling" => w.kind = WindowKind::Tumbling,
        "hopping" => {
            w.kind = WindowKind::Hopping;
            w.hop_ms = Some(HOUR_MS as u64 / 4);
        }
        "session" => {
            w.kind = WindowKind::Session;
            w.gap_ms = Some(HOUR_MS as u64 / 4);
        }
        other => bail!("unknown window kind `{other}`"),
    }
    let (rss0, heap0) = (rss_bytes(), LIVE_BYTES.load(Ordering::SeqCst));
    let mut core = Core::new(&d);
    let (rows, _) = core.feed(ev, 5000, false);
    let (rss1, heap1) = (rss_bytes(), LIVE_BYTES.load(Ordering::SeqCst));
    let (entities, events) = core
        .parts
        .iter()
        .fold((0, 0), |(e, n), p| (e + p.entities(), n + p.events_held()));
    println!(
        "{}",
        json!({
            "scenario": scenario,
            "kind": kind,
            "events_fed": ev.len(),
            "entities": entities,
            "events_held": events,
            "rss_delta": rss1 as i64 - rss0 as i64,
            "heap_delta": heap1 - heap0,
            "rows": rows,
        })
    );
    Ok(())
}

fn run_memory_child(scenario: &str, events: usize) -> anyhow::Result<Json> {
    run_memory_child_of(scenario, "", events)
}

fn run_memory_child_of(scenario: &str, kind: &str, events: usize) -> anyhow::Result<Json> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env("WAFER_BENCH_CHILD", "memory")
        .env("WAFER_BENCH_MEM_KIND", kind)
        .env("WAFER_BENCH_MEM_SCENARIO", scenario)
        .env("WAFER_BENCH_MEM_EVENTS", events.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the memory child")?;
    if !out.status.success() {
        bail!("memory child ({scenario}) failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("memory child printed {text:?}"))
}

/// Two scenarios, two unknowns, per repetition: `key` bytes = a * events_held + b * entities.
fn solve_fit(skewed: &[Json], distinct: &[Json], key: &str) -> Vec<(f64, f64)> {
    skewed
        .iter()
        .zip(distinct)
        .map(|(s1, s2)| {
            let f = |j: &Json, k: &str| j[k].as_f64().unwrap_or(0.0);
            let (e1, n1, m1) = (f(s1, "events_held"), f(s1, "entities"), f(s1, key));
            let (e2, n2, m2) = (f(s2, "events_held"), f(s2, "entities"), f(s2, key));
            let det = e1 * n2 - e2 * n1;
            let a = (m1 * n2 - m2 * n1) / det;
            let b = (e1 * m2 - e2 * m1) / det;
            (a, b)
        })
        .collect()
}

fn section_memory(s: &Settings) -> anyhow::Result<Json> {
    let reps = s.reps.clamp(1, 3);
    let mut skewed = Vec::new();
    let mut distinct = Vec::new();
    for rep in 0..reps {
        say(format!("memory rep {}/{reps}", rep + 1));
        skewed.push(run_memory_child("skewed", 1_000_000)?);
        distinct.push(run_memory_child("distinct", 1_000_000)?);
    }
    let mut fits = serde_json::Map::new();
    for key in ["rss_delta", "heap_delta"] {
        let ab = solve_fit(&skewed, &distinct, key);
        fits.insert(
            key.into(),
            json!({
                "bytes_per_event": stats(&ab.iter().map(|x| x.0).collect::<Vec<_>>()),
                "bytes_per_entity": stats(&ab.iter().map(|x| x.1).collect::<Vec<_>>()),
                "skewed_bytes_per_event_held": stats(&skewed.iter().map(|j| j[key].as_f64().unwrap_or(0.0) / j["events_held"].as_f64().unwrap_or(1.0)).collect::<Vec<_>>()),
                "distinct_bytes_per_entity": stats(&distinct.iter().map(|j| j[key].as_f64().unwrap_or(0.0) / j["entities"].as_f64().unwrap_or(1.0)).collect::<Vec<_>>()),
            }),
        );
    }
    // The window state alone, per window kind (fewer repetitions: it is a breakdown).
    let mut kinds = serde_json::Map::new();
    for kind in MEMORY_KINDS {
        let (mut sk, mut di) = (Vec::new(), Vec::new());
        for rep in 0..reps.min(2) {
            say(format!(
                "memory, {kind} window: rep {}/{}",
                rep + 1,
                reps.min(2)
            ));
            sk.push(run_memory_child_of("skewed", kind, 1_000_000)?);
            di.push(run_memory_child_of("distinct", kind, 1_000_000)?);
        }
        let mut fit = serde_json::Map::new();
        for key in ["rss_delta", "heap_delta"] {
            let ab = solve_fit(&sk, &di, key);
            fit.insert(
                key.into(),
                json!({
                    "bytes_per_event": stats(&ab.iter().map(|x| x.0).collect::<Vec<_>>()),
                    "bytes_per_entity": stats(&ab.iter().map(|x| x.1).collect::<Vec<_>>()),
                }),
            );
        }
        kinds.insert(
            kind.into(),
            json!({"skewed": sk, "distinct": di, "fit": fit}),
        );
    }
    Ok(json!({
        "skewed": skewed,
        "distinct": distinct,
        "fit": fits,
        "kinds": kinds,
        "rss_total_at_1m_entities": stats(&distinct.iter().map(|j| j["rss_total"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>()),
    }))
}

// ------------------------------------------------------------------------------------------
// Kafka and Redis helpers.

async fn create_topics(topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?
    {
        if let Err((t, e)) = r {
            bail!("creating topic {t}: {e}");
        }
    }
    Ok(())
}

async fn delete_topics(topics: &[String]) {
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin
        .delete_topics(
            &names,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await;
}

/// Produces every event to `topic` (partition and key from the event), waits for all acks.
async fn produce_all(topic: &str, ev: &Events) -> anyhow::Result<Duration> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let started = Instant::now();
    let mut i = 0;
    while i < ev.len() {
        let end = (i + 20_000).min(ev.len());
        let mut acks = Vec::with_capacity(end - i);
        for j in i..end {
            let key = ev.key(j);
            let record = FutureRecord::to(topic)
                .partition(ev.partition[j])
                .key(&key)
                .payload(ev.payload(j));
            acks.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for ack in acks {
            ack.await?.map_err(|(e, _)| e)?;
        }
        i = end;
    }
    Ok(started.elapsed())
}

fn end_offsets(topic: &str) -> anyhow::Result<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "wafer-bench-watermarks")
        .create()?;
    (0..PARTITIONS)
        .map(|p| {
            Ok(consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1)
        })
        .collect()
}

/// Committed offsets of `group` on `topic`'s partitions (-1 when none).
fn committed(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let c = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok((0..PARTITIONS)
        .map(|p| match c.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect())
}

fn group_reader(group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// Deletes every Redis key starting with `prefix`.
fn redis_cleanup(prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis_url())?;
    let mut con = client.get_connection()?;
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)?;
        if !keys.is_empty() {
            deleted += redis::cmd("UNLINK").arg(&keys).query::<u64>(&mut con)?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(deleted);
        }
    }
}

struct Names {
    base: String,
}

impl Names {
    fn new(what: &str) -> Self {
        Self {
            base: format!(
                "bench-{what}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_millis()
            ),
        }
    }
    fn get(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.base)
    }
}

#[allow(clippy::too_many_arguments)]
fn wafer_config(
    s: &Settings,
    group: &str,
    input: &str,
    output: &str,
    dlq: &str,
    late: &str,
    key_prefix: &str,
    linger_ms: u64,
) -> anyhow::Result<wafer::config::Config> {
    let text = format!(
        r#"
[pipeline]
batch_size = {batch}
linger_ms = {linger_ms}
max_in_flight_batches = {in_flight}
max_batch_size = {max_batch}

[kafka]
brokers = "{brokers}"
group = "{group}"
topics = ["{input}"]
output_topic = "{output}"
dead_letter_topic = "{dlq}"
late_topic = "{late}"

[redis]
url = "{redis}"

[plugin]
path = "{plugin}"
key_template = "{key_prefix}:features:{{user_id}}"
ttl_secs = 3600
"#,
        batch = s.batch_size,
        in_flight = s.in_flight,
        max_batch = s.max_batch,
        brokers = brokers(),
        redis = redis_url(),
        plugin = s.plugin.display(),
    );
    Ok(wafer::config::Config::parse(&text, "bench config")?)
}

// ------------------------------------------------------------------------------------------
// Section: end to end, Wafer and the Python loop interleaved.

struct WaferRun {
    seconds: f64,
    steady_events_per_s: f64,
    first_commit_s: f64,
    report: Json,
}

async fn run_wafer_until_caught_up(
    config: wafer::config::Config,
    group: &str,
    topic: &str,
    ends: &[i64],
    timeout: Duration,
) -> anyhow::Result<WaferRun> {
    let reader = group_reader(group)?;
    let shutdown = CancellationToken::new();
    let cpu = CpuSpan::start();
    let started = Instant::now();
    let task = tokio::spawn(wafer::run(config, shutdown.clone()));
    let total: i64 = ends.iter().sum();
    let mut first: Option<(Instant, i64)> = None;
    let result = loop {
        if task.is_finished() {
            break Err(anyhow::anyhow!("wafer stopped before catching up"));
        }
        let at = tokio::task::block_in_place(|| committed(&reader, topic))?;
        let now = Instant::now();
        let done: i64 = at.iter().map(|o| (*o).max(0)).sum();
        if first.is_none() && done > 0 {
            first = Some((now, done));
        }
        if at.iter().zip(ends).all(|(a, e)| a >= e) {
            break Ok((now, cpu.finish()));
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!(
                "not caught up after {timeout:?}: committed {at:?} of {ends:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .context("wafer did not stop within 60 s")??;
    let (done_at, cpu) = result?;
    let report = report.map_err(|e| anyhow::anyhow!("wafer run failed: {e}"))?;
    let seconds = (done_at - started).as_secs_f64();
    let (first_at, first_done) = first.unwrap_or((done_at, 0));
    let steady = if done_at > first_at {
        (total - first_done) as f64 / (done_at - first_at).as_secs_f64()
    } else {
        f64::NAN
    };
    Ok(WaferRun {
        seconds,
        steady_events_per_s: steady,
        first_commit_s: (first_at - started).as_secs_f64(),
        report: json!({
            "counters": report.counters,
            "state": report.state,
            "cpu": cpu,
            "writes": report.writes,
        }),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_python(
    python: &Path,
    topic: &str,
    group: &str,
    output: &str,
    key_prefix: &str,
    max_events: usize,
    max_seconds: f64,
) -> anyhow::Result<Json> {
    let script = repo_root().join("scripts/bench/python_loop.py");
    let cpu = CpuSpan::start();
    let mut child = std::process::Command::new(python)
        .arg(&script)
        .args(["--brokers", &brokers()])
        .args(["--topic", topic])
        .args(["--group", group])
        .args(["--output-topic", output])
        .args(["--redis-url", &redis_url()])
        .args([
            "--key-template",
            &format!("{key_prefix}:features:{{user_id}}"),
        ])
        .args(["--max-events", &max_events.to_string()])
        .args(["--max-seconds", &max_seconds.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let deadline = Instant::now() + Duration::from_secs_f64(max_seconds + 60.0);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("python loop did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("python loop failed: {}", out.status);
    }
    let cpu = cpu.finish();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut report: Json = serde_json::from_str(text.lines().last().unwrap_or_default())
        .with_context(|| format!("python loop printed {text:?}"))?;
    report["cpu"] = cpu;
    Ok(report)
}

async fn section_e2e(s: &Settings) -> anyhow::Result<Json> {
    let names = Names::new("e2e");
    let input = names.get("user-events");
    let out_w = names.get("ml-features");
    let out_p = names.get("py-ml-features");
    let dlq = names.get("dead-letters");
    let late = names.get("late");
    create_topics(&[
        (&input, PARTITIONS),
        (&out_w, 1),
        (&out_p, 1),
        (&dlq, 1),
        (&late, 1),
    ])
    .await?;
    let topics = vec![
        input.clone(),
        out_w.clone(),
        out_p.clone(),
        dlq.clone(),
        late.clone(),
    ];
    let result = e2e_runs(s, &names, &input, &out_w, &out_p, &dlq, &late).await;
    delete_topics(&topics).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn e2e_runs(
    s: &Settings,
    names: &Names,
    input: &str,
    out_w: &str,
    out_p: &str,
    dlq: &str,
    late: &str,
) -> anyhow::Result<Json> {
    let n = s.e2e_events;
    // Event times end at the wall clock, so the Python loop's wall-clock hour sees them.
    let now_ms = chrono::Utc::now().timestamp_millis();
    say(format!(
        "e2e: generating and producing {n} events to {input}"
    ));
    let ev = generate(n, Users::Skewed(s.users), now_ms - s.span_ms, s.span_ms, 11);
    let produce_time = produce_all(input, &ev).await?;
    let ends = tokio::task::block_in_place(|| end_offsets(input))?;
    say(format!(
        "e2e: produced in {:.1} s ({:.0} ev/s); end offsets {ends:?}",
        produce_time.as_secs_f64(),
        n as f64 / produce_time.as_secs_f64()
    ));
    let py_events = s.py_events.min(n);
    let mut wafer_runs = Vec::new();
    let mut python_runs = Vec::new();
    let mut errors = Vec::new();
    for rep in 0..s.e2e_reps {
        let wafer_first = rep % 2 == 0;
        for side in [wafer_first, !wafer_first] {
            if side {
                let group = names.get(&format!("wafer-{rep}"));
                let prefix = names.get(&format!("w{rep}"));
                let config =
                    wafer_config(s, &group, input, out_w, dlq, late, &prefix, s.linger_ms)?;
                say(format!("e2e rep {}: wafer", rep + 1));
                match run_wafer_until_caught_up(config, &group, input, &ends, s.e2e_timeout).await {
                    Ok(r) => {
                        say(format!(
                            "e2e rep {}: wafer {:.0} ev/s ({:.1} s; steady {:.0} ev/s)",
                            rep + 1,
                            n as f64 / r.seconds,
                            r.seconds,
                            r.steady_events_per_s
                        ));
                        wafer_runs.push(r);
                    }
                    Err(e) => errors.push(format!("wafer rep {}: {e:#}", rep + 1)),
                }
                let cleaned = tokio::task::block_in_place(|| redis_cleanup(&prefix));
                if let Err(e) = cleaned {
                    errors.push(format!("redis cleanup: {e:#}"));
                }
            } else if let Some(python) = &s.python {
                let group = names.get(&format!("python-{rep}"));
                let prefix = names.get(&format!("p{rep}"));
                say(format!(
                    "e2e rep {}: python loop over {py_events} events",
                    rep + 1
                ));
                let r = tokio::task::block_in_place(|| {
                    run_python(
                        python,
                        input,
                        &group,
                        out_p,
                        &prefix,
                        py_events,
                        s.py_seconds,
                    )
                });
                match r {
                    Ok(j) => {
                        say(format!(
                            "e2e rep {}: python {} events in {:.1} s",
                            rep + 1,
                            j["events"],
                            j["seconds"].as_f64().unwrap_or(0.0)
                        ));
                        python_runs.push(j);
                    }
                    Err(e) => errors.push(format!("python rep {}: {e:#}", rep + 1)),
                }
                let cleaned = tokio::task::block_in_place(|| redis_cleanup(&prefix));
                if let Err(e) = cleaned {
                    errors.push(format!("redis cleanup: {e:#}"));
                }
            }
        }
    }
    let wafer_rate: Vec<f64> = wafer_runs.iter().map(|r| n as f64 / r.seconds).collect();
    let wafer_steady: Vec<f64> = wafer_runs.iter().map(|r| r.steady_events_per_s).collect();
    let py_rate: Vec<f64> = python_runs
        .iter()
        .map(|j| j["events"].as_f64().unwrap_or(0.0) / j["seconds"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let py_steady: Vec<f64> = python_runs
        .iter()
        .map(|j| {
            (j["events"].as_f64().unwrap_or(0.0) - 1.0)
                / j["first_to_last_seconds"].as_f64().unwrap_or(f64::NAN)
        })
        .collect();
    // Ratios per repetition pair (same repetition = neighbours in time).
    let pairs = wafer_rate.len().min(py_rate.len());
    let ratio: Vec<f64> = (0..pairs).map(|i| wafer_rate[i] / py_rate[i]).collect();
    let ratio_steady: Vec<f64> = (0..pairs).map(|i| wafer_steady[i] / py_steady[i]).collect();
    Ok(json!({
        "events": n,
        "users": s.users,
        "distinct_users": ev.distinct_users(),
        "partitions": PARTITIONS,
        "span_s": s.span_ms / 1000,
        "batch_size": s.batch_size,
        "linger_ms": s.linger_ms,
        "max_in_flight_batches": s.in_flight,
        "max_batch_size": s.max_batch,
        "commit_interval_ms": wafer::config::PipelineConfig::default().commit_interval_ms,
        "produce_seconds": produce_time.as_secs_f64(),
        "python_events": py_events,
        "python_max_seconds": s.py_seconds,
        "wafer_events_per_s": stats(&wafer_rate),
        "wafer_steady_events_per_s": stats(&wafer_steady),
        "wafer_seconds": stats(&wafer_runs.iter().map(|r| r.seconds).collect::<Vec<_>>()),
        "wafer_first_commit_s": stats(&wafer_runs.iter().map(|r| r.first_commit_s).collect::<Vec<_>>()),
        "wafer_reports": wafer_runs.iter().map(|r| r.report.clone()).collect::<Vec<_>>(),
        "python_events_per_s": stats(&py_rate),
        "python_steady_events_per_s": stats(&py_steady),
        "python_runs": python_runs,
        "python_missing": s.python.is_none(),
        "wafer_over_python": stats(&ratio),
        "wafer_over_python_steady": stats(&ratio_steady),
        "errors": errors,
    }))
}

// ------------------------------------------------------------------------------------------
// Section: event-to-Redis latency at a fixed offered rate.

/// Probe users: every `PROBE_EVERY`-th event goes to one of them, round robin.
const PROBES: u32 = 1000;
const PROBE_EVERY: u64 = 50;

#[derive(Default)]
struct ProbeState {
    sends: Vec<Instant>,
    seen: usize,
}

struct Probes {
    users: Mutex<Vec<ProbeState>>,
    samples: Mutex<Vec<(Instant, f64)>>,
}

/// Makes Redis publish keyspace events for string commands; returns the previous setting.
fn enable_keyspace_events(con: &mut redis::Connection) -> anyhow::Result<String> {
    let old: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(con)?;
    let old = old.get(1).cloned().unwrap_or_default();
    let mut flags = old.clone();
    if !flags.contains('K') {
        flags.push('K');
    }
    if !flags.contains('$') && !flags.contains('A') {
        flags.push('$');
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&flags)
        .query::<()>(con)?;
    Ok(old)
}

/// Watches the probe keys: on each `set`, reads the value and attributes the probe events
/// it now counts (`event_count_1h`) to the time the value was read back.
fn listen(
    probes: Arc<Probes>,
    pattern: String,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url())?;
    let mut getter = client.get_connection()?;
    let mut con = client.get_connection()?;
    con.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut pubsub = con.as_pubsub();
    pubsub.psubscribe(&pattern)?;
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        let msg = match pubsub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e.into()),
        };
        let channel = msg.get_channel_name();
        let Some(key) = channel.split_once(':').map(|(_, k)| k.to_owned()) else {
            continue;
        };
        let Some(index) = key
            .rsplit(':')
            .next()
            .and_then(|u| u.strip_prefix("probe_"))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut getter)?;
        let read_at = Instant::now();
        let Some(count) = value
            .and_then(|v| serde_json::from_str::<Json>(&v).ok())
            .and_then(|j| j["event_count_1h"].as_u64())
        else {
            continue;
        };
        let mut users = probes.users.lock().expect("never poisoned");
        let state = &mut users[index];
        let upto = (count as usize).min(state.sends.len());
        if upto > state.seen {
            let mut samples = probes.samples.lock().expect("never poisoned");
            for sent in &state.sends[state.seen..upto] {
                samples.push((*sent, (read_at - *sent).as_secs_f64() * 1000.0));
            }
            state.seen = upto;
        }
    }
    Ok(())
}

/// Produces `rate` events/s for `seconds` (plus warm-up), every 50th to a probe user.
fn paced_producer(
    topic: &str,
    rate: u64,
    total: Duration,
    users: u64,
    probes: &Probes,
) -> anyhow::Result<(u64, f64)> {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut rng = Rng::new(5);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(128);
    let mut probe_seq = 0u32;
    while started.elapsed() < total {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (user, probe, partition) = if sent.is_multiple_of(PROBE_EVERY) {
                let p = probe_seq % PROBES;
                probe_seq += 1;
                (
                    format!("probe_{p:04}"),
                    Some(p),
                    (p % PARTITIONS as u32) as i32,
                )
            } else {
                let k = ((rng.below(users) * rng.below(users)) / users.max(1)) as u32;
                (user_name(k), None, (k % PARTITIONS as u32) as i32)
            };
            let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
            let value = rng.below(100_000) as f64 / 100.0;
            buf.clear();
            let now_ms = chrono::Utc::now().timestamp_millis();
            write_event(&mut buf, &user, action, value, now_ms);
            if let Some(p) = probe {
                probes.users.lock().expect("never poisoned")[p as usize]
                    .sends
                    .push(Instant::now());
            }
            let mut record = BaseRecord::to(topic)
                .partition(partition)
                .key(&user)
                .payload(&buf);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(30))?;
    Ok((sent, sent as f64 / elapsed))
}

async fn latency_run(s: &Settings, linger_ms: u64) -> anyhow::Result<Json> {
    let names = Names::new(&format!("lat{linger_ms}"));
    let input = names.get("user-events");
    let output = names.get("ml-features");
    let dlq = names.get("dead-letters");
    let late = names.get("late");
    create_topics(&[(&input, PARTITIONS), (&output, 1), (&dlq, 1), (&late, 1)]).await?;
    let prefix = names.get("k");
    let group = names.get("wafer");
    let config = wafer_config(s, &group, &input, &output, &dlq, &late, &prefix, linger_ms)?;
    let probes = Arc::new(Probes {
        users: Mutex::new((0..PROBES).map(|_| ProbeState::default()).collect()),
        samples: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = {
        let probes = probes.clone();
        let stop = stop.clone();
        let pattern = format!("__keyspace@*__:{prefix}:features:probe_*");
        std::thread::spawn(move || listen(probes, pattern, stop, ready_tx))
    };
    let _ = ready_rx.recv_timeout(Duration::from_secs(10));
    let shutdown = CancellationToken::new();
    let host = tokio::spawn(wafer::run(config, shutdown.clone()));
    let warmup = Duration::from_secs(s.lat_warmup);
    let measure = Duration::from_secs(s.lat_seconds);
    let started = Instant::now();
    let cpu = CpuSpan::start();
    let produced = {
        let probes = probes.clone();
        let input = input.clone();
        let (rate, users) = (s.lat_rate, s.users);
        tokio::task::spawn_blocking(move || {
            paced_producer(&input, rate, warmup + measure, users, &probes)
        })
        .await?
    };
    let cpu = cpu.finish();
    // Let the last events reach Redis.
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: usize = probes
            .users
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|p| p.sends.len() - p.seen)
            .sum();
        if pending == 0 || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    shutdown.cancel();
    let report = tokio::time::timeout(Duration::from_secs(60), host).await;
    let listened = listener
        .join()
        .map_err(|_| anyhow::anyhow!("listener panicked"))?;
    let _ = tokio::task::block_in_place(|| redis_cleanup(&prefix));
    delete_topics(&[input, output, dlq, late]).await;
    let (sent, rate) = produced?;
    listened?;
    match report {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => bail!("wafer run failed: {e}"),
        Ok(Err(e)) => bail!("wafer task: {e}"),
        Err(_) => bail!("wafer did not stop within 60 s"),
    }
    let window_start = started + warmup;
    let samples = probes.samples.lock().expect("never poisoned");
    let mut lat: Vec<f64> = samples
        .iter()
        .filter(|(sent, _)| *sent >= window_start)
        .map(|(_, l)| *l)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let probes_sent: usize = probes
        .users
        .lock()
        .expect("never poisoned")
        .iter()
        .map(|p| p.sends.iter().filter(|t| **t >= window_start).count())
        .sum();
    let unobserved: usize = probes
        .users
        .lock()
        .expect("never poisoned")
        .iter()
        .map(|p| p.sends.len() - p.seen)
        .sum();
    Ok(json!({
        "linger_ms": linger_ms,
        "batch_size": s.batch_size,
        "max_in_flight_batches": s.in_flight,
        "max_batch_size": s.max_batch,
        "commit_interval_ms": wafer::config::PipelineConfig::default().commit_interval_ms,
        "offered_rate": s.lat_rate,
        "achieved_rate": rate,
        "events_sent": sent,
        "warmup_s": s.lat_warmup,
        "measured_s": s.lat_seconds,
        "probe_samples": lat.len(),
        "probe_events_sent_in_window": probes_sent,
        "unobserved_probe_events": unobserved,
        "p50_ms": percentile(&lat, 50.0),
        "p90_ms": percentile(&lat, 90.0),
        "p99_ms": percentile(&lat, 99.0),
        "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        "cpu": cpu,
    }))
}

async fn section_latency(s: &Settings) -> anyhow::Result<Json> {
    let client = redis::Client::open(redis_url())?;
    let mut con = client.get_connection()?;
    let old = enable_keyspace_events(&mut con)?;
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    // A broker that has just started, or has served only bulk traffic, is slow
    // for the first tens of seconds of a steady stream of small requests
    // (measured: over a core and a p99 of seconds, then settling over one to
    // three runs; presumably its JIT compiling). Runs at the offered rate come
    // first, reported apart and not measured, until the broker's CPU in a run
    // falls by less than a tenth from the run before (settled), at most
    // `lat_broker_warmup` runs. The rule reads the broker's CPU, not latency.
    let mut warmup = Vec::new();
    if let Some(linger) = s.lat_lingers.first() {
        let mut previous: Option<f64> = None;
        for k in 1..=s.lat_broker_warmup {
            say(format!(
                "latency: broker warm-up run {k} ({} events/s, linger_ms = {linger}), not measured",
                s.lat_rate
            ));
            let run = match latency_run(s, *linger).await {
                Ok(r) => r,
                Err(e) => json!({ "error": format!("{e:#}") }),
            };
            let kafka = run["cpu"]["kafka_cores"].as_f64();
            say(format!(
                "latency: warm-up p99 {:.1} ms, broker {:.2} cores",
                run["p99_ms"].as_f64().unwrap_or(f64::NAN),
                kafka.unwrap_or(f64::NAN)
            ));
            warmup.push(run);
            match (previous, kafka) {
                (Some(before), Some(now)) if now >= 0.9 * before => break,
                (_, None) => break,
                _ => previous = kafka,
            }
        }
    }
    for linger in &s.lat_lingers {
        say(format!(
            "latency: {} events/s for {} s (+{} s warm-up), linger_ms = {linger}",
            s.lat_rate, s.lat_seconds, s.lat_warmup
        ));
        match latency_run(s, *linger).await {
            Ok(r) => {
                say(format!(
                    "latency: p50 {:.1} ms, p99 {:.1} ms",
                    r["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    r["p99_ms"].as_f64().unwrap_or(f64::NAN)
                ));
                runs.push(r);
            }
            Err(e) => errors.push(format!("linger {linger}: {e:#}")),
        }
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(&old)
        .query::<()>(&mut con)?;
    Ok(json!({ "runs": runs, "errors": errors, "broker_warmup": warmup }))
}

// ------------------------------------------------------------------------------------------
// Section: operations (time to the first commit, rebuild rate, hot-reload pause).

/// A free loopback port (bound then released) for a run's admin endpoint.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The bench config with the admin endpoint on `port` and the plugin file not watched
/// (reloads go through the endpoint).
#[allow(clippy::too_many_arguments)]
fn ops_config(
    s: &Settings,
    names: &Names,
    group: &str,
    input: &str,
    prefix: &str,
    port: Option<u16>,
) -> anyhow::Result<wafer::config::Config> {
    let mut config = wafer_config(
        s,
        group,
        input,
        &names.get("ml-features"),
        &names.get("dead-letters"),
        &names.get("late"),
        prefix,
        s.linger_ms,
    )?;
    config.admin = port.map(|p| wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{p}"),
        token: None,
    });
    if let Some(plugin) = config.plugin.as_mut() {
        plugin.watch = false;
    }
    Ok(config)
}

/// One HTTP/1.1 request to the admin endpoint on loopback (blocking); returns the
/// status and the body (chunked bodies decoded).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("HTTP response without a header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("HTTP response without a status")?;
    let mut rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok((status, rest.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)?;
        if size == 0 {
            return Ok((status, out));
        }
        let start = line_end + 2;
        out.extend_from_slice(rest.get(start..start + size).context("truncated chunk")?);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
}

fn http_json(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Json)> {
    let (status, body) = http(port, method, path, body)?;
    let json = serde_json::from_slice(&body)
        .with_context(|| format!("{path} answered {}", String::from_utf8_lossy(&body)))?;
    Ok((status, json))
}

/// Milliseconds between two RFC 3339 times of the host's status (ms resolution).
fn rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// When a partition reached `state` (the last such transition), in ms since the epoch.
fn transition_ms(partition: &Json, state: &str) -> Option<i64> {
    partition["transitions"]
        .as_array()?
        .iter()
        .rev()
        .find(|t| t["state"] == state)
        .and_then(|t| rfc3339_ms(t["at"].as_str()?))
}

/// Stops a run started with `wafer::run` and returns its report.
async fn stop(
    shutdown: &CancellationToken,
    task: tokio::task::JoinHandle<Result<wafer::RunReport, wafer::RunError>>,
) -> anyhow::Result<wafer::RunReport> {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .context("wafer did not stop within 60 s")??
        .map_err(|e| anyhow::anyhow!("wafer run failed: {e}"))
}

/// Waits until the admin endpoint reports every partition of the input ready; returns the
/// `/partitions` answer.
async fn wait_ready(port: u16, timeout: Duration) -> anyhow::Result<Json> {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = tokio::task::block_in_place(|| http_json(port, "GET", "/partitions", b""));
        if let Ok((200, p)) = &answer {
            let parts = p["partitions"].as_array().map_or(0, Vec::len);
            if p["ready"] == true && parts == PARTITIONS as usize {
                return Ok(p.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("not ready after {timeout:?}: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn section_ops(s: &Settings) -> anyhow::Result<Json> {
    let names = Names::new("ops");
    let first = names.get("first-commit");
    let rebuild = names.get("rebuild");
    let reload = names.get("reload");
    let side = [
        names.get("ml-features"),
        names.get("dead-letters"),
        names.get("late"),
    ];
    create_topics(&[
        (&first, PARTITIONS),
        (&rebuild, PARTITIONS),
        (&reload, PARTITIONS),
        (&side[0], 1),
        (&side[1], 1),
        (&side[2], 1),
    ])
    .await?;
    let mut out = json!({ "batch_size": s.batch_size, "linger_ms": s.linger_ms });
    let mut errors = Vec::new();
    match ops_first_commit(s, &names, &first).await {
        Ok(j) => out["first_commit"] = j,
        Err(e) => errors.push(format!("first commit: {e:#}")),
    }
    match ops_rebuild(s, &names, &rebuild).await {
        Ok(j) => out["rebuild"] = j,
        Err(e) => errors.push(format!("rebuild: {e:#}")),
    }
    match ops_reload(s, &names, &reload).await {
        Ok(j) => out["reload"] = j,
        Err(e) => errors.push(format!("hot reload: {e:#}")),
    }
    let mut topics = vec![first, rebuild, reload];
    topics.extend(side);
    delete_topics(&topics).await;
    out["errors"] = json!(errors);
    Ok(out)
}

/// Time from calling `wafer::run` to the first committed offset, with the artifact cache
/// warm and nothing to rebuild (a fresh group on a topic with data).
async fn ops_first_commit(s: &Settings, names: &Names, topic: &str) -> anyhow::Result<Json> {
    let n = s.ops_first_events;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ev = generate(n, Users::Skewed(s.users), now_ms - 600_000, 600_000, 21);
    produce_all(topic, &ev).await?;
    // Plugin load alone, as `View::build` does it (engine with the artifact cache, load):
    // the first fills the cache if it is cold, the rest are warm.
    let mut load_ms = Vec::new();
    for i in 0..=s.ops_reps {
        let started = Instant::now();
        let engine = engine()?;
        let plugin = load(&engine, &s.plugin, Duration::from_secs(60))?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        drop(plugin);
        if i > 0 {
            load_ms.push(took);
        }
    }
    let mut first_s = Vec::new();
    let mut join_s = Vec::new();
    let mut after_join_s = Vec::new();
    // Run 0 warms up (librdkafka, the broker's group coordinator, the cache); not counted.
    for run in 0..=s.ops_reps {
        let group = names.get(&format!("first-{run}"));
        let prefix = names.get(&format!("f{run}"));
        let port = free_port()?;
        let config = ops_config(s, names, &group, topic, &prefix, Some(port))?;
        let reader = group_reader(&group)?;
        let shutdown = CancellationToken::new();
        let called_ms = chrono::Utc::now().timestamp_millis();
        let started = Instant::now();
        let task = tokio::spawn(wafer::run(config, shutdown.clone()));
        let seen = loop {
            let at = tokio::task::block_in_place(|| committed(&reader, topic))?;
            if at.iter().any(|o| *o > 0) {
                break Ok(started.elapsed().as_secs_f64());
            }
            if task.is_finished() || started.elapsed() > Duration::from_secs(60) {
                break Err(anyhow::anyhow!("no commit within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let partitions = tokio::task::block_in_place(|| http_json(port, "GET", "/partitions", b""));
        let report = stop(&shutdown, task).await;
        let _ = tokio::task::block_in_place(|| redis_cleanup(&prefix));
        let seen = seen?;
        report?;
        if run == 0 {
            continue;
        }
        first_s.push(seen);
        // The group's assignment, from the host's readiness (wall clock, ms).
        if let Ok((_, p)) = partitions {
            let assigned = p["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|part| transition_ms(part, "assigned"))
                .min();
            if let Some(assigned) = assigned {
                let join = (assigned - called_ms) as f64 / 1000.0;
                join_s.push(join);
                after_join_s.push(seen - join);
            }
        }
        say(format!("ops: first commit {:.3} s after the call", seen));
    }
    Ok(json!({
        "events_in_topic": n,
        "runs": first_s.len(),
        "seconds": stats(&first_s),
        "plugin_load_ms": stats(&load_ms),
        "call_to_assignment_s": stats(&join_s),
        "assignment_to_first_commit_s": stats(&after_join_s),
        "poll_every_ms": 5,
    }))
}

/// Rebuild on assignment: a first run processes and commits a topic whose events all stay
/// in the window; a second run of the same group replays them into the windows.
async fn ops_rebuild(s: &Settings, names: &Names, topic: &str) -> anyhow::Result<Json> {
    let n = s.ops_rebuild_events;
    let now_ms = chrono::Utc::now().timestamp_millis();
    // 30 minutes of event time: every event is still in the 1 h window at the end.
    let ev = generate(n, Users::Skewed(s.users), now_ms - 1_800_000, 1_800_000, 31);
    say(format!("ops: producing {n} events for the rebuild"));
    produce_all(topic, &ev).await?;
    let ends = tokio::task::block_in_place(|| end_offsets(topic))?;
    let group = names.get("rebuild");
    let prefix = names.get("r");
    let config = ops_config(s, names, &group, topic, &prefix, None)?;
    let first = run_wafer_until_caught_up(config, &group, topic, &ends, s.e2e_timeout).await?;
    say(format!(
        "ops: first run processed {n} events in {:.1} s; restarting the group",
        first.seconds
    ));
    let port = free_port()?;
    let config = ops_config(s, names, &group, topic, &prefix, Some(port))?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(wafer::run(config, shutdown.clone()));
    let ready = wait_ready(port, s.e2e_timeout).await;
    let ready_after_s = started.elapsed().as_secs_f64();
    let report = stop(&shutdown, task).await;
    let _ = tokio::task::block_in_place(|| redis_cleanup(&prefix));
    let (ready, report) = (ready?, report?);
    let parts = ready["partitions"].as_array().cloned().unwrap_or_default();
    let mut records = 0u64;
    let mut per_partition = Vec::new();
    let (mut first_rebuilding, mut last_ready, mut first_assigned) = (i64::MAX, i64::MIN, i64::MAX);
    for p in &parts {
        let r = p["replay"]["records"].as_u64().unwrap_or(0);
        records += r;
        let (a, b, c) = (
            transition_ms(p, "assigned"),
            transition_ms(p, "rebuilding"),
            transition_ms(p, "ready"),
        );
        if let (Some(a), Some(b), Some(c)) = (a, b, c) {
            first_assigned = first_assigned.min(a);
            first_rebuilding = first_rebuilding.min(b);
            last_ready = last_ready.max(c);
            per_partition.push(json!({
                "partition": p["partition"],
                "records": r,
                "ms": c - b,
                "events_per_s": r as f64 * 1000.0 / (c - b).max(1) as f64,
            }));
        }
    }
    let rebuild_ms = (last_ready - first_rebuilding).max(1);
    let rate = records as f64 * 1000.0 / rebuild_ms as f64;
    say(format!(
        "ops: rebuilt {records} events in {rebuild_ms} ms ({rate:.0} ev/s)"
    ));
    Ok(json!({
        "events": n,
        "replayed": records,
        "replayed_counter": report.counters.replayed,
        "rebuild_ms": rebuild_ms,
        "assignment_to_ready_ms": last_ready - first_assigned,
        "events_per_s": rate,
        "partitions": per_partition,
        "first_run_seconds": first.seconds,
        "call_to_ready_s": ready_after_s,
        "state": report.state,
    }))
}

/// What a user's features must be at the end of the reload run: every event of the run
/// is in the 1 h window.
#[derive(Default, Clone, Copy)]
struct Expected {
    count: u64,
    actions: u8,
    sum: f64,
}

/// Produces `rate` events/s for `total` to `topic` over `users` (skewed); event time =
/// send time. Returns the events sent and each user's expected features.
fn steady_producer(
    topic: &str,
    rate: u64,
    total: Duration,
    users: u64,
) -> anyhow::Result<(u64, HashMap<u32, Expected>)> {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut rng = Rng::new(41);
    let mut expected: HashMap<u32, Expected> = HashMap::new();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(128);
    while started.elapsed() < total {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let k = ((rng.below(users) * rng.below(users)) / users.max(1)) as u32;
            let a = rng.below(ACTIONS.len() as u64) as usize;
            let value = rng.below(100_000) as f64 / 100.0;
            let user = user_name(k);
            buf.clear();
            write_event(
                &mut buf,
                &user,
                ACTIONS[a],
                value,
                chrono::Utc::now().timestamp_millis(),
            );
            let mut record = BaseRecord::to(topic)
                .partition((k % PARTITIONS as u32) as i32)
                .key(&user)
                .payload(&buf);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            let e = expected.entry(k).or_default();
            e.count += 1;
            e.actions |= 1 << a;
            e.sum += value;
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    producer.flush(Duration::from_secs(30))?;
    Ok((sent, expected))
}

/// Compares every user's features in Redis with the expected ones: (users checked,
/// events missing, events counted twice, users whose values differ otherwise).
fn check_redis(prefix: &str, expected: &HashMap<u32, Expected>) -> anyhow::Result<Json> {
    let client = redis::Client::open(redis_url())?;
    let mut con = client.get_connection()?;
    let users: Vec<u32> = expected.keys().copied().collect();
    let (mut missing, mut doubled, mut wrong, mut absent) = (0u64, 0u64, 0u64, 0u64);
    for chunk in users.chunks(1000) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|k| format!("{prefix}:features:{}", user_name(*k)))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut con)?;
        for (k, v) in chunk.iter().zip(values) {
            let e = expected[k];
            let Some(j) = v.and_then(|v| serde_json::from_str::<Json>(&v).ok()) else {
                absent += 1;
                missing += e.count;
                continue;
            };
            let count = j["event_count_1h"].as_u64().unwrap_or(0);
            missing += e.count.saturating_sub(count);
            doubled += count.saturating_sub(e.count);
            let unique = j["unique_actions_1h"].as_u64().unwrap_or(u64::MAX);
            let avg = j["avg_value_1h"].as_f64().unwrap_or(f64::NAN);
            let want_avg = e.sum / e.count as f64;
            if count == e.count
                && (unique != u64::from(e.actions.count_ones())
                    || (avg - want_avg).abs() > 1e-9 * want_avg.abs().max(1.0))
            {
                wrong += 1;
            }
        }
    }
    Ok(json!({
        "users": users.len(),
        "events_missing": missing,
        "events_double_counted": doubled,
        "users_absent": absent,
        "users_otherwise_wrong": wrong,
    }))
}

/// Hot reloads under a steady stream: `ops_reloads` uploads alternating the v2 fixture and
/// the shipped plugin, each waited for until active; the pauses come from the host
/// (`swap_pause_us` of each version swapped in); the end state is checked in Redis.
async fn ops_reload(s: &Settings, names: &Names, topic: &str) -> anyhow::Result<Json> {
    let v2 = repo_root().join("target/fixtures/user_activity_v2.wasm");
    let v2_bytes = std::fs::read(&v2)
        .with_context(|| format!("reading {} (run `make fixtures`)", v2.display()))?;
    let v1_bytes = std::fs::read(&s.plugin)?;
    let group = names.get("reload");
    let prefix = names.get("h");
    let port = free_port()?;
    let config = ops_config(s, names, &group, topic, &prefix, Some(port))?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(wafer::run(config, shutdown.clone()));
    let every = Duration::from_millis(s.ops_reload_every_ms);
    let warmup = Duration::from_secs(2);
    let total = warmup + every * (s.ops_reloads as u32 + 1);
    let run = async {
        wait_ready(port, Duration::from_secs(60)).await?;
        let producer = {
            let (topic, rate, users) = (topic.to_owned(), s.ops_rate, s.ops_users);
            tokio::task::spawn_blocking(move || steady_producer(&topic, rate, total, users))
        };
        tokio::time::sleep(warmup).await;
        let mut uploads = Vec::new();
        for i in 0..s.ops_reloads {
            let next = Instant::now() + every;
            let bytes = if i % 2 == 0 { &v2_bytes } else { &v1_bytes };
            let started = Instant::now();
            let (status, body) =
                tokio::task::block_in_place(|| http_json(port, "POST", "/plugins", bytes))?;
            if status != 200 {
                bail!("upload {} refused ({status}): {body}", i + 1);
            }
            let validated_ms = started.elapsed().as_secs_f64() * 1000.0;
            let sha = body["sha256"].as_str().unwrap_or_default().to_owned();
            // Active = swapped in: the newest entry with this sha256 is `active`.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, list) =
                    tokio::task::block_in_place(|| http_json(port, "GET", "/plugins", b""))?;
                let newest = list["versions"].as_array().and_then(|l| {
                    l.iter()
                        .rev()
                        .find(|v| v["sha256"] == sha.as_str())
                        .cloned()
                });
                if newest.is_some_and(|v| v["state"] == "active") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("version {} not active 10 s after its upload", i + 1);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            uploads.push(json!({
                "validated_ms": validated_ms,
                "active_after_ms": started.elapsed().as_secs_f64() * 1000.0,
            }));
            tokio::time::sleep_until(next.into()).await;
        }
        let (sent, expected) = producer.await??;
        Ok((sent, expected, uploads))
    };
    let result = run.await;
    // Caught up: every partition committed to its end offset.
    let caught_up = async {
        let ends = tokio::task::block_in_place(|| end_offsets(topic))?;
        let reader = group_reader(&group)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let at = tokio::task::block_in_place(|| committed(&reader, topic))?;
            if at.iter().zip(&ends).all(|(a, e)| a >= e) {
                return anyhow::Ok(());
            }
            if Instant::now() > deadline {
                bail!("not caught up: committed {at:?} of {ends:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let caught_up = if result.is_ok() {
        caught_up.await
    } else {
        Ok(())
    };
    let report = stop(&shutdown, task).await;
    let (sent, expected, uploads) = result?;
    caught_up?;
    let report = report?;
    let check = tokio::task::block_in_place(|| check_redis(&prefix, &expected));
    let _ = tokio::task::block_in_place(|| redis_cleanup(&prefix));
    let check = check?;
    let pauses: Vec<f64> = report
        .versions
        .iter()
        .filter_map(|v| v.swap_pause_us)
        .map(|us| us as f64 / 1000.0)
        .collect();
    let max = pauses.iter().copied().fold(f64::NAN, f64::max);
    say(format!(
        "ops: {} swaps, pause median {:.3} ms, max {max:.3} ms; {}",
        pauses.len(),
        stats(&pauses)["median"].as_f64().unwrap_or(f64::NAN),
        check
    ));
    Ok(json!({
        "rate": s.ops_rate,
        "users": s.ops_users,
        "reloads": s.ops_reloads,
        "reload_every_ms": s.ops_reload_every_ms,
        "events_sent": sent,
        "events_in": report.counters.events_in,
        "late": report.counters.late,
        "dead_letters": report.counters.dead_letters,
        "reloads_counted": report.counters.reloads,
        "pause_ms": stats(&pauses),
        "pause_max_ms": max,
        "uploads": uploads,
        "check": check,
        "plugin_at_end": report.plugin,
    }))
}

// ------------------------------------------------------------------------------------------
// Profile child: the full in-process path, for callgrind (`--toggle-collect=*profile_loop*`)
// or perf.

#[inline(never)]
fn profile_loop(p: &mut Processor, ev: &Events, range: std::ops::Range<usize>) -> u64 {
    feed_range(p, ev, range, 5000)
}

/// The full in-process path for a profiler: the same stream density as the in-process
/// section (events per second of event time), a warm-up long enough to fill the 1 h
/// window (not profiled: callgrind collects inside `profile_loop` only, perf is enabled
/// around it), then `WAFER_BENCH_PROFILE_EVENTS` profiled events.
fn profile_child() -> anyhow::Result<()> {
    let s = Settings::from_env();
    let n: usize = env_or("WAFER_BENCH_PROFILE_EVENTS", 50_000);
    let ms_per_event = s.span_ms as f64 / s.inproc_events.max(1) as f64;
    let fill = (HOUR_MS as f64 / ms_per_event) as usize;
    let warm: usize = env_or("WAFER_BENCH_PROFILE_WARM", fill + 1);
    let total = warm + n;
    let ev = generate(
        total,
        Users::Skewed(s.users),
        START_MS,
        (total as f64 * ms_per_event) as i64,
        1,
    );
    let engine = engine()?;
    let mut p = processor(load(&engine, &s.plugin, Duration::from_secs(60))?);
    // Under `perf record -D -1 --control fifo:CTL,ACK` (or callgrind driven by run.sh through
    // the same two fifos), profile the loop only: "enable" before it, "disable" after it,
    // each acknowledged by a line on the ack fifo.
    let control = |command: &str| -> anyhow::Result<()> {
        use std::io::{BufRead, Write};
        let (Some(ctl), Some(ack)) = (
            std::env::var_os("WAFER_BENCH_CTL"),
            std::env::var_os("WAFER_BENCH_ACK"),
        ) else {
            return Ok(());
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(ctl)?
            .write_all(format!("{command}\n").as_bytes())?;
        let mut reply = String::new();
        std::io::BufReader::new(std::fs::File::open(ack)?).read_line(&mut reply)?;
        Ok(())
    };
    feed_range(&mut p, &ev, 0..warm, 5000);
    control("enable")?;
    let (t, updates) = Timing::measure(|| profile_loop(&mut p, &ev, warm..total));
    control("disable")?;
    println!(
        "{}",
        json!({ "events": n, "warm_events": warm, "updates": updates, "wall_ns": t.wall_ns, "state": p.state_size() })
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------

fn write_results(path: &Path, results: &Json) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(results)?)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match std::env::var("WAFER_BENCH_CHILD").as_deref() {
        Ok("memory") => return memory_child(),
        Ok("profile") => return profile_child(),
        _ => {}
    }
    let s = Settings::from_env();
    if !s.plugin.exists() {
        bail!(
            "{} is missing: run `make plugins` first",
            s.plugin.display()
        );
    }
    let out = std::env::var_os("WAFER_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/bench/results.json"));
    let sections = env_str("WAFER_BENCH_SECTIONS", "inproc,memory,e2e,latency,ops");
    let sections: Vec<&str> = sections.split(',').map(str::trim).collect();
    let mut results = json!({
        "started": chrono::Utc::now().to_rfc3339(),
        "plugin": s.plugin.display().to_string(),
        "sections": sections,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for section in &sections {
        let started = Instant::now();
        let r = match *section {
            "inproc" => section_inproc(&s),
            "memory" => section_memory(&s),
            "e2e" => runtime.block_on(section_e2e(&s)),
            "latency" => runtime.block_on(section_latency(&s)),
            "ops" => runtime.block_on(section_ops(&s)),
            "" => continue,
            other => Err(anyhow::anyhow!("unknown section `{other}`")),
        };
        let elapsed = started.elapsed().as_secs_f64();
        say(format!("section {section} done in {elapsed:.1} s"));
        results[*section] = match r {
            Ok(mut j) => {
                j["section_seconds"] = json!(elapsed);
                j
            }
            Err(e) => {
                say(format!("section {section} failed: {e:#}"));
                json!({ "error": format!("{e:#}"), "section_seconds": elapsed })
            }
        };
        write_results(&out, &results)?;
    }
    results["finished"] = json!(chrono::Utc::now().to_rfc3339());
    write_results(&out, &results)?;
    say(format!("results written to {}", out.display()));
    Ok(())
}
