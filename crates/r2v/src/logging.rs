//! Operator logs: `tracing` to stderr, filtered by `R2V_LOG`. Per-request log lines that
//! users see go through the engine's `RenderCtx`, not through here.

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// The GPU stack's own chatter (a line per autotuned kernel, adapter probing) stays out of the
/// default filter; `R2V_LOG` can ask for it.
const QUIET_DEPENDENCIES: &str =
    "cubecl_runtime=warn,cubecl_wgpu=warn,wgpu_core=warn,wgpu_hal=warn,naga=warn";

/// Installs the global subscriber; `default_filter` applies when `R2V_LOG` is unset.
pub fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_env("R2V_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_filter},{QUIET_DEPENDENCIES}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
