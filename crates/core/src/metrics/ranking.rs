//! ranking (in progress)
