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

/// A sliding window: events with time in (T - length, T], T = stream time.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    pub length_ms: u64,
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
}

/// One aggregation column handed to [`crate::FeaturePlugin::compute`].
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub window: String,
    pub kind: AggregationKind,
    pub field: Option<String>,
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
    pub fn sliding_window(mut self, name: &str, length_ms: u64) -> Self {
        self.windows.push(Window {
            name: name.to_owned(),
            length_ms,
        });
        self
    }

    /// Asks for an aggregation over `window`; `field` is `None` for `Count`.
    /// Aggregations reach `compute` in the order they are declared here.
    pub fn aggregate(mut self, window: &str, kind: AggregationKind, field: Option<&str>) -> Self {
        self.aggregations.push(Aggregation {
            window: window.to_owned(),
            kind,
            field: field.map(str::to_owned),
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
