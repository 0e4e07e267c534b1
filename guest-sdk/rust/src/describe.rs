//! The plugin's self-description, as plain Rust with a small builder.

/// Type of an input field or of a feature value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Int64,
    Float64,
    Text,
    Boolean,
}

/// An event field the plugin reads.
#[derive(Debug, Clone, PartialEq)]
pub struct InputField {
    pub name: String,
    pub kind: ValueType,
}

/// How a window relates to time (exact rules: the host's `docs/semantics.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Events with time in (T - length, T], T = stream time.
    Sliding,
    /// Aligned instances [k * length, (k + 1) * length), shown once fired.
    Tumbling,
    /// Aligned instances [k * hop, k * hop + length), shown once fired.
    Hopping,
    /// Sessions of events closer than `gap_ms`, shown once fired, for `length_ms`.
    Session,
}

/// A window the aggregations refer to by name. Build it with
/// [`Window::sliding`], [`Window::tumbling`], [`Window::hopping`] or
/// [`Window::session`], then [`Window::grace`] and [`Window::early_results`].
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    pub kind: WindowKind,
    /// Sliding, tumbling, hopping: the length. Session: how long the latest
    /// session stays visible after its end (at least gap + grace).
    pub length_ms: u64,
    /// Hopping: the hop.
    pub hop_ms: Option<u64>,
    /// Session: the inactivity gap.
    pub gap_ms: Option<u64>,
    /// How long after its end an instance accepts late events (a correction).
    pub grace_ms: u64,
    /// Show the instance still filling (updated at every flush), not only fired ones.
    pub early_results: bool,
}

impl Window {
    fn of(name: &str, kind: WindowKind, length_ms: u64) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            length_ms,
            hop_ms: None,
            gap_ms: None,
            grace_ms: 0,
            early_results: false,
        }
    }

    /// Events with time in (T - `length_ms`, T], T the stream time.
    pub fn sliding(name: &str, length_ms: u64) -> Self {
        Self::of(name, WindowKind::Sliding, length_ms)
    }

    /// Instances of `length_ms` aligned on the epoch.
    pub fn tumbling(name: &str, length_ms: u64) -> Self {
        Self::of(name, WindowKind::Tumbling, length_ms)
    }

    /// Instances of `length_ms` starting every `hop_ms`.
    pub fn hopping(name: &str, length_ms: u64, hop_ms: u64) -> Self {
        Self {
            hop_ms: Some(hop_ms),
            ..Self::of(name, WindowKind::Hopping, length_ms)
        }
    }

    /// Sessions with inactivity gap `gap_ms`, visible for `visible_ms` after their end.
    pub fn session(name: &str, gap_ms: u64, visible_ms: u64) -> Self {
        Self {
            gap_ms: Some(gap_ms),
            ..Self::of(name, WindowKind::Session, visible_ms)
        }
    }

    /// Accepts late events for `grace_ms` after an instance's end.
    pub fn grace(mut self, grace_ms: u64) -> Self {
        self.grace_ms = grace_ms;
        self
    }

    /// Shows the instance still filling, updated at every flush.
    pub fn early_results(mut self) -> Self {
        self.early_results = true;
        self
    }
}

/// Aggregations the host computes incrementally for the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregationKind {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    DistinctCount,
    First,
    Last,
    /// Population variance (divides by n).
    Variance,
    /// Population standard deviation.
    Stddev,
    /// Approximate quantile `Aggregation::quantile` of a numeric field, within
    /// 1% of the exact value (a float64, null on an empty window); ask with
    /// [`Descriptor::quantile`].
    ApproxQuantile,
    /// The window's raw events, oldest first, at most `Aggregation::max_events`
    /// (the newest); ask with [`Descriptor::events`].
    Events,
}

/// One aggregation column handed to [`crate::FeaturePlugin::compute`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub window: String,
    pub kind: AggregationKind,
    pub field: Option<String>,
    /// `ApproxQuantile`: the quantile, in [0, 1].
    pub quantile: Option<f64>,
    /// `Events`: the most events per row.
    pub max_events: Option<u32>,
}

/// One feature column returned by the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub kind: ValueType,
}

/// Everything the host needs to know about a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub entity_key: String,
    pub inputs: Vec<InputField>,
    pub windows: Vec<Window>,
    pub aggregations: Vec<Aggregation>,
    pub features: Vec<Feature>,
}

impl Descriptor {
    /// Starts a descriptor for plugin `name` at `version`, keyed by event field `entity_key`.
    pub fn new(name: &str, version: &str, entity_key: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            entity_key: entity_key.to_owned(),
            inputs: Vec::new(),
            windows: Vec::new(),
            aggregations: Vec::new(),
            features: Vec::new(),
        }
    }

    /// Declares an event field the plugin reads.
    pub fn input(mut self, name: &str, kind: ValueType) -> Self {
        self.inputs.push(InputField {
            name: name.to_owned(),
            kind,
        });
        self
    }

    /// Declares a sliding window of `length_ms` milliseconds.
    pub fn sliding_window(self, name: &str, length_ms: u64) -> Self {
        self.window(Window::sliding(name, length_ms))
    }

    /// Declares a window of any kind (see [`Window`]).
    pub fn window(mut self, window: Window) -> Self {
        self.windows.push(window);
        self
    }

    /// Asks for an aggregation over `window`; `field` is `None` for `Count`.
    /// Aggregations reach `compute` in the order they are declared here.
    pub fn aggregate(mut self, window: &str, kind: AggregationKind, field: Option<&str>) -> Self {
        self.aggregations.push(Aggregation {
            window: window.to_owned(),
            kind,
            field: field.map(str::to_owned),
            quantile: None,
            max_events: None,
        });
        self
    }

    /// Asks for the raw events of `window`: per row, the `field` values with
    /// their event times ([`crate::Value::Events`]), oldest first, at most the
    /// newest `max_events` (1 to 10,000, checked by the host at load).
    pub fn events(mut self, window: &str, field: &str, max_events: u32) -> Self {
        self.aggregations.push(Aggregation {
            window: window.to_owned(),
            kind: AggregationKind::Events,
            field: Some(field.to_owned()),
            quantile: None,
            max_events: Some(max_events),
        });
        self
    }

    /// Asks for the approximate quantile `quantile` (0 to 1; 0.5 is the
    /// median, checked by the host at load) of numeric `field` over `window`:
    /// a float64 within 1% of the exact value, null on an empty window.
    pub fn quantile(mut self, window: &str, field: &str, quantile: f64) -> Self {
        self.aggregations.push(Aggregation {
            window: window.to_owned(),
            kind: AggregationKind::ApproxQuantile,
            field: Some(field.to_owned()),
            quantile: Some(quantile),
            max_events: None,
        });
        self
    }

    /// Declares a returned feature; `compute` returns values in this order.
    pub fn feature(mut self, name: &str, kind: ValueType) -> Self {
        self.features.push(Feature {
            name: name.to_owned(),
            kind,
        });
        self
    }
}
