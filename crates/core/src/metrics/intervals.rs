//! intervals (in progress)
