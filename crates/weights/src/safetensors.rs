//! Writing `.safetensors` files, and reading them back to verify.
//!
//! Layout: an 8-byte little-endian header length, a JSON header
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}`
//! padded with spaces so that the data starts at a multiple of 8 bytes, then
//! the tensor data, tensors sorted by name. Reading uses the validating
//! reader of `labelscope_core::npy`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use labelscope_core::npy::{DType as CoreDType, SafeTensors};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::tensor::{c_strides, DType, Tensor};

/// Builds the padded JSON header (without the 8-byte length) for `tensors`.
pub fn header(tensors: &BTreeMap<String, Tensor>, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        if name == "__metadata__" {
            return Err(Error::Invalid("a tensor may not be called \"__metadata__\"".into()));
        }
        let expect = t.numel().checked_mul(t.dtype.itemsize());
        if expect != Some(t.data.len()) {
            return Err(Error::Invalid(format!(
                "tensor {name:?}: {} data bytes for shape {:?} of {}",
                t.data.len(),
                t.shape,
                t.dtype
            )));
        }
        let end = offset + t.data.len();
        map.insert(
            name.clone(),
            json!({"dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&Value::Object(map)).map_err(|e| Error::Invalid(format!("header: {e}")))?;
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    Ok(h)
}

/// Writes `tensors` (sorted by name) and `metadata` to `path` atomically:
/// a temporary file in the same folder, synced, then renamed over `path`.
/// Returns the file size.
pub fn write(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: &BTreeMap<String, String>) -> Result<u64> {
    let h = header(tensors, metadata)?;
    let total = 8 + h.len() as u64 + tensors.values().map(|t| t.data.len() as u64).sum::<u64>();
    labelscope_core::atomic::write_atomic_with(path, |w: &mut dyn Write| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for t in tensors.values() {
            w.write_all(&t.data)?;
        }
        Ok(())
    })?;
    Ok(total)
}

/// SHA-256 (hex) of the file [`write()`] would write for `tensors` and `metadata`.
pub fn sha256(tensors: &BTreeMap<String, Tensor>, metadata: &BTreeMap<String, String>) -> Result<String> {
    let h = header(tensors, metadata)?;
    let mut s = crate::sha256::Sha256::new();
    s.update(&(h.len() as u64).to_le_bytes());
    s.update(&h);
    for t in tensors.values() {
        s.update(&t.data);
    }
    Ok(s.hex())
}

/// The crate's dtype of a `labelscope-core` dtype (`None` for strings and other non-tensor types).
pub fn dtype_from_core(d: CoreDType) -> Option<DType> {
    Some(match d {
        CoreDType::Bool => DType::Bool,
        CoreDType::U8 => DType::U8,
        CoreDType::I8 => DType::I8,
        CoreDType::I16 => DType::I16,
        CoreDType::I32 => DType::I32,
        CoreDType::I64 => DType::I64,
        CoreDType::F16 => DType::F16,
        CoreDType::BF16 => DType::BF16,
        CoreDType::F32 => DType::F32,
        CoreDType::F64 => DType::F64,
        _ => return None,
    })
}

/// Reads the `__metadata__` of a `.safetensors` file (empty if absent).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut len).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len);
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if n > size.saturating_sub(8) {
        return Err(Error::format(path, "header", format!("header length {n} exceeds the file size {size}")));
    }
    let mut h = vec![0u8; n as usize];
    std::io::Read::read_exact(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&h).map_err(|e| Error::format(path, "header", format!("not JSON: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(m) = v.get("__metadata__") {
        let m = m.as_object().ok_or_else(|| Error::format(path, "header", "__metadata__ is not an object"))?;
        for (k, v) in m {
            let s = v
                .as_str()
                .ok_or_else(|| Error::format(path, "header", format!("__metadata__ {k:?} is not a string")))?;
            out.insert(k.clone(), s.to_string());
        }
    }
    Ok(out)
}

/// Reads every tensor of a `.safetensors` file.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let st = SafeTensors::open(path)?;
    let mut out = BTreeMap::new();
    for name in st.names() {
        let a = st.read(&name)?;
        let dtype = dtype_from_core(a.dtype).ok_or_else(|| {
            Error::format(path, format!("tensor {name:?}"), format!("unsupported dtype {:?}", a.dtype))
        })?;
        let shape = a.shape.clone();
        let strides = c_strides(&shape);
        out.insert(name, Tensor { dtype, shape, strides, offset: 0, data: a.raw_bytes().to_vec() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dtype: DType, shape: &[usize], data: Vec<u8>) -> Tensor {
        Tensor { dtype, shape: shape.to_vec(), strides: c_strides(shape), offset: 0, data }
    }

    #[test]
    fn round_trip_with_metadata_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut ts = BTreeMap::new();
        ts.insert("b".to_string(), t(DType::F16, &[3], vec![1, 2, 3, 4, 5, 6]));
        ts.insert("a".to_string(), t(DType::F32, &[2, 1], (0..8).collect()));
        ts.insert("c".to_string(), t(DType::I64, &[], (0..8).collect()));
        let mut md = BTreeMap::new();
        md.insert("config".to_string(), "{\"model\":\"x\"}".to_string());
        let size = write(&p, &ts, &md).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, size);
        let hl = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + hl) % 8, 0);
        assert_eq!(&bytes[8 + hl..8 + hl + 8], &(0..8).collect::<Vec<u8>>()[..], "a comes first");
        assert_eq!(read(&p).unwrap(), ts);
        assert_eq!(read_metadata(&p).unwrap(), md);
        let mut s = crate::sha256::Sha256::new();
        s.update(&bytes);
        assert_eq!(sha256(&ts, &md).unwrap(), s.hex());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn inconsistent_tensor_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut ts = BTreeMap::new();
        ts.insert("a".to_string(), t(DType::F32, &[3], vec![0; 8]));
        let e = write(&p, &ts, &BTreeMap::new()).unwrap_err().to_string();
        assert!(e.contains("\"a\""), "{e}");
        assert!(!p.exists());
    }
}
