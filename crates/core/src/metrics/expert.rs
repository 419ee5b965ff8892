//! expert (in progress)
