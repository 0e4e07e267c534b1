//! The status page's short memory: the last dead letters and one sample of
//! the pipeline's totals per second, both in bounded rings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Dead letters kept for the status page.
pub const DEAD_LETTERS_KEPT: usize = 50;
/// Per-second samples kept (10 minutes).
pub const SAMPLES_KEPT: usize = 600;
/// Longest reason or key kept for one dead letter, in bytes.
const TEXT_MAX: usize = 300;

/// One dead-lettered record, as sent to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Wall-clock time it was dead-lettered (RFC 3339).
    pub at: String,
    pub view: String,
    /// `decode` for a malformed event, else the plugin error's kind.
    pub kind: String,
    pub reason: String,
    /// The record key (entity id), lossily decoded, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl DeadLetter {
    /// A dead letter stamped now; long texts are cut at [`TEXT_MAX`] bytes.
    pub fn new(
        view: &str,
        kind: &str,
        reason: &str,
        key: Option<&[u8]>,
        (topic, partition, offset): (&str, i32, i64),
    ) -> Self {
        Self {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            view: view.to_owned(),
            kind: kind.to_owned(),
            reason: cut(reason),
            key: key.map(|k| cut(&String::from_utf8_lossy(k))),
            topic: topic.to_owned(),
            partition,
            offset,
        }
    }
}

fn cut(s: &str) -> String {
    if s.len() <= TEXT_MAX {
        return s.to_owned();
    }
    let mut end = TEXT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The pipeline's totals at one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    /// Wall-clock time, ms since the epoch.
    pub t: i64,
    /// Records consumed (of the first view: every view reads every record).
    pub events_in: u64,
    /// Feature values written, over every view.
    pub updates: u64,
    /// Malformed events and plugin failures dead-lettered, over every view.
    pub dead_letters: u64,
    /// Consumer lag summed over the input partitions, as last measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

/// A ring of at most `N` items, oldest first.
#[derive(Debug)]
struct Ring<T, const N: usize>(Mutex<VecDeque<T>>);

impl<T: Clone, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Self(Mutex::new(VecDeque::with_capacity(N)))
    }
}

impl<T: Clone, const N: usize> Ring<T, N> {
    fn push(&self, item: T) {
        let mut ring = self.0.lock().expect("ring lock is never poisoned");
        if ring.len() == N {
            ring.pop_front();
        }
        ring.push_back(item);
    }

    fn items(&self) -> Vec<T> {
        self.0
            .lock()
            .expect("ring lock is never poisoned")
            .iter()
            .cloned()
            .collect()
    }
}

/// Shared handle on the rings.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    dead_letters: Arc<Ring<DeadLetter, DEAD_LETTERS_KEPT>>,
    samples: Arc<Ring<Sample, SAMPLES_KEPT>>,
}

impl Recent {
    /// Keeps `d`, forgetting the oldest beyond [`DEAD_LETTERS_KEPT`].
    pub fn dead_letter(&self, d: DeadLetter) {
        self.dead_letters.push(d);
    }

    /// Keeps `s`, forgetting the oldest beyond [`SAMPLES_KEPT`].
    pub fn sample(&self, s: Sample) {
        self.samples.push(s);
    }

    /// The kept dead letters, newest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        let mut v = self.dead_letters.items();
        v.reverse();
        v
    }

    /// The kept samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.items()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_keep_the_newest_items() {
        let r = Recent::default();
        for i in 0..(DEAD_LETTERS_KEPT as i64 + 5) {
            r.dead_letter(DeadLetter::new(
                "v",
                "decode",
                "bad",
                Some(b"k"),
                ("t", 0, i),
            ));
        }
        let kept = r.dead_letters();
        assert_eq!(kept.len(), DEAD_LETTERS_KEPT);
        assert_eq!(kept[0].offset, DEAD_LETTERS_KEPT as i64 + 4, "newest first");
        assert_eq!(kept.last().unwrap().offset, 5);

        for t in 0..(SAMPLES_KEPT as i64 + 1) {
            r.sample(Sample {
                t,
                events_in: 0,
                updates: 0,
                dead_letters: 0,
                lag: None,
            });
        }
        let samples = r.samples();
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(
            (samples[0].t, samples.last().unwrap().t),
            (1, SAMPLES_KEPT as i64)
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(TEXT_MAX);
        let d = DeadLetter::new("v", "decode", &reason, None, ("t", 1, 2));
        assert!(d.reason.len() <= TEXT_MAX + "…".len());
        assert!(d.reason.ends_with('…'));
        assert!(d.reason.starts_with("éé"));
        assert_eq!(d.key, None);
    }
}
