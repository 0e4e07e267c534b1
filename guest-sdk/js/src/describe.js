// The plugin's self-description, as plain JavaScript with a small builder.
// Enum values are the WIT case names, as the component bindings spell them.

/** Type of an input field or of a feature value. */
export const ValueType = Object.freeze({
  INT64: 'int64',
  FLOAT64: 'float64',
  TEXT: 'text',
  BOOLEAN: 'boolean',
});

/**
 * Aggregations the host computes incrementally for the plugin.
 * COUNT and DISTINCT_COUNT arrive as integers; SUM as a number; MEAN, MIN,
 * MAX as a number or null on an empty window; FIRST and LAST in the field's
 * type, or null on an empty window.
 */
export const AggregationKind = Object.freeze({
  COUNT: 'count',
  SUM: 'sum',
  MEAN: 'mean',
  MIN: 'min',
  MAX: 'max',
  DISTINCT_COUNT: 'distinct-count',
  FIRST: 'first',
  LAST: 'last',
  /** Population variance (divides by n); a number or null on an empty window. */
  VARIANCE: 'variance',
  /** Population standard deviation; a number or null on an empty window. */
  STDDEV: 'stddev',
  /**
   * Approximate quantile of a numeric field (within 1%; a number, null on an
   * empty window); ask with `Descriptor.quantile`.
   */
  APPROX_QUANTILE: 'approx-quantile',
  /**
   * The window's raw events, an array of [timeMs, value], oldest first, at most
   * `maxEvents` (the newest); ask with `Descriptor.events`.
   */
  EVENTS: 'events',
});

/** How a window relates to time (exact rules: the host's docs/semantics.md). */
export const WindowKind = Object.freeze({
  SLIDING: 'sliding',
  TUMBLING: 'tumbling',
  HOPPING: 'hopping',
  SESSION: 'session',
});

function checkMs(name, what, ms) {
  const ok =
    (typeof ms === 'number' && Number.isSafeInteger(ms) && ms >= 0) ||
    (typeof ms === 'bigint' && ms >= 0n && ms < 2n ** 64n);
  if (!ok) {
    throw new RangeError(`window ${JSON.stringify(name)}: ${what} must be a non-negative integer`);
  }
  return ms;
}

const VALUE_TYPES = new Set(Object.values(ValueType));
const AGGREGATION_KINDS = new Set(Object.values(AggregationKind));

function check(kind, known, what) {
  if (!known.has(kind)) {
    throw new TypeError(`unknown ${what} ${JSON.stringify(kind)}`);
  }
  return kind;
}

/**
 * Everything the host needs to know about a plugin. Build it with chained calls:
 *
 *   new Descriptor('user-activity', '0.1.0', 'user_id')
 *     .input('action', ValueType.TEXT)
 *     .slidingWindow('1h', 3_600_000)
 *     .aggregate('1h', AggregationKind.COUNT)
 *     .feature('event_count_1h', ValueType.INT64)
 */
export class Descriptor {
  constructor(name, version, entityKey) {
    this.name = String(name);
    this.version = String(version);
    this.entityKey = String(entityKey);
    this.inputs = [];
    this.windows = [];
    this.aggregations = [];
    this.features = [];
  }

  /** Declares an event field the plugin reads. */
  input(name, kind) {
    this.inputs.push({ name: String(name), kind: check(kind, VALUE_TYPES, 'value type') });
    return this;
  }

  /** Declares a sliding window of `lengthMs` milliseconds (a number or a bigint). */
  slidingWindow(name, lengthMs) {
    return this.#window(name, WindowKind.SLIDING, lengthMs, {});
  }

  /** Tumbling instances of `lengthMs`; options `{ graceMs, earlyResults }`. */
  tumblingWindow(name, lengthMs, options = {}) {
    return this.#window(name, WindowKind.TUMBLING, lengthMs, options);
  }

  /** Instances of `lengthMs` starting every `hopMs`; options `{ graceMs, earlyResults }`. */
  hoppingWindow(name, lengthMs, hopMs, options = {}) {
    return this.#window(name, WindowKind.HOPPING, lengthMs, {
      ...options,
      hopMs: checkMs(name, 'hopMs', hopMs),
    });
  }

  /**
   * Sessions with inactivity gap `gapMs`, visible `visibleMs` after their end;
   * options `{ graceMs, earlyResults }`.
   */
  sessionWindow(name, gapMs, visibleMs, options = {}) {
    return this.#window(name, WindowKind.SESSION, visibleMs, {
      ...options,
      gapMs: checkMs(name, 'gapMs', gapMs),
    });
  }

  #window(name, kind, lengthMs, { hopMs = null, gapMs = null, graceMs = 0, earlyResults = false }) {
    this.windows.push({
      name: String(name),
      kind,
      lengthMs: checkMs(name, 'lengthMs', lengthMs),
      hopMs,
      gapMs,
      graceMs: checkMs(name, 'graceMs', graceMs),
      earlyResults: Boolean(earlyResults),
    });
    return this;
  }

  /**
   * Asks for an aggregation over `window`; `field` is omitted for COUNT.
   * Aggregations reach `compute` in the order they are declared here.
   */
  aggregate(window, kind, field = null) {
    this.aggregations.push({
      window: String(window),
      kind: check(kind, AGGREGATION_KINDS, 'aggregation kind'),
      field: field == null ? null : String(field),
      quantile: null,
      maxEvents: null,
    });
    return this;
  }

  /**
   * Asks for the raw events of `window`: per row, an array of [timeMs, value] of
   * `field`, oldest first, at most the newest `maxEvents` (1 to 10,000, checked
   * by the host at load).
   */
  events(window, field, maxEvents) {
    if (!Number.isInteger(maxEvents) || maxEvents < 1) {
      throw new RangeError(`events over '${window}': maxEvents must be a positive integer`);
    }
    this.aggregations.push({
      window: String(window),
      kind: AggregationKind.EVENTS,
      field: String(field),
      quantile: null,
      maxEvents,
    });
    return this;
  }

  /**
   * Asks for the approximate quantile `quantile` (0 to 1; 0.5 is the median) of
   * numeric `field` over `window`: a number within 1% of the exact value, null
   * on an empty window.
   */
  quantile(window, field, quantile) {
    if (typeof quantile !== 'number' || !(quantile >= 0 && quantile <= 1)) {
      throw new RangeError(`quantile over '${window}': quantile must be between 0 and 1`);
    }
    this.aggregations.push({
      window: String(window),
      kind: AggregationKind.APPROX_QUANTILE,
      field: String(field),
      quantile,
      maxEvents: null,
    });
    return this;
  }

  /** Declares a returned feature; `compute` returns values in this order. */
  feature(name, kind) {
    this.features.push({ name: String(name), kind: check(kind, VALUE_TYPES, 'value type') });
    return this;
  }
}
