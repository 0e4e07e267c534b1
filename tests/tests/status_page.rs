//! The status page in a real browser: a host on real Kafka and Redis with some
//! events (one malformed on purpose), then headless Chromium (Debian's
//! `chromium`, installed by `scripts/chromium.sh`) renders `/status`. The
//! rendered DOM must show the plugin and its version, a throughput chart with
//! data points summing to the events consumed, the malformed event's dead
//! letter, and a feature lookup equal to the reference model; the screenshot
//! must be a non-blank PNG of the window's size. Without the token, the page
//! shows no data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wafer_tests::reference;
use wafer_tests::{Env, Host};

const CHROMIUM: &str = "/usr/bin/chromium";
const CAUGHT_UP: Duration = Duration::from_secs(120);
/// Longest a Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
const TOKEN: &str = "status-page-token";
const VIEW: &str = "user-activity";
const PROBE_KEY: &str = "malformed-probe";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wafer-status-{name}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `extra` flags, killed after
/// [`BROWSER_TIMEOUT`]; returns its stdout.
fn chromium(url: &str, extra: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/chromium.sh (make test does)"
    );
    let profile = scratch("profile");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg("--virtual-time-budget=5000")
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium failed ({status}) on {url}");
    out
}

/// The text of the element whose start tag contains `marker`, tags stripped
/// and the HTML entities Chromium's serializer emits decoded.
fn element_text(dom: &str, marker: &str) -> String {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the DOM"));
    let open_end = start + dom[start..].find('>').unwrap() + 1;
    let tag_start = dom[..start].rfind('<').unwrap();
    let tag: String = dom[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let close = format!("</{tag}>");
    let end = open_end + dom[open_end..].find(&close).unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[open_end..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the start tag containing `marker`.
fn attribute(dom: &str, marker: &str, name: &str) -> String {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the DOM"));
    let tag_start = dom[..start].rfind('<').unwrap();
    let tag = &dom[tag_start..start + dom[start..].find('>').unwrap()];
    let key = format!(" {name}=\"");
    let at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    tag[at..at + tag[at..].find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_real_content_in_headless_chromium() {
    let env = Env::new("status-page", 2).await.unwrap();
    let events = reference::generate(47, 1500, 60, 2);
    let exp = reference::expect(&events);
    let mut input = reference::records(&events);
    input.push((1, PROBE_KEY.into(), "{\"user_id\": \"probe\", oops".into()));
    env.produce(&input).await.unwrap();
    let probe = env
        .read_topic(&env.input)
        .unwrap()
        .into_iter()
        .find(|r| r.key.as_deref() == Some(PROBE_KEY))
        .unwrap();

    let port = wafer_tests::free_port();
    let mut config = env.config();
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
    });
    let base = format!("http://127.0.0.1:{port}");
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    // Wait until the per-second history holds a sample taken after the last
    // event was consumed, so the chart covers the whole run.
    let http = reqwest::Client::new();
    let consumed = input.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = http
            .get(format!("{base}/status.json"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let samples = status["samples"].as_array().unwrap();
        if samples.len() >= 3 && samples.last().unwrap()["events_in"] == consumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sample with every event: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The page is public but holds nothing: without the token it shows no data.
    let user = exp.features.keys().nth(3).unwrap().clone();
    let query = format!("/status?view={VIEW}&entity={user}");
    let anonymous = {
        let url = format!("{base}{query}");
        tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom".into()]))
            .await
            .unwrap()
    };
    assert!(anonymous.contains("needs a bearer token"), "{anonymous}");
    for leak in ["event_count_1h", PROBE_KEY, "0.1.0"] {
        assert!(
            !anonymous.contains(leak),
            "`{leak}` shown without the token"
        );
    }

    // With the token (in the fragment, never sent to the server).
    let url = format!("{base}{query}#token={TOKEN}");
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || chromium(&url, &["--dump-dom".into()]))
            .await
            .unwrap()
    };
    assert!(dom.contains("data-loaded=\"1\""), "the page never loaded");

    // Plugins: the view's plugin, its version, active.
    let plugins = element_text(&dom, "id=\"plugins\"");
    for want in [VIEW, "0.1.0", "active"] {
        assert!(plugins.contains(want), "`{want}` not in plugins: {plugins}");
    }

    // Chart: several points, and the events it covers are those consumed.
    let points: usize = attribute(&dom, "id=\"chart\"", "data-points")
        .parse()
        .unwrap();
    assert!(
        points >= 2,
        "fewer than two data points in the chart: {points}"
    );
    assert_eq!(
        attribute(&dom, "id=\"chart\"", "data-total-events"),
        consumed.to_string()
    );
    assert!(
        attribute(&dom, "id=\"chart\"", "data-max-rate")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let polyline = attribute(&dom, "class=\"series-events\"", "points");
    assert_eq!(polyline.split(' ').count(), points, "{polyline}");

    // Dead letters: the malformed probe with its source position.
    let dead = element_text(&dom, "id=\"dead-letters\"");
    assert!(dead.contains(PROBE_KEY), "{dead}");
    let position = format!("{}/{}@{}", env.input, probe.partition, probe.offset);
    assert!(dead.contains(&position), "`{position}` not in {dead}");
    assert!(dead.contains("decode"), "{dead}");

    // Feature lookup prefilled from the query: the reference's values.
    let result = element_text(&dom, "id=\"lookup-result\"");
    let json = result
        .trim()
        .strip_prefix("200 ")
        .unwrap_or_else(|| panic!("lookup did not answer 200: {result}"));
    let got: serde_json::Value = serde_json::from_str(json).unwrap();
    let want = &exp.features[&user];
    assert_eq!(got["user_id"], user.as_str());
    assert_eq!(got["event_count_1h"], want.count);
    assert_eq!(got["unique_actions_1h"], want.unique);
    assert_eq!(got["last_action"], want.last_action.as_str());

    // Screenshot: a PNG of the window's size, not blank.
    let dir = scratch("shot");
    let shot = dir.join("status.png");
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || chromium(&url, &[arg]))
        .await
        .unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("chromium wrote no screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let mut colors = std::collections::HashSet::new();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for px in pixels.chunks(channels) {
        colors.insert(px);
        *counts.entry(px).or_default() += 1;
    }
    let dominant = counts.values().max().copied().unwrap_or(0);
    let total = (WIDTH * HEIGHT) as usize;
    assert!(colors.len() >= 32, "only {} colours", colors.len());
    assert!(
        dominant < total * 95 / 100,
        "one colour covers {dominant} of {total} pixels: blank page"
    );
    let _ = std::fs::remove_dir_all(&dir);

    host.stop().await.unwrap();
}
