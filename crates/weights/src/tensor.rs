//! Element types and dense tensors.

use std::fmt;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    /// `torch.bool`: one byte, 0 or 1.
    Bool,
    /// `torch.uint8`.
    U8,
    /// `torch.int8`.
    I8,
    /// `torch.int16`.
    I16,
    /// `torch.int32`.
    I32,
    /// `torch.int64`.
    I64,
    /// `torch.float16`.
    F16,
    /// `torch.bfloat16`.
    BF16,
    /// `torch.float32`.
    F32,
    /// `torch.float64`.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// The safetensors name (`F32`, `BF16`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    /// Parses a safetensors name or a lowercase alias (`f32`, `float16`, `bf16`, ...).
    pub fn parse(name: &str) -> Option<DType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bool" => DType::Bool,
            "u8" | "uint8" => DType::U8,
            "i8" | "int8" => DType::I8,
            "i16" | "int16" => DType::I16,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "f16" | "float16" | "half" => DType::F16,
            "bf16" | "bfloat16" => DType::BF16,
            "f32" | "float32" | "float" => DType::F32,
            "f64" | "float64" | "double" => DType::F64,
            _ => return None,
        })
    }

    /// Floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// A dense tensor in C (row-major) order, little-endian bytes.
///
/// `strides` (in elements) and `offset` (in elements) record the view the
/// checkpoint stored; `data` always holds the elements contiguously in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Shape; empty for a scalar.
    pub shape: Vec<usize>,
    /// Strides of the stored view, in elements.
    pub strides: Vec<usize>,
    /// Offset of the stored view into its storage, in elements.
    pub offset: usize,
    /// The elements, C order, little endian.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Converts a floating-point tensor to another floating-point type
    /// (round to nearest even); other tensors are returned unchanged.
    pub fn to_dtype(&self, target: DType) -> Tensor {
        if self.dtype == target || !self.dtype.is_float() || !target.is_float() {
            return self.clone();
        }
        let n = self.numel();
        let mut data = Vec::with_capacity(n * target.itemsize());
        for chunk in self.data.chunks_exact(self.dtype.itemsize()) {
            let v = match self.dtype {
                DType::F16 => f16_to_f64(u16::from_le_bytes([chunk[0], chunk[1]])),
                DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([chunk[0], chunk[1]])) << 16) as f64,
                DType::F32 => f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as f64,
                _ => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    f64::from_le_bytes(b)
                }
            };
            match target {
                DType::F16 => data.extend_from_slice(&f32_to_f16(v as f32).to_le_bytes()),
                DType::BF16 => data.extend_from_slice(&f32_to_bf16(v as f32).to_le_bytes()),
                DType::F32 => data.extend_from_slice(&(v as f32).to_le_bytes()),
                _ => data.extend_from_slice(&v.to_le_bytes()),
            }
        }
        let strides = c_strides(&self.shape);
        Tensor { dtype: target, shape: self.shape.clone(), strides, offset: 0, data }
    }
}

/// C-order strides (in elements) of `shape`.
pub fn c_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

fn f16_to_f64(h: u16) -> f64 {
    f64::from(labelscope_core::npy::f16_to_f32(h))
}

/// `f32` to IEEE half, round to nearest even; overflow gives infinity
/// (see [`labelscope_core::npy::f32_to_f16`]).
pub fn f32_to_f16(x: f32) -> u16 {
    labelscope_core::npy::f32_to_f16(x)
}

/// `f32` to bfloat16, round to nearest even (NaN stays NaN).
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let lsb = (bits >> 16) & 1;
    (bits.wrapping_add(0x7fff + lsb) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_round_trip_and_rounding() {
        for v in [0.0f32, 1.0, -2.5, 65504.0, 6.1035156e-5, 5.9604645e-8, 0.333333] {
            let h = f32_to_f16(v);
            let back = labelscope_core::npy::f16_to_f32(h);
            assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(c_strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
