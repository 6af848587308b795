//! The window of inter-arrival samples, which lives in synod-core
//! (`synod_core::arrival_window`) so that synod-raft's leader suspicion can share it.

pub(crate) use synod_core::arrival_window::{
    ArrivalWindow as Window, SAMPLE_NANOS_MAX, SEED_SAMPLES_COUNT,
};

const _: () = assert!(SEED_SAMPLES_COUNT <= crate::config::WINDOW_SIZE_MIN);
