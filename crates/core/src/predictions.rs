//! predictions (in progress)
