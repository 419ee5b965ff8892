//! npy (in progress)
