//! Logging from a plugin: the host tags each line with the plugin's name and
//! version, rate-limits it and writes it to its own log. Natively (in unit
//! tests) lines go to standard error.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Logs `message` at `level` with key/value `fields`.
pub fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wafer::plugin::log as wit;
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wit::emit(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message} {fields:?}");
}

/// Logs at info level.
pub fn info(message: &str) {
    emit(Level::Info, message, &[]);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    emit(Level::Warn, message, &[]);
}

/// Logs at error level.
pub fn error(message: &str) {
    emit(Level::Error, message, &[]);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    emit(Level::Debug, message, &[]);
}
