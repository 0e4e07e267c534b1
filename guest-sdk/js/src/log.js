// Logging from a plugin through the host's `log` import. The host tags each
// line with the plugin's name and version, rate-limits it and writes it to its
// own log. Natively (in unit tests) lines go to standard error.
//
//   import { log } from 'wafer-guest';
//   log.info('batch computed', { rows: 12 });

/** Severity of a log line (the WIT `level` case names). */
export const Level = Object.freeze({
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
});

const LEVELS = new Set(Object.values(Level));

// Where lines go: the WIT import inside a component (set by component.js).
let sink = null;

/** Sends log lines to `fn(level, message, fields)` (null: standard error). */
export function setSink(fn) {
  sink = fn;
}

/**
 * Logs `message` at `level` with key/value `fields` (an object, a Map or an
 * array of [key, value] pairs; values are converted with String).
 */
export function emit(level, message, fields = []) {
  if (!LEVELS.has(level)) {
    throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
  }
  const entries =
    fields instanceof Map || Array.isArray(fields) ? [...fields] : Object.entries(fields ?? {});
  const pairs = entries.map(([k, v]) => [String(k), String(v)]);
  if (sink) {
    sink(level, String(message), pairs);
  } else if (typeof process !== 'undefined' && process.stderr) {
    const text = pairs.map(([k, v]) => `${k}=${v}`).join(' ');
    process.stderr.write(`[${level.toUpperCase()}] ${message}${text ? ' ' : ''}${text}\n`);
  }
}

export const trace = (message, fields) => emit(Level.TRACE, message, fields);
export const debug = (message, fields) => emit(Level.DEBUG, message, fields);
export const info = (message, fields) => emit(Level.INFO, message, fields);
export const warn = (message, fields) => emit(Level.WARN, message, fields);
export const error = (message, fields) => emit(Level.ERROR, message, fields);
