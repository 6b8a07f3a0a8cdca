//! Clock synchronisation from the kernel's NTP state, read with adjtimex and no mode set
//! (a read that needs no privilege and changes nothing), as node_exporter's timex
//! collector reads it.

use mcpwatch_core::{CollectError, MetricSink};

/// `include/uapi/linux/timex.h`: the offset is in nanoseconds, not microseconds.
const STA_NANO: i64 = 0x2000;
/// adjtimex's answer when the clock is not synchronised (`STA_UNSYNC` and the like).
const TIME_ERROR: i32 = 5;

/// What adjtimex tells, in base units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClockState {
    pub synchronised: bool,
    pub offset_seconds: f64,
    pub max_error_seconds: f64,
    pub estimated_error_seconds: f64,
    pub tai_offset_seconds: f64,
}

impl ClockState {
    fn from_raw(
        state: i32,
        status: i64,
        offset: i64,
        maxerror: i64,
        esterror: i64,
        tai: i64,
    ) -> Self {
        let offset_unit = if status & STA_NANO != 0 { 1e9 } else { 1e6 };
        Self {
            synchronised: state != TIME_ERROR,
            offset_seconds: offset as f64 / offset_unit,
            max_error_seconds: maxerror as f64 / 1e6,
            estimated_error_seconds: esterror as f64 / 1e6,
            tai_offset_seconds: tai as f64,
        }
    }

    /// Reads the kernel's state.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub(crate) fn read() -> Result<Self, CollectError> {
        let mut tx = rtime_clock::adjtime::Timex::new();
        let state = rtime_clock::adjtime::adjtimex(&mut tx)
            .map_err(|e| CollectError::from(e).context("adjtimex"))?;
        let raw = &tx.0;
        // The field types differ between C libraries and word sizes.
        Ok(Self::from_raw(
            state as i32,
            raw.status as i64,
            raw.offset as i64,
            raw.maxerror as i64,
            raw.esterror as i64,
            raw.tai as i64,
        ))
    }
}

pub(crate) fn collect(sink: &mut MetricSink) -> Result<(), CollectError> {
    write(&ClockState::read()?, sink);
    Ok(())
}

fn write(state: &ClockState, sink: &mut MetricSink) {
    let gauges = [
        (
            "host_timex_sync_status",
            "Whether the kernel holds the clock synchronised (1) or not (0: STA_UNSYNC, no \
             time daemon has disciplined it).",
            if state.synchronised { 1.0 } else { 0.0 },
        ),
        (
            "host_timex_offset_seconds",
            "Offset between the clock and its time source the kernel is still correcting, in \
             seconds.",
            state.offset_seconds,
        ),
        (
            "host_timex_maxerror_seconds",
            "Maximum error of the clock, in seconds; the kernel adds 500 ppm of elapsed \
             time until a time daemon updates it, up to 16 s.",
            state.max_error_seconds,
        ),
        (
            "host_timex_estimated_error_seconds",
            "Estimated error of the clock, in seconds.",
            state.estimated_error_seconds,
        ),
        (
            "host_timex_tai_offset_seconds",
            "Offset of International Atomic Time from UTC the kernel knows, in seconds (0 \
             when not set).",
            state.tai_offset_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        sink.gauge(name, help).add(&[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_seconds() {
        let unsynced = ClockState::from_raw(TIME_ERROR, 0x40, 0, 16_000_000, 16_000_000, 0);
        assert!(!unsynced.synchronised);
        assert_eq!(unsynced.max_error_seconds, 16.0);
        let nano = ClockState::from_raw(0, 0x2001, -1_500_000, 250_000, 1_000, 37);
        assert!(nano.synchronised);
        assert_eq!(nano.offset_seconds, -0.0015);
        assert_eq!(nano.estimated_error_seconds, 0.001);
        assert_eq!(nano.tai_offset_seconds, 37.0);
        let micro = ClockState::from_raw(0, 0x0001, -1_500, 250_000, 1_000, 0);
        assert_eq!(micro.offset_seconds, -0.0015);
        let mut sink = MetricSink::default();
        write(&nano, &mut sink);
        assert_eq!(
            sink.find("host_timex_sync_status")
                .and_then(|f| f.value(&[])),
            Some(1.0)
        );
        assert_eq!(sink.families().len(), 5);
    }

    #[test]
    fn reads_this_machine_without_privilege() {
        let state = ClockState::read().expect("adjtimex");
        assert!(state.max_error_seconds >= 0.0 && state.max_error_seconds <= 16.0);
    }
}
