//! Feature plugins: the one `bindgen!` site, the engine that narrows wasmtime
//! to what Wafer needs, and the checks on a plugin's self-description.
//!
//! - [`engine`]: compiling, instantiating and calling plugins under limits;
//! - [`descriptor`]: validation of what a plugin says it reads and returns.

pub mod descriptor;
pub mod engine;
pub mod log;
pub mod manager;

pub use descriptor::DescriptorError;
pub use engine::{Plugin, PluginEngine, PluginError, PluginLimits};
pub use manager::{PluginManager, ReloadError, VersionInfo};

/// Host bindings generated from `wit/` (the contract shared with the guest SDKs).
mod bindings {
    wasmtime::component::bindgen!({
        world: "feature-plugin",
        path: "../wit",
    });
}

pub use bindings::wafer::plugin::types::{
    AggregationKind, AggregationSpec, Batch, Column, ColumnData, Descriptor, EventListColumn,
    EventValues, FeatureSpec, InputField, TextColumn, ValueType, WindowKind, WindowSpec,
};

/// Lower-case name of a value type, as in the WIT file.
pub fn type_name(kind: ValueType) -> &'static str {
    match kind {
        ValueType::Int64 => "int64",
        ValueType::Float64 => "float64",
        ValueType::Text => "text",
        ValueType::Boolean => "boolean",
    }
}
