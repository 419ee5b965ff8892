//! order (in progress)
