//! sets (in progress)
