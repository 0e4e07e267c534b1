//! The log import granted to every plugin: lines tagged with the plugin's
//! name and version, rate-limited per instance so a chatty plugin cannot
//! flood the host's log, written through `tracing`.

use std::time::Instant;

use super::bindings::wafer::plugin::log::Level;

/// Lines a plugin instance may log in a burst.
const BURST: f64 = 100.0;
/// Lines per second it may log after the burst.
const PER_SECOND: f64 = 20.0;

/// One plugin instance's log channel (a token bucket).
pub struct PluginLog {
    plugin: String,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl PluginLog {
    /// A channel for `plugin` (`name@version`).
    pub fn new(plugin: &str) -> Self {
        Self {
            plugin: plugin.to_owned(),
            tokens: BURST,
            refilled: Instant::now(),
            dropped: 0,
        }
    }

    /// Writes one line unless the rate limit is exhausted (then counts it).
    pub fn emit(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        self.emit_at(Instant::now(), level, message, fields);
    }

    fn emit_at(&mut self, now: Instant, level: Level, message: &str, fields: &[(String, String)]) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped = self.dropped, "plugin log lines dropped by the rate limit");
            self.dropped = 0;
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "wafer::plugin", plugin, %fields, "{message}"),
            Level::Debug => tracing::debug!(target: "wafer::plugin", plugin, %fields, "{message}"),
            Level::Info => tracing::info!(target: "wafer::plugin", plugin, %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "wafer::plugin", plugin, %fields, "{message}"),
            Level::Error => tracing::error!(target: "wafer::plugin", plugin, %fields, "{message}"),
        }
    }

    /// Lines dropped since the last line written.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_beyond_the_limit_is_dropped_then_refilled() {
        let start = Instant::now();
        let mut log = PluginLog::new("p@1");
        log.refilled = start;
        for _ in 0..150 {
            log.emit_at(start, Level::Info, "hello", &[]);
        }
        assert_eq!(log.dropped(), 50);
        // One second later 20 lines are allowed again; the first one reports the drops.
        let later = start + Duration::from_secs(1);
        for _ in 0..25 {
            log.emit_at(later, Level::Info, "again", &[("k".into(), "v".into())]);
        }
        assert_eq!(log.dropped(), 5);
    }
}
