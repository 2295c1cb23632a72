//! The Prometheus `file_sd` model of a Cloud Foundry app: which target groups and labels
//! an app gets (DESIGN.md sections 3 and 3a), and the exact bytes of its target file.
//!
//! Everything here is pure: no I/O, no clock. The broker and the updater both build files
//! through [`build_target_file`], so the same app always produces the same bytes.

mod guid;
mod model;
mod params;

pub use guid::{AppGuid, InvalidGuid};
pub use model::{
    AppInfo, AppState, EXPORTER_COMMANDS, Endpoint, ModelConfig, Route, TargetFile, TargetGroup,
    build_target_file, choose_endpoint,
};
pub use params::{
    BindingParams, LabelName, MetricsPath, ParamError, PromDuration, ScrapeAuth,
    is_valid_label_name,
};
