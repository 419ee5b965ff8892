//! Metrics. Each definition is documented on its function and checked by the
//! test suite against an independent computation (scikit-learn, scipy, or a
//! published number).

pub mod accumulate;
pub mod expert;
pub mod intervals;
pub mod ranking;
pub mod sets;
pub mod topk;
