#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The public API is small: the notifier, its configuration and its HTTP router. The
// modules behind it are the crate's own; the `internals` feature opens them to the
// workspace's tests and benchmarks (the store contract test drives the stores directly).
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        mod $name;
    )*};
}

pub mod config;
pub mod matcher;
pub mod severity;
pub mod statuspage;
internal!(
    ack,
    channels,
    dispatch,
    ical,
    incident,
    maintenance,
    metrics,
    notifier,
    payload,
    remediation,
    report,
    route,
    schedule,
    server,
    setup,
    store,
    template,
    time,
    timeinterval,
    timeline,
);

use crate::setup::Setup;

pub use crate::channels::SendError;
pub use crate::config::{NotifierConfig, SetupError};
pub use crate::dispatch::Dispatcher;
pub use crate::notifier::{Notifier, StartError, revision};
pub use crate::server::{ReloadError, ReloadHook, router};
pub use crate::setup::SendTestError;
pub use crate::store::StoreError;

/// Builds what a configuration names (channels, templates, secrets) and drops it, as
/// `--check-config` does after reading the file: addresses are parsed and CA files read,
/// nothing is contacted. Run it inside a Tokio runtime (an SMTP pool closes in one).
pub fn check(config: NotifierConfig) -> Result<(), SetupError> {
    Setup::build(config).map(drop)
}

/// Sends a sample notification through the configured channel `channel` (firing, or
/// resolved when `resolved`); nothing is stored.
pub async fn send_test(
    config: NotifierConfig,
    channel: &str,
    resolved: bool,
) -> Result<(), SendTestError> {
    Setup::build(config)?.send_test(channel, resolved).await
}
