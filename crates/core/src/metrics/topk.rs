//! topk (in progress)
