//! What can be tested of the container without a Docker engine: the compose
//! file parses and wires the services, the Dockerfile follows the toolchain,
//! the shipped config is valid, the event generator speaks the pipeline's
//! format, and the release binary runs standalone with the shipped config
//! (hosts, names and paths rewritten to this machine's).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wafer_tests::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn compose_file_wires_kafka_redis_wafer_and_the_generator() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    for name in ["kafka", "redis", "wafer", "generator"] {
        assert!(
            services.contains_key(serde_yaml::Value::from(name)),
            "service {name}"
        );
    }
    let s = &compose["services"];
    let image = |svc: &str| s[svc]["image"].as_str().unwrap_or_default().to_owned();
    assert!(
        image("kafka").starts_with("apache/kafka:"),
        "official image"
    );
    let roles = s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
        .as_str()
        .unwrap();
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "KRaft"
    );
    assert_eq!(
        s["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].as_str(),
        Some("PLAINTEXT://kafka:9092")
    );
    assert!(image("redis").starts_with("redis:"));
    assert_eq!(s["wafer"]["build"].as_str(), Some("."));
    let volumes: Vec<&str> = s["wafer"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        volumes.contains(&"./docker/wafer.toml:/etc/wafer/wafer.toml:ro"),
        "config mount: {volumes:?}"
    );
    assert!(
        volumes.iter().any(|v| v.ends_with(":/plugins")),
        "hot-load dir: {volumes:?}"
    );
    let generator = serde_yaml::to_string(&s["generator"]).unwrap();
    assert!(generator.contains("./docker/event_generator.py:/app/event_generator.py"));
    assert!(generator.contains("--topic user-events"));
    for file in [
        "Dockerfile",
        "docker/wafer.toml",
        "docker/event_generator.py",
    ] {
        assert!(repo_root().join(file).exists(), "{file}");
    }
}

#[test]
fn dockerfile_follows_the_toolchain_and_runs_wafer_as_non_root() {
    let dockerfile = read("Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "the builder must use the toolchain of rust-toolchain.toml ({channel})"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-"));
    assert!(dockerfile.contains("wasm32-unknown-unknown"));
    assert!(dockerfile.contains("FROM debian:") && dockerfile.contains("-slim"));
    assert!(dockerfile.contains("USER wafer"));
    assert!(dockerfile.contains("ENTRYPOINT [\"wafer\"]"));
    assert!(dockerfile.contains("CMD [\"run\",\"--config\",\"/etc/wafer/wafer.toml\"]"));
    assert!(dockerfile.contains("/plugins/"));
}

#[test]
fn shipped_config_is_valid() {
    let config = wafer::config::Config::parse(&read("docker/wafer.toml"), "docker/wafer.toml")
        .expect("docker/wafer.toml is a valid config");
    let kafka = config.kafka.as_ref().unwrap();
    if std::env::var_os("WAFER_KAFKA_BROKERS").is_none() {
        assert_eq!(kafka.brokers, "kafka:9092");
    }
    if std::env::var_os("WAFER_REDIS_URL").is_none() {
        assert_eq!(config.redis.as_ref().unwrap().url, "redis://redis:6379");
    }
    assert_eq!(kafka.topics, ["user-events"]);
    let plugin = config.plugin.as_ref().unwrap();
    assert_eq!(
        plugin.path,
        std::path::Path::new("/plugins/user_activity.wasm")
    );
    assert!(plugin.watch);
    let admin = config.admin.as_ref().unwrap();
    let listen: std::net::SocketAddr = admin.listen.parse().unwrap();
    assert!(listen.ip().is_loopback(), "no token: keep it on loopback");
}

#[test]
fn generator_writes_the_pipelines_event_format() {
    let out = Command::new("python3")
        .arg(repo_root().join("docker/event_generator.py"))
        .args(["--dry-run", "--count", "200", "--seed", "5"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(e["user_id"].as_str().unwrap().starts_with("user_"));
        assert!(e["action"].is_string());
        assert!(e["value"].is_number());
        assert!(
            wafer::event::parse_timestamp(e["timestamp"].as_str().unwrap()).is_ok(),
            "timestamp of {line}"
        );
    }
}

/// The release binary with the shipped config, on this machine's Kafka and
/// Redis: it starts, serves its probes, metrics and features, and exits 0 on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_binary_runs_standalone_with_the_shipped_config() {
    let binary = repo_root().join("target/release/wafer");
    assert!(
        binary.exists(),
        "{} is missing: run `make host` first",
        binary.display()
    );
    let env = wafer_tests::Env::new("container", 2).await.unwrap();
    let port = wafer_tests::free_port();
    let plugins = wafer_tests::user_activity_plugin();
    let plugins = plugins.parent().unwrap().display().to_string();
    // Only names, paths and the port change; hosts come from the documented overrides.
    let text = read("docker/wafer.toml")
        .replace("\"/plugins/", &format!("\"{plugins}/"))
        .replace(
            "cache_dir = \"/var/cache/wafer\"",
            &format!(
                "cache_dir = \"{}\"",
                std::env::temp_dir().join("wafer-artifacts").display()
            ),
        )
        .replace("\"feature-pipeline\"", &format!("\"{}\"", env.group))
        .replace("[\"user-events\"]", &format!("[\"{}\"]", env.input))
        .replace("\"ml-features\"", &format!("\"{}\"", env.output))
        .replace(
            "\"wafer-dead-letters\"",
            &format!("\"{}\"", env.dead_letters),
        )
        .replace("\"wafer-late-events\"", &format!("\"{}\"", env.late))
        .replace("features:{user_id}", &env.key_template())
        .replace("127.0.0.1:9100", &format!("127.0.0.1:{port}"));
    let path = std::env::temp_dir().join(format!("{}.toml", env.name));
    std::fs::write(&path, &text).unwrap();

    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&path)
        .env("WAFER_KAFKA_BROKERS", wafer_tests::brokers())
        .env("WAFER_REDIS_URL", wafer_tests::redis_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("wafer exited early: {status}");
        }
        assert!(Instant::now() < deadline, "wafer never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = wafer_tests::reference::generate(3, 300, 20, 2);
    let records: Vec<(i32, String, String)> = events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect();
    env.produce(&records).await.unwrap();
    env.wait_caught_up(Duration::from_secs(120)).await.unwrap();
    let exp = wafer_tests::reference::expect(&events);
    let user = exp.features.keys().next().unwrap();
    let r = http
        .get(format!("{base}/features/user-activity/{user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let got: serde_json::Value = r.json().await.unwrap();
    assert_eq!(got["event_count_1h"], exp.features[user].count);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "wafer_events_in_total{{view=\"user-activity\"}} {}",
            events.len()
        )),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "wafer did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "wafer exited with {exit}");
}
