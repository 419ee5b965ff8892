//! Model weights: PyTorch checkpoints in, safetensors out (work in progress).
