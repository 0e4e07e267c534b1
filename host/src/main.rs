//! The `wafer` command line: a thin shell over the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use wafer::config::{Config, QUICKSTART};
use wafer::toolkit::Language;

/// mimalloc instead of glibc's allocator: once the window is full (events
/// expiring as others arrive) the in-process path runs about 1.5x as fast, end
/// to end about 1.17x; it keeps more freed memory resident (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Wafer: real-time ML features from Kafka events, computed by WebAssembly plugins.
#[derive(Parser)]
#[command(name = "wafer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline from a TOML config until SIGTERM/SIGINT (Kafka source) or
    /// the end of the file (file source). `WAFER_KAFKA_BROKERS` and
    /// `WAFER_REDIS_URL` override the configured addresses.
    Run {
        /// Pipeline configuration file (see examples/ and docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the embedded quickstart: the sample events in examples/events.jsonl
    /// through the user-activity plugin into the in-memory store, then print
    /// a few users' features. Needs no servers.
    Demo {
        /// Event file to use instead of examples/events.jsonl.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Plugin component to use instead of the built user-activity plugin.
        #[arg(long)]
        plugin: Option<PathBuf>,
    },
    /// Print the embedded quickstart configuration.
    Quickstart,
    /// Plugin author's toolkit: scaffold a plugin project, build its component,
    /// inspect a component, test it without Kafka or Redis.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Recompute feature views from recorded events into an offline log (Parquet files,
    /// the layout of `[offline]`), with the config's plugins and the streaming engine.
    /// The events are a file (`--input`, read in file order as one partition; needs no
    /// servers) or a Kafka topic (`--topic`, each partition read on its own up to its end
    /// offset at start, from the config's `[kafka]` brokers, never committing). Each
    /// partition is flushed every `--batch-size` events (one row per changed entity per
    /// flush, tombstones included). See docs/operations.md (Backfill) for when the rows
    /// equal the streaming path's.
    Backfill(BackfillArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("events").required(true).args(["input", "topic"])))]
struct BackfillArgs {
    /// Pipeline configuration: its views (`[plugin]` or `[[views]]`), `[pipeline]`, and
    /// `[kafka]` brokers and properties for `--topic`.
    #[arg(long, short)]
    config: PathBuf,
    /// Events: a JSONL file (one JSON object per line) or a `.parquet` file (one event per
    /// row, columns named like the event fields).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Events: a Kafka topic, on the config's `[kafka]` brokers (`WAFER_KAFKA_BROKERS`
    /// overrides). With `--from`, each partition is read from its first record whose Kafka
    /// timestamp is at or after `from - W_max - lead` (W_max: the longest window).
    #[arg(long)]
    topic: Option<String>,
    /// With `--topic` and `--from`: record time, in ms, read before `from - W_max` to cover
    /// out-of-order events and record timestamps behind event times; default W_max.
    #[arg(long, requires = "topic", value_parser = clap::value_parser!(i64).range(0..))]
    lead_ms: Option<i64>,
    /// Root directory to write to (`<out>/view=<view>/date=.../hour=.../part-*.parquet`). Not
    /// a running host's `[offline] dir`.
    #[arg(long)]
    out: PathBuf,
    /// Views to recompute (repeatable); default: every view of the config.
    #[arg(long)]
    view: Vec<String>,
    /// Keep rows whose as-of event time is at or after this (ISO-8601, no offset = UTC, or
    /// epoch ms); earlier events still fill the windows (a file is read from its start).
    #[arg(long, value_parser = wafer::backfill::parse_time)]
    from: Option<i64>,
    /// Keep rows whose as-of event time is before this (a topic partition stops once its
    /// stream time reaches it).
    #[arg(long, value_parser = wafer::backfill::parse_time)]
    to: Option<i64>,
    /// Events of a partition between two flushes; default: `[pipeline] batch_size`. 1 gives
    /// a row per event for every entity it changed (finest point-in-time history).
    #[arg(long)]
    batch_size: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

impl From<Lang> for Language {
    fn from(lang: Lang) -> Self {
        match lang {
            Lang::Rust => Language::Rust,
            Lang::Python => Language::Python,
            Lang::Js => Language::Js,
        }
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin project in DIR/NAME that builds and passes its own tests as generated.
    ///
    /// The project holds the feature logic, its native tests, sample events.jsonl with the
    /// expected.txt that `wafer plugin test` checks, and the plugin contract
    /// (wit/wafer.wit) and the language's SDK (guest-sdk/) written from the copies
    /// built into this binary, so the project needs no Wafer checkout.
    New {
        /// Language of the plugin.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Plugin name: lowercase letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// Directory to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin project into a component, DIR/dist/<name>.wasm, and print its path.
    ///
    /// The language is told by the files: Cargo.toml (Rust: cargo for
    /// wasm32-unknown-unknown, linked by rustup's wasm-component-ld), pyproject.toml
    /// or app.py (Python: componentize-py), package.json (JavaScript:
    /// componentize-js on src/component.js).
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Directory holding the pinned Python and JavaScript toolchains
        /// (python-venv/, js/), as the repository's scripts/build-plugins-{py,js}.sh
        /// install them; by default the nearest .toolchains above the project or
        /// above the wafer executable (componentize-py is also taken from PATH).
        #[arg(long, env = "WAFER_TOOLCHAINS")]
        toolchains: Option<PathBuf>,
    },
    /// Print a plugin's self-description: features, types, windows, aggregations, imports.
    Inspect {
        /// The plugin component (.wasm).
        plugin: PathBuf,
    },
    /// Replay a JSONL file of events in event-time order through the plugin with the real
    /// host engine and print the final features (`<key> <json>` lines), or, with
    /// `--expect`, print the differences and exit 1 when there are any.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// Events, one JSON object per line.
        #[arg(long)]
        events: PathBuf,
        /// Expected features, in the format this command prints.
        #[arg(long)]
        expect: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let report = runtime.block_on(run_until_signal(config))?;
            print_report(&report);
        }
        Command::Demo { events, plugin } => {
            let mut config = Config::parse(QUICKSTART, "embedded quickstart")?;
            if let (Some(file), Some(events)) = (&mut config.file, events) {
                file.path = events;
            }
            if let Some(plugin) = plugin {
                config.plugin_mut().path = plugin;
            }
            let report = runtime.block_on(run_until_signal(config))?;
            print_report(&report);
        }
        Command::Quickstart => print!("{QUICKSTART}"),
        Command::Plugin(PluginCommand::New { lang, name, dir }) => {
            let lang = Language::from(lang);
            let project = wafer::toolkit::scaffold::new_project(lang, &name, &dir)?;
            let test = match lang {
                Language::Rust => "cargo test",
                Language::Python => "python3 -m pytest",
                Language::Js => "node --test",
            };
            let module = name.replace('-', "_");
            eprintln!(
                "wafer: created the {lang} plugin `{name}`; try:\n  cd {}\n  {test}\n  wafer plugin build\n  \
                 wafer plugin test dist/{module}.wasm --events events.jsonl --expect expected.txt",
                project.display()
            );
            println!("{}", project.display());
        }
        Command::Plugin(PluginCommand::Build { dir, toolchains }) => {
            let built = wafer::toolkit::build::build(&dir, toolchains.as_deref())
                .with_context(|| format!("cannot build the plugin in {}", dir.display()))?;
            for warning in &built.warnings {
                eprintln!("wafer: warning: {warning}");
            }
            for component in &built.components {
                println!("{}", component.display());
            }
        }
        Command::Plugin(PluginCommand::Inspect { plugin }) => {
            print!("{}", wafer::toolkit::inspect(&plugin)?);
        }
        Command::Plugin(PluginCommand::Test {
            plugin,
            events,
            expect,
        }) => {
            let features = runtime.block_on(wafer::toolkit::replay(&plugin, &events))?;
            match expect {
                None => print!("{}", wafer::toolkit::format_features(&features)),
                Some(path) => {
                    let expected = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let diff = wafer::toolkit::diff(&features, &expected);
                    if !diff.is_empty() {
                        for line in &diff {
                            println!("{line}");
                        }
                        anyhow::bail!("{} differences from {}", diff.len(), path.display());
                    }
                    eprintln!("wafer: {} entities as expected", features.len());
                }
            }
        }
        Command::Backfill(args) => backfill(args)?,
    }
    Ok(())
}

fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let input = match (args.input, args.topic) {
        (Some(path), None) => wafer::backfill::Input::from_path(&path),
        (None, Some(topic)) => wafer::backfill::Input::Kafka {
            topic,
            lead_ms: args.lead_ms,
        },
        _ => anyhow::bail!("give either --input or --topic"),
    };
    let options = wafer::backfill::Options {
        input,
        views: args.view,
        out: args.out,
        from_ms: args.from,
        to_ms: args.to,
        batch_size: args.batch_size,
    };
    let report = wafer::backfill::run(&config, &options).context("backfill failed")?;
    for p in &report.partitions {
        eprintln!(
            "wafer: partition {}: read offsets {}..{} ({} records; end offset {})",
            p.partition, p.start, p.stop, p.records, p.end
        );
    }
    eprintln!(
        "wafer: backfill read {} events ({} re-forwarded copies dropped)",
        report.events, report.copies
    );
    for v in &report.views {
        eprintln!(
            "wafer: view {}: {} rows written, {} outside --from/--to, {} events applied, {} late, {} malformed, {} plugin failures",
            v.view, v.rows, v.skipped, v.applied, v.late, v.dead, v.failures
        );
    }
    Ok(())
}

async fn run_until_signal(config: Config) -> anyhow::Result<wafer::RunReport> {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the batch, flushing, committing");
        trigger.cancel();
    });
    let print = config.file.as_ref().map_or(0, |f| f.print_entities);
    let report = wafer::run(config, shutdown)
        .await
        .context("pipeline failed")?;
    if let Some(store) = &report.store {
        for (key, value) in store.iter().take(print) {
            println!("{key} {value}");
        }
    }
    Ok(report)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn print_report(report: &wafer::RunReport) {
    let c = &report.counters;
    eprintln!(
        "wafer: plugin {}: {} events in, {} late, {} dead-lettered, {} feature updates, {} tombstones, {} entities in window state",
        report.plugin, c.events_in, c.late, c.dead_letters, c.updates, c.tombstones, report.state.0
    );
}
