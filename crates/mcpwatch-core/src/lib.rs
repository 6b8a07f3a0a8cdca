#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "binary")]
pub mod binary;
pub mod certs;
pub mod collector;
pub mod config;
pub mod connect_failure;
pub mod encode;
pub mod engine;
pub mod exporter_service;
pub mod fnv;
pub mod follow;
pub mod metrics;
pub mod process;
pub mod secret;
pub mod web;

pub use async_trait::async_trait;
pub use collector::{BlockingLane, CollectError, Collector, ScrapeContext};
pub use engine::{MetricSource, Scrape, ScrapeEngine, ScrapeOptions};
pub use exporter_service::{ExporterService, metrics_response};
pub use metrics::{HistogramValue, MetricFamily, MetricKind, MetricSink};
pub use secret::{RedactedUrl, Secret};
