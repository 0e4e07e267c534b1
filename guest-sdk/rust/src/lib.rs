//! Rust SDK for Wafer feature plugins.
//!
//! A plugin author writes plain Rust: a [`Descriptor`] that says which event
//! fields, windows and aggregations the plugin needs and which features it
//! returns, and a per-entity [`FeaturePlugin::compute`] that turns one row of
//! aggregations into one row of feature values. The SDK owns the WIT bindings
//! (generated from the repository's `wit/`), the columnar hand-off and the
//! checks on what the plugin returns, so the logic is testable natively with
//! `cargo test`.
//!
//! Layout:
//! - [`describe`]: the descriptor builder (fields, windows, aggregations, features);
//! - [`value`]: [`Value`] and [`Row`], the plain types the per-row logic sees;
//! - [`columns`]: whole batches as columns, for the optional
//!   [`FeaturePlugin::compute_batch`];
//! - [`glue`]: conversion between WIT columns and rows (used by [`export_plugin!`]);
//! - [`log`]: logging through the host (the one import a plugin gets);
//! - [`bindings`]: the generated WIT bindings.

pub mod columns;
pub mod describe;
pub mod glue;
pub mod log;
pub mod value;

pub use describe::{
    Aggregation, AggregationKind, Descriptor, Feature, InputField, ValueType, Window, WindowKind,
};
pub use value::{Row, Value};

/// Bindings generated from `wit/` (the one contract shared with the host).
pub mod bindings {
    wit_bindgen::generate!({
        world: "feature-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_feature_plugin",
        default_bindings_module: "wafer_guest::bindings",
    });
}

/// Feature logic of one plugin.
pub trait FeaturePlugin {
    /// What the plugin reads and returns; called once when the host loads it.
    fn describe() -> Descriptor;

    /// Feature values for one entity, in the order of `Descriptor::features`.
    /// `row` holds the aggregations in the order of `Descriptor::aggregations`.
    /// An `Err` fails the whole batch and is reported by the host.
    fn compute(row: &Row<'_>) -> Result<Vec<Value>, String>;

    /// Feature columns for a whole batch (one row per entity that changed):
    /// one [`columns::Column`] per feature, each with one entry per row. The
    /// default runs [`FeaturePlugin::compute`] on every row. Override it when
    /// the logic is a few operations per column: a row costs no `Value`s, no
    /// `Vec` and no strings then, and a column can pass through unchanged. The
    /// SDK checks the returned columns' number, types and lengths; test an
    /// override against [`glue::compute_rows`], the per-row reading.
    fn compute_batch(input: columns::Batch) -> Result<Vec<columns::Column>, String>
    where
        Self: Sized,
    {
        glue::compute_rows::<Self>(input)
    }
}

/// Exports a [`FeaturePlugin`] implementation as the plugin's component world.
///
/// ```text
/// struct MyPlugin;
/// impl wafer_guest::FeaturePlugin for MyPlugin { /* ... */ }
/// wafer_guest::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __WaferPluginExport;

        impl $crate::bindings::Guest for __WaferPluginExport {
            fn describe() -> $crate::bindings::wafer::plugin::types::Descriptor {
                $crate::glue::describe::<$plugin>()
            }

            fn compute(
                input: $crate::bindings::wafer::plugin::types::Batch,
            ) -> ::core::result::Result<
                ::std::vec::Vec<$crate::bindings::wafer::plugin::types::Column>,
                ::std::string::String,
            > {
                $crate::glue::compute::<$plugin>(input)
            }
        }

        $crate::bindings::__export_feature_plugin!(__WaferPluginExport with_types_in $crate::bindings);
    };
}
