//! Readers for array files: NumPy `.npy` and `.npz`, and `.safetensors`.
//!
//! # `.npy`
//! Format versions 1.0, 2.0 and 3.0 are read. The header is the Python
//! dictionary `{'descr': ..., 'fortran_order': ..., 'shape': (...)}`. Supported
//! element types (`descr`):
//!
//! | descr | [`DType`] |
//! |---|---|
//! | `\|b1` | [`DType::Bool`] |
//! | `i1 i2 i4 i8`, `u1 u2 u4 u8` | signed and unsigned integers |
//! | `f2 f4 f8` | half, single and double precision floats |
//! | `<U{n}` / `>U{n}` | fixed-width UTF-32 strings of `n` characters, trailing NULs stripped |
//! | `\|S{n}` | fixed-width byte strings, trailing NULs stripped |
//!
//! Multi-byte numbers may be little (`<`) or big (`>`) endian. Arrays saved in
//! Fortran (column-major) order are rejected unless their layout is identical
//! to C order (at most one dimension longer than 1); object arrays (`|O`, pickled
//! Python objects), complex, datetime and structured arrays are rejected.
//!
//! # Memory
//! Files of [`MMAP_THRESHOLD`] bytes or more are memory-mapped instead of read.
//! [`NpyArray::into_f32_values`] then hands out a little-endian `float32`
//! array without copying it (the data of `.npy` files is 16- or 64-byte
//! aligned). Input files must not be modified while they are being read.
//!
//! # `.npz`
//! A zip archive of `.npy` members (see [`Npz`]). Stored (uncompressed) members,
//! the `np.savez` default, are read in place from the mapped archive;
//! deflated members (`np.savez_compressed`) are decompressed into memory.
//! The CRC of stored members read in place is not verified.
//!
//! # `.safetensors`
//! An 8-byte little-endian header length, a JSON header
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`
//! and the tensor data (see [`SafeTensors`]).
//!
//! # Error locations
//! Errors are [`Error::Format`] values whose location names the part of the
//! file: `header`, `data`, or, for members of archives, `array "scores", header`.

use std::fmt;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// The first six bytes of every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Files at least this large are memory-mapped rather than read into memory.
pub const MMAP_THRESHOLD: u64 = 256 * 1024;

/// The element type of an array.
///
/// Byte order is not part of the type; it is tracked next to it
/// (`big_endian` in [`NpyHeader`] and [`NpyArray`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `|b1`: one byte, 0 or 1.
    Bool,
    /// `i1`.
    I8,
    /// `i2`.
    I16,
    /// `i4`.
    I32,
    /// `i8`.
    I64,
    /// `u1`.
    U8,
    /// `u2`.
    U16,
    /// `u4`.
    U32,
    /// `u8`.
    U64,
    /// `f2`: IEEE 754 half precision.
    F16,
    /// bfloat16 (safetensors `BF16`; NumPy has no such type).
    BF16,
    /// `f4`.
    F32,
    /// `f8`.
    F64,
    /// `U{n}`: fixed-width UTF-32 strings of `n` characters.
    Unicode(usize),
    /// `S{n}`: fixed-width byte strings of `n` bytes.
    Bytes(usize),
}

impl DType {
    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
            DType::Unicode(n) => n.saturating_mul(4),
            DType::Bytes(n) => n,
        }
    }

    /// Signed or unsigned integer types (not [`DType::Bool`]).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64
        )
    }

    /// Floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// String types ([`DType::Unicode`], [`DType::Bytes`]).
    pub fn is_string(self) -> bool {
        matches!(self, DType::Unicode(_) | DType::Bytes(_))
    }

    /// Whether byte order matters: every type whose unit is wider than one
    /// byte (including [`DType::Unicode`], made of 4-byte code units).
    pub fn has_byte_order(self) -> bool {
        !matches!(self, DType::Bool | DType::I8 | DType::U8 | DType::Bytes(_))
    }

    /// The NumPy `descr` string of this type in the given byte order, e.g. `<f4`.
    pub fn descr(self, big_endian: bool) -> String {
        let order = if !self.has_byte_order() {
            '|'
        } else if big_endian {
            '>'
        } else {
            '<'
        };
        let code = match self {
            DType::Bool => "b1".to_string(),
            DType::I8 => "i1".to_string(),
            DType::I16 => "i2".to_string(),
            DType::I32 => "i4".to_string(),
            DType::I64 => "i8".to_string(),
            DType::U8 => "u1".to_string(),
            DType::U16 => "u2".to_string(),
            DType::U32 => "u4".to_string(),
            DType::U64 => "u8".to_string(),
            DType::F16 => "f2".to_string(),
            DType::BF16 => "bf16".to_string(),
            DType::F32 => "f4".to_string(),
            DType::F64 => "f8".to_string(),
            DType::Unicode(n) => format!("U{n}"),
            DType::Bytes(n) => return format!("|S{n}"),
        };
        format!("{order}{code}")
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::Bool => f.write_str("bool"),
            DType::I8 => f.write_str("int8"),
            DType::I16 => f.write_str("int16"),
            DType::I32 => f.write_str("int32"),
            DType::I64 => f.write_str("int64"),
            DType::U8 => f.write_str("uint8"),
            DType::U16 => f.write_str("uint16"),
            DType::U32 => f.write_str("uint32"),
            DType::U64 => f.write_str("uint64"),
            DType::F16 => f.write_str("float16"),
            DType::BF16 => f.write_str("bfloat16"),
            DType::F32 => f.write_str("float32"),
            DType::F64 => f.write_str("float64"),
            DType::Unicode(n) => write!(f, "unicode string (U{n})"),
            DType::Bytes(n) => write!(f, "byte string (S{n})"),
        }
    }
}

/// `f32` to IEEE half, round to nearest even; overflow gives infinity.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x0200 | (man >> 13) as u16 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (r & 1) == 1) {
        r += 1; // may carry into the exponent, up to infinity: correct
    }
    sign | r as u16
}

/// Converts IEEE 754 half-precision bits to `f32` (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    let bits =
        if exp == 0x1f { sign | 0x7f80_0000 | (man << 13) } else { sign | ((exp + 127 - 15) << 23) | (man << 13) };
    f32::from_bits(bits)
}

/// Converts bfloat16 bits to `f32` (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `part` within the array `what` (`""` for a plain `.npy` file).
fn at(what: &str, part: &str) -> String {
    if what.is_empty() {
        part.to_string()
    } else {
        format!("{what}, {part}")
    }
}

/// Where an element lives: `what` itself, or `data` for a plain `.npy` file.
fn whole(what: &str) -> String {
    if what.is_empty() {
        "data".to_string()
    } else {
        what.to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared byte buffers
// ---------------------------------------------------------------------------

/// The bytes of a whole file (or decompressed archive member): mapped or owned,
/// cheaply clonable so that several arrays can view one file.
#[derive(Clone)]
pub(crate) enum SharedBytes {
    /// A read-only memory map.
    Map(Arc<Mmap>),
    /// Bytes in memory.
    Vec(Arc<Vec<u8>>),
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            SharedBytes::Map(m) => m,
            SharedBytes::Vec(v) => v,
        }
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedBytes::Map(m) => write!(f, "Mmap({} bytes)", m.len()),
            SharedBytes::Vec(v) => write!(f, "Vec({} bytes)", v.len()),
        }
    }
}

impl SharedBytes {
    /// Maps `path` if it is a regular file of at least [`MMAP_THRESHOLD`]
    /// bytes (falling back to reading when mapping fails), else reads it.
    pub(crate) fn load(path: &Path) -> Result<SharedBytes> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::io(path, std::io::Error::other("is a directory, expected a file")));
        }
        if meta.is_file() && meta.len() >= MMAP_THRESHOLD {
            // SAFETY: the map is read-only and labelscope never writes its
            // input files; the module documents that inputs must not be
            // modified while they are read.
            if let Ok(map) = unsafe { Mmap::map(&file) } {
                return Ok(SharedBytes::Map(Arc::new(map)));
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        Ok(SharedBytes::Vec(Arc::new(bytes)))
    }

    fn is_map(&self) -> bool {
        matches!(self, SharedBytes::Map(_))
    }
}

// ---------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Whether multi-byte elements are stored big endian.
    pub big_endian: bool,
    /// Array shape (C order); empty for a scalar.
    pub shape: Vec<usize>,
    /// Offset of the first data byte from the start of the `.npy` bytes.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of data bytes the shape and type call for.
    pub fn data_len(&self) -> usize {
        self.len().saturating_mul(self.dtype.itemsize())
    }
}

/// Chooses which array of a multi-array file (`.npz`, `.safetensors`) to read:
/// `explicit` when given; else the only array; else the first of
/// `preferred` that exists; else an error listing the names and asking for
/// `--array NAME`.
pub fn choose_array(names: &[String], explicit: Option<&str>, preferred: &[&str], path: &Path) -> Result<String> {
    if let Some(a) = explicit {
        return Ok(a.to_string());
    }
    if let [only] = names {
        return Ok(only.clone());
    }
    if let Some(p) = preferred.iter().find(|p| names.iter().any(|n| n == *p)) {
        return Ok(p.to_string());
    }
    if names.is_empty() {
        return Err(Error::format(path, "arrays", "the file holds no arrays"));
    }
    let hint = if preferred.is_empty() {
        String::new()
    } else {
        format!(" and none has a usual name ({})", preferred.join(", "))
    };
    Err(Error::format(
        path,
        "arrays",
        format!("found {} arrays ({}){hint}; pass --array NAME to choose one", names.len(), names.join(", ")),
    ))
}

/// Reads one array from a `.npy`, `.npz` or `.safetensors` file (chosen by
/// extension; `name` picks the array of a multi-array file, see
/// [`choose_array`]). Returns the array and a description of where it came
/// from, for error messages (`array "feats"`).
pub fn read_array(path: &Path, name: Option<&str>, preferred: &[&str]) -> Result<(NpyArray, String)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "npy" => Ok((read_npy(path)?, "array".to_string())),
        "npz" => {
            let mut npz = Npz::open(path)?;
            let n = choose_array(&npz.names(), name, preferred, path)?;
            Ok((npz.read(&n)?, format!("array {n:?}")))
        }
        "safetensors" => {
            let st = SafeTensors::open(path)?;
            let n = choose_array(&st.names(), name, preferred, path)?;
            Ok((st.read(&n)?, format!("tensor {n:?}")))
        }
        _ => Err(Error::Invalid(format!(
            "{}: unknown array file type {ext:?}; expected .npy, .npz or .safetensors",
            path.display()
        ))),
    }
}

/// The bytes of a version 1.0 `.npy` header for a C-order array of dtype
/// `descr` (such as `<f4`) and `shape`, padded so that the data starts at a
/// multiple of 64 bytes. Append the raw little-endian data to get a file.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    while !(NPY_MAGIC.len() + 4 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = NPY_MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Parses the header at the start of `bytes` (a whole `.npy` file, or at least
/// its header). `path` is only used in error messages.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    parse_header_in(bytes, path, "")
}

fn parse_header_in(bytes: &[u8], path: &Path, what: &str) -> Result<NpyHeader> {
    let err = |msg: String| Error::format(path, at(what, "header"), msg);
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(err(format!(
            "not a .npy file: expected the magic bytes \\x93NUMPY at the start, found {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(6)])
        )));
    }
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(err(format!("file ends after {} bytes, inside the format version", bytes.len()))),
    };
    let (prefix, header_len) = match major {
        1 => match bytes.get(8..10) {
            Some(b) => (10usize, usize::from(u16::from_le_bytes([b[0], b[1]]))),
            None => return Err(err("file ends inside the header length".into())),
        },
        2 | 3 => match bytes.get(8..12) {
            Some(b) => (12usize, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            None => return Err(err("file ends inside the header length".into())),
        },
        _ => {
            return Err(err(format!("unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0")));
        }
    };
    let data_offset = prefix.saturating_add(header_len);
    let text = match bytes.get(prefix..data_offset) {
        Some(t) => t,
        None => {
            return Err(err(format!(
                "the header length field says {header_len} bytes, but only {} bytes follow it",
                bytes.len() - prefix
            )))
        }
    };
    let mut parser = PyParser { s: text, pos: 0 };
    let dict = parser.value(0).and_then(|v| {
        parser.skip_ws();
        if parser.pos < text.len() {
            Err(format!("unexpected text after the dictionary at character {}", parser.pos))
        } else {
            Ok(v)
        }
    });
    let dict = match dict {
        Ok(PyValue::Dict(d)) => d,
        Ok(_) => return Err(err(format!("expected a dictionary, found {}", show_header(text)))),
        Err(m) => {
            return Err(err(format!("cannot parse the header dictionary: {m}; header text: {}", show_header(text))))
        }
    };
    let get = |key: &str| dict.iter().find(|(k, _)| matches!(k, PyValue::Str(s) if s == key)).map(|(_, v)| v);

    let (dtype, big_endian) = match get("descr") {
        Some(PyValue::Str(s)) => parse_descr(s).map_err(err)?,
        Some(PyValue::Seq(_)) => {
            return Err(err(
                "structured dtype (record array with named fields) is not supported; save a plain numeric or \
                 string array"
                    .into(),
            ))
        }
        Some(v) => return Err(err(format!("'descr' is {v:?}; expected a type string such as '<f4'"))),
        None => return Err(err(format!("no 'descr' key; header text: {}", show_header(text)))),
    };
    let shape: Vec<usize> = match get("shape") {
        Some(PyValue::Seq(items)) => {
            let mut shape = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    PyValue::Int(d) if *d >= 0 => shape.push(
                        usize::try_from(*d).map_err(|_| err(format!("dimension {d} is too large for this machine")))?,
                    ),
                    other => {
                        return Err(err(format!("'shape' holds {other:?}; expected non-negative integers")));
                    }
                }
            }
            shape
        }
        Some(PyValue::Int(d)) if *d >= 0 => vec![*d as usize],
        Some(v) => return Err(err(format!("'shape' is {v:?}; expected a tuple of integers"))),
        None => return Err(err(format!("no 'shape' key; header text: {}", show_header(text)))),
    };
    let fortran = match get("fortran_order") {
        Some(PyValue::Bool(b)) => *b,
        Some(v) => return Err(err(format!("'fortran_order' is {v:?}; expected True or False"))),
        None => return Err(err(format!("no 'fortran_order' key; header text: {}", show_header(text)))),
    };
    // With at most one dimension longer than 1, Fortran and C order are the same layout.
    if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(err(format!(
            "fortran_order is True (column-major array of shape {shape:?}); only C order is supported: \
             save it with np.save(path, np.ascontiguousarray(a))"
        )));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count.and_then(|c| c.checked_mul(dtype.itemsize())).is_none() {
        return Err(err(format!("shape {shape:?} of {dtype} is too large for this machine")));
    }
    Ok(NpyHeader { dtype, big_endian, shape, data_offset })
}

fn show_header(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(&text[..text.len().min(200)]);
    format!("{:?}{}", s.trim_end(), if text.len() > 200 { "..." } else { "" })
}

/// Parses a NumPy `descr` string such as `<f4` into a type and byte order.
fn parse_descr(descr: &str) -> std::result::Result<(DType, bool), String> {
    let (order, rest) = match descr.as_bytes().first() {
        Some(b'<') => ('<', &descr[1..]),
        Some(b'>') => ('>', &descr[1..]),
        Some(b'|') => ('|', &descr[1..]),
        Some(b'=') => ('=', &descr[1..]),
        _ => ('=', descr),
    };
    let big_endian = match order {
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        _ => false,
    };
    let mut chars = rest.chars();
    let code = chars.next().ok_or_else(|| format!("empty type descriptor {descr:?}"))?;
    let size_text = chars.as_str();
    let size: Option<usize> = if size_text.is_empty() { None } else { size_text.parse().ok() };
    let unsupported = |what: &str| format!("{what} ({descr:?}) is not supported");
    let dtype = match (code, size) {
        ('b', Some(1)) | ('?', None) => DType::Bool,
        ('i', Some(1)) => DType::I8,
        ('i', Some(2)) => DType::I16,
        ('i', Some(4)) => DType::I32,
        ('i', Some(8)) => DType::I64,
        ('u', Some(1)) => DType::U8,
        ('u', Some(2)) => DType::U16,
        ('u', Some(4)) => DType::U32,
        ('u', Some(8)) => DType::U64,
        ('f', Some(2)) => DType::F16,
        ('f', Some(4)) => DType::F32,
        ('f', Some(8)) => DType::F64,
        ('U', Some(n)) => {
            if n.checked_mul(4).is_none() {
                return Err(format!("string width in {descr:?} is too large"));
            }
            DType::Unicode(n)
        }
        ('S' | 'a', Some(n)) => DType::Bytes(n),
        ('O', _) => {
            return Err(format!(
                "object dtype ({descr:?}): the array holds pickled Python objects, which are not supported; \
                 save a numeric or string array instead (e.g. a.astype(np.float32) or a.astype(str))"
            ))
        }
        ('c', _) => return Err(unsupported("complex dtype")),
        ('M' | 'm', _) => return Err(unsupported("datetime/timedelta dtype")),
        ('V', _) => return Err(unsupported("void/structured dtype")),
        ('f', Some(_)) | ('g', _) => return Err(unsupported("extended-precision float dtype")),
        _ => {
            return Err(format!(
                "unknown type descriptor {descr:?}; expected one of |b1, i1..i8, u1..u8, f2, f4, f8, U<n>, S<n>"
            ))
        }
    };
    Ok((dtype, big_endian && dtype.has_byte_order()))
}

/// A value of the Python literal subset used by `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    /// A tuple or a list.
    Seq(Vec<PyValue>),
    Dict(Vec<(PyValue, PyValue)>),
}

struct PyParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl PyParser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> std::result::Result<PyValue, String> {
        if depth > 16 {
            return Err("values nested too deeply".into());
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(PyValue::Dict(items));
                    }
                    let key = self.value(depth + 1)?;
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(format!("expected ':' at character {}", self.pos));
                    }
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    items.push((key, value));
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' or '}}' at character {}", self.pos)),
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(PyValue::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(c) if c == close => {}
                        _ => {
                            return Err(format!("expected ',' or '{}' at character {}", close as char, self.pos));
                        }
                    }
                }
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err("unterminated string".into()),
                        Some(b'\\') => {
                            if let Some(&c) = self.s.get(self.pos + 1) {
                                out.push(c);
                            }
                            self.pos += 2;
                        }
                        Some(c) if c == quote => {
                            self.pos += 1;
                            // Headers are ASCII in practice; decode as Latin-1 otherwise.
                            let s = match String::from_utf8(out) {
                                Ok(s) => s,
                                Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
                            };
                            return Ok(PyValue::Str(s));
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.pos += 1;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                let v: i64 = digits.parse().map_err(|_| format!("bad integer {digits:?} at character {start}"))?;
                // Python 2 long suffix.
                if matches!(self.peek(), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                Ok(PyValue::Int(v))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(PyValue::Bool(true)),
                    b"False" => Ok(PyValue::Bool(false)),
                    b"None" => Ok(PyValue::None),
                    other => Err(format!("unexpected name {:?} at character {start}", String::from_utf8_lossy(other))),
                }
            }
            Some(c) => Err(format!("unexpected character {:?} at character {}", c as char, self.pos)),
            None => Err("unexpected end of header".into()),
        }
    }
}

// ---------------------------------------------------------------------------
// Arrays
// ---------------------------------------------------------------------------

/// An n-dimensional array read from a `.npy` file, an `.npz` member or a
/// `.safetensors` tensor. The data stays in file byte order (possibly inside a
/// memory map) until it is converted with one of the `to_*` methods.
#[derive(Debug, Clone)]
pub struct NpyArray {
    /// Shape, C order; empty for a scalar.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Whether multi-byte elements are stored big endian.
    pub big_endian: bool,
    data: SharedBytes,
    offset: usize,
    nbytes: usize,
    /// The file and the array inside it, for error messages.
    source: Arc<(PathBuf, String)>,
}

fn read_ne<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

macro_rules! decode_as {
    ($bytes:expr, $be:expr, $t:ty, $n:literal, $map:expr) => {{
        let be = $be;
        $bytes
            .chunks_exact($n)
            .map(|c| {
                let a = read_ne::<$n>(c);
                let v = if be { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) };
                $map(v)
            })
            .collect()
    }};
}

impl NpyArray {
    /// Builds an array viewing `nbytes` of `data` from `offset`; checks that the
    /// shape and type fit the available bytes.
    pub(crate) fn from_shared(
        data: SharedBytes,
        offset: usize,
        dtype: DType,
        big_endian: bool,
        shape: Vec<usize>,
        path: &Path,
        what: &str,
    ) -> Result<NpyArray> {
        let need = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|c| c.checked_mul(dtype.itemsize()))
            .ok_or_else(|| {
                Error::format(path, at(what, "header"), format!("shape {shape:?} of {dtype} is too large"))
            })?;
        let have = data.as_ref().len().saturating_sub(offset);
        if have < need {
            return Err(Error::format(
                path,
                at(what, "data"),
                format!(
                    "truncated: shape {shape:?} of {dtype} needs {need} bytes of data, but only {have} bytes are \
                     present"
                ),
            ));
        }
        Ok(NpyArray {
            shape,
            dtype,
            big_endian,
            data,
            offset,
            nbytes: need,
            source: Arc::new((path.to_path_buf(), what.to_string())),
        })
    }

    /// Parses `.npy` bytes found at `start..start + len` of `data`.
    fn from_npy_shared(data: SharedBytes, start: usize, len: usize, path: &Path, what: &str) -> Result<NpyArray> {
        let bytes = start
            .checked_add(len)
            .and_then(|end| data.as_ref().get(start..end))
            .ok_or_else(|| Error::format(path, whole(what), "the array extends past the end of the file"))?;
        let h = parse_header_in(bytes, path, what)?;
        let need = h.data_len();
        let have = len - h.data_offset;
        if have < need {
            return Err(Error::format(
                path,
                at(what, "data"),
                format!(
                    "truncated: shape {:?} of {} needs {need} bytes of data after the {}-byte header, but only \
                     {have} bytes are present",
                    h.shape, h.dtype, h.data_offset
                ),
            ));
        }
        Ok(NpyArray {
            shape: h.shape,
            dtype: h.dtype,
            big_endian: h.big_endian,
            data,
            offset: start + h.data_offset,
            nbytes: need,
            source: Arc::new((path.to_path_buf(), what.to_string())),
        })
    }

    /// The shape (C order).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw element bytes, in file byte order.
    pub fn raw_bytes(&self) -> &[u8] {
        &self.data.as_ref()[self.offset..self.offset + self.nbytes]
    }

    /// Whether the data is a view into a memory-mapped file.
    pub fn is_memory_mapped(&self) -> bool {
        self.data.is_map()
    }

    fn type_error(&self, path: &Path, what: &str, expected: &str) -> Error {
        Error::format(
            path,
            whole(what),
            format!("found an array of {} ({}); expected {expected}", self.dtype, self.dtype.descr(self.big_endian)),
        )
    }

    /// The elements as `f64` (any numeric type; booleans as 0 and 1).
    /// Strings are an error.
    pub fn to_f64_vec(&self, path: &Path, what: &str) -> Result<Vec<f64>> {
        let b = self.raw_bytes();
        let be = self.big_endian;
        Ok(match self.dtype {
            DType::Bool => b.iter().map(|&x| f64::from(u8::from(x != 0))).collect(),
            DType::I8 => b.iter().map(|&x| f64::from(x as i8)).collect(),
            DType::U8 => b.iter().map(|&x| f64::from(x)).collect(),
            DType::I16 => decode_as!(b, be, i16, 2, f64::from),
            DType::U16 => decode_as!(b, be, u16, 2, f64::from),
            DType::I32 => decode_as!(b, be, i32, 4, f64::from),
            DType::U32 => decode_as!(b, be, u32, 4, f64::from),
            DType::I64 => decode_as!(b, be, i64, 8, |v: i64| v as f64),
            DType::U64 => decode_as!(b, be, u64, 8, |v: u64| v as f64),
            DType::F16 => decode_as!(b, be, u16, 2, |v| f64::from(f16_to_f32(v))),
            DType::BF16 => decode_as!(b, be, u16, 2, |v| f64::from(bf16_to_f32(v))),
            DType::F32 => decode_as!(b, be, f32, 4, f64::from),
            DType::F64 => decode_as!(b, be, f64, 8, |v: f64| v),
            DType::Unicode(_) | DType::Bytes(_) => return Err(self.type_error(path, what, "numbers")),
        })
    }

    /// The elements as `f32` (any numeric type; `f64` is narrowed, `f16` and
    /// `bf16` converted exactly, booleans become 0 and 1). Strings are an error.
    pub fn to_f32_vec(&self, path: &Path, what: &str) -> Result<Vec<f32>> {
        let b = self.raw_bytes();
        let be = self.big_endian;
        Ok(match self.dtype {
            DType::F32 => decode_as!(b, be, f32, 4, |v: f32| v),
            DType::F64 => decode_as!(b, be, f64, 8, |v: f64| v as f32),
            DType::F16 => decode_as!(b, be, u16, 2, f16_to_f32),
            DType::BF16 => decode_as!(b, be, u16, 2, bf16_to_f32),
            DType::Bool => b.iter().map(|&x| f32::from(u8::from(x != 0))).collect(),
            DType::I8 => b.iter().map(|&x| f32::from(x as i8)).collect(),
            DType::U8 => b.iter().map(|&x| f32::from(x)).collect(),
            DType::I16 => decode_as!(b, be, i16, 2, f32::from),
            DType::U16 => decode_as!(b, be, u16, 2, f32::from),
            DType::I32 => decode_as!(b, be, i32, 4, |v: i32| v as f32),
            DType::U32 => decode_as!(b, be, u32, 4, |v: u32| v as f32),
            DType::I64 => decode_as!(b, be, i64, 8, |v: i64| v as f32),
            DType::U64 => decode_as!(b, be, u64, 8, |v: u64| v as f32),
            DType::Unicode(_) | DType::Bytes(_) => return Err(self.type_error(path, what, "numbers")),
        })
    }

    /// The elements as `i64` (integer and boolean types). Floats and strings
    /// are an error, and so is a `uint64` value above `i64::MAX`.
    pub fn to_i64_vec(&self, path: &Path, what: &str) -> Result<Vec<i64>> {
        let b = self.raw_bytes();
        let be = self.big_endian;
        Ok(match self.dtype {
            DType::Bool => b.iter().map(|&x| i64::from(x != 0)).collect(),
            DType::I8 => b.iter().map(|&x| i64::from(x as i8)).collect(),
            DType::U8 => b.iter().map(|&x| i64::from(x)).collect(),
            DType::I16 => decode_as!(b, be, i16, 2, i64::from),
            DType::U16 => decode_as!(b, be, u16, 2, i64::from),
            DType::I32 => decode_as!(b, be, i32, 4, i64::from),
            DType::U32 => decode_as!(b, be, u32, 4, i64::from),
            DType::I64 => decode_as!(b, be, i64, 8, |v: i64| v),
            DType::U64 => {
                let v: Vec<u64> = decode_as!(b, be, u64, 8, |v: u64| v);
                let mut out = Vec::with_capacity(v.len());
                for (i, x) in v.into_iter().enumerate() {
                    let x = i64::try_from(x).map_err(|_| {
                        Error::format(
                            path,
                            at(what, &format!("element {i}")),
                            format!("found {x}; expected an integer no larger than {}", i64::MAX),
                        )
                    })?;
                    out.push(x);
                }
                out
            }
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => {
                return Err(self.type_error(path, what, "integers"));
            }
            DType::Unicode(_) | DType::Bytes(_) => return Err(self.type_error(path, what, "integers")),
        })
    }

    /// The file the array was read from.
    pub fn source_path(&self) -> &Path {
        &self.source.0
    }

    /// The elements of a string array ([`DType::Unicode`] or [`DType::Bytes`]),
    /// trailing NULs stripped. Byte strings that are not UTF-8 are decoded
    /// lossily. Numeric arrays are an error. Errors name the file and array
    /// the array was read from.
    pub fn to_strings(&self) -> Result<Vec<String>> {
        let (path, what) = (&self.source.0, self.source.1.as_str());
        let b = self.raw_bytes();
        match self.dtype {
            DType::Unicode(0) | DType::Bytes(0) => Ok(vec![String::new(); self.len()]),
            DType::Unicode(n) => {
                let mut out = Vec::with_capacity(self.len());
                for (i, item) in b.chunks_exact(n * 4).enumerate() {
                    let units: Vec<u32> = decode_as!(item, self.big_endian, u32, 4, |v: u32| v);
                    let end = units.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
                    let mut s = String::with_capacity(end);
                    for &u in &units[..end] {
                        let c = char::from_u32(u).ok_or_else(|| {
                            Error::format(
                                path,
                                at(what, &format!("element {i}")),
                                format!("found the code point {u:#x}; expected a valid Unicode scalar value"),
                            )
                        })?;
                        s.push(c);
                    }
                    out.push(s);
                }
                Ok(out)
            }
            DType::Bytes(n) => Ok(b
                .chunks_exact(n)
                .map(|item| {
                    let end = item.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
                    String::from_utf8_lossy(&item[..end]).into_owned()
                })
                .collect()),
            _ => Err(self.type_error(path, what, "strings")),
        }
    }

    /// The elements as `f32`, without copying when the array is little-endian
    /// `float32` whose data is 4-byte aligned (always the case for `.npy`
    /// files on little-endian machines); otherwise converted as by
    /// [`NpyArray::to_f32_vec`].
    pub fn into_f32_values(self, path: &Path, what: &str) -> Result<F32Values> {
        let ptr = self.data.as_ref().as_ptr() as usize;
        if self.dtype == DType::F32
            && !self.big_endian
            && cfg!(target_endian = "little")
            && ptr.wrapping_add(self.offset) & (std::mem::align_of::<f32>() - 1) == 0
        {
            let len = self.nbytes / 4;
            return Ok(F32Values(F32Repr::Shared { buf: self.data, offset: self.offset, len }));
        }
        Ok(F32Values::from_vec(self.to_f32_vec(path, what)?))
    }
}

/// A read-only run of `f32` values: either a zero-copy view into a file
/// (memory-mapped or read) or an owned vector.
#[derive(Clone)]
pub struct F32Values(F32Repr);

#[derive(Clone)]
enum F32Repr {
    /// Invariant: `buf[offset..offset + 4 * len]` is in bounds and 4-byte aligned.
    Shared {
        buf: SharedBytes,
        offset: usize,
        len: usize,
    },
    Owned(Vec<f32>),
    /// Values owned elsewhere (e.g. a numpy array kept alive by the holder).
    External(Arc<dyn AsRef<[f32]> + Send + Sync>),
}

impl F32Values {
    /// Wraps an owned vector.
    pub fn from_vec(values: Vec<f32>) -> F32Values {
        F32Values(F32Repr::Owned(values))
    }

    /// Views values held by someone else (no copy); `holder` keeps them alive.
    pub fn from_external(holder: Arc<dyn AsRef<[f32]> + Send + Sync>) -> F32Values {
        F32Values(F32Repr::External(holder))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        match &self.0 {
            F32Repr::Owned(v) => v,
            F32Repr::External(h) => (**h).as_ref(),
            F32Repr::Shared { buf, offset, len } => {
                let bytes = &buf.as_ref()[*offset..*offset + *len * 4];
                debug_assert_eq!(bytes.as_ptr() as usize % std::mem::align_of::<f32>(), 0);
                // SAFETY: the range is in bounds and 4-byte aligned (checked when
                // the value was built, and the buffer never moves: it is a memory
                // map or the heap block of an `Arc<Vec<u8>>`), it lives as long as
                // `self`, and every bit pattern is a valid `f32`.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.0 {
            F32Repr::Owned(v) => v.len(),
            F32Repr::External(h) => (**h).as_ref().len(),
            F32Repr::Shared { len, .. } => *len,
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the values are read in place from a memory-mapped file.
    pub fn is_memory_mapped(&self) -> bool {
        matches!(&self.0, F32Repr::Shared { buf, .. } if buf.is_map())
    }

    /// The values as an owned vector (copies when they are a view).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            F32Repr::Owned(v) => v,
            F32Repr::Shared { .. } | F32Repr::External(_) => self.as_slice().to_vec(),
        }
    }
}

impl fmt::Debug for F32Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("F32Values").field("len", &self.len()).field("memory_mapped", &self.is_memory_mapped()).finish()
    }
}

/// Reads a `.npy` file (memory-mapped when large).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let data = SharedBytes::load(path)?;
    let len = data.as_ref().len();
    NpyArray::from_npy_shared(data, 0, len, path, "")
}

/// Parses `.npy` bytes already in memory (copies them). `path` names the file
/// in error messages and `what` the array inside it (e.g. `array "scores"`;
/// empty for a plain `.npy` file).
pub fn read_npy_bytes(bytes: &[u8], path: &Path, what: &str) -> Result<NpyArray> {
    let len = bytes.len();
    NpyArray::from_npy_shared(SharedBytes::Vec(Arc::new(bytes.to_vec())), 0, len, path, what)
}

// ---------------------------------------------------------------------------
// .npz
// ---------------------------------------------------------------------------

/// An open `.npz` archive (a zip file of `.npy` members).
pub struct Npz {
    path: PathBuf,
    data: SharedBytes,
    archive: zip::ZipArchive<Cursor<SharedBytes>>,
    members: Vec<String>,
}

impl fmt::Debug for Npz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Npz").field("path", &self.path).field("members", &self.members).finish()
    }
}

impl Npz {
    /// Opens an archive and reads its directory.
    pub fn open(path: &Path) -> Result<Npz> {
        let data = SharedBytes::load(path)?;
        let archive = zip::ZipArchive::new(Cursor::new(data.clone()))
            .map_err(|e| Error::format(path, "zip directory", format!("not a readable .npz (zip) archive: {e}")))?;
        let members = archive.file_names().filter(|n| !n.ends_with('/')).map(str::to_string).collect();
        Ok(Npz { path: path.to_path_buf(), data, archive, members })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Array names in archive order, without the `.npy` suffix.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.strip_suffix(".npy").unwrap_or(m).to_string()).collect()
    }

    fn member(&self, name: &str) -> Option<&str> {
        let with_suffix = format!("{name}.npy");
        self.members
            .iter()
            .find(|m| **m == with_suffix)
            .or_else(|| self.members.iter().find(|m| *m == name))
            .map(String::as_str)
    }

    /// Whether the archive holds an array called `name` (with or without `.npy`).
    pub fn contains(&self, name: &str) -> bool {
        self.member(name).is_some()
    }

    /// Reads the array `name` (with or without the `.npy` suffix).
    pub fn read(&mut self, name: &str) -> Result<NpyArray> {
        let path = self.path.clone();
        let Some(member) = self.member(name).map(str::to_string) else {
            return Err(Error::format(
                &path,
                format!("array {name:?}"),
                format!("no such array; the archive holds: {}", self.names().join(", ")),
            ));
        };
        let short = member.strip_suffix(".npy").unwrap_or(&member);
        let what = format!("array {short:?}");
        let mut file = self
            .archive
            .by_name(&member)
            .map_err(|e| Error::format(&path, what.as_str(), format!("cannot read the zip member: {e}")))?;
        if file.encrypted() {
            return Err(Error::format(&path, what, "the zip member is encrypted; expected a plain .npz"));
        }
        let size = usize::try_from(file.size())
            .map_err(|_| Error::format(&path, what.as_str(), "the zip member is too large for this machine"))?;
        if file.compression() == zip::CompressionMethod::Stored {
            let start = usize::try_from(file.data_start()).unwrap_or(usize::MAX);
            drop(file);
            return NpyArray::from_npy_shared(self.data.clone(), start, size, &path, &what);
        }
        let mut bytes = Vec::with_capacity(size.min(1 << 30));
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::format(&path, what.as_str(), format!("cannot decompress the zip member: {e}")))?;
        let len = bytes.len();
        NpyArray::from_npy_shared(SharedBytes::Vec(Arc::new(bytes)), 0, len, &path, &what)
    }
}

// ---------------------------------------------------------------------------
// .safetensors
// ---------------------------------------------------------------------------

/// An open `.safetensors` file.
#[derive(Debug)]
pub struct SafeTensors {
    path: PathBuf,
    data: SharedBytes,
    data_start: usize,
    tensors: Vec<TensorEntry>,
}

#[derive(Debug)]
struct TensorEntry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    begin: usize,
}

/// The safetensors dtype names this reader supports.
pub const SAFETENSORS_DTYPES: &[&str] =
    &["BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "U64", "I64", "F64"];

fn safetensors_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "BOOL" => DType::Bool,
        "U8" => DType::U8,
        "I8" => DType::I8,
        "U16" => DType::U16,
        "I16" => DType::I16,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "U32" => DType::U32,
        "I32" => DType::I32,
        "F32" => DType::F32,
        "U64" => DType::U64,
        "I64" => DType::I64,
        "F64" => DType::F64,
        _ => return None,
    })
}

impl SafeTensors {
    /// Opens a file and validates its header: every tensor's offsets must lie
    /// inside the file and match its shape and type.
    pub fn open(path: &Path) -> Result<SafeTensors> {
        let data = SharedBytes::load(path)?;
        let bytes = data.as_ref();
        let herr = |m: String| Error::format(path, "header", m);
        let Some(len_bytes) = bytes.get(..8) else {
            return Err(herr(format!(
                "the file is {} bytes long; a .safetensors file starts with an 8-byte header length",
                bytes.len()
            )));
        };
        let header_len = u64::from_le_bytes(read_ne::<8>(len_bytes));
        let available = (bytes.len() - 8) as u64;
        if header_len > available {
            return Err(herr(format!(
                "the header length field says {header_len} bytes, but only {available} bytes follow it"
            )));
        }
        let data_start = 8 + header_len as usize;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| herr(format!("the header is not a JSON object: {e}")))?;
        let data_len = bytes.len() - data_start;
        let mut tensors = Vec::with_capacity(map.len());
        for (name, value) in &map {
            if name == "__metadata__" {
                continue;
            }
            let loc = format!("tensor {name:?}");
            let terr = |m: &str| Error::format(path, loc.as_str(), m.to_string());
            let dtype = value
                .get("dtype")
                .and_then(|v| v.as_str())
                .ok_or_else(|| terr("no \"dtype\" string in the header entry"))?
                .to_string();
            let shape = value
                .get("shape")
                .and_then(|v| v.as_array())
                .and_then(|a| {
                    a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| terr("\"shape\" is missing or not an array of non-negative integers"))?;
            let offsets = value
                .get("data_offsets")
                .and_then(|v| v.as_array())
                .and_then(|a| {
                    a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| terr("\"data_offsets\" is missing or not an array of non-negative integers"))?;
            let [begin, end] = offsets[..] else {
                return Err(terr(&format!("\"data_offsets\" has {} entries; expected [begin, end]", offsets.len())));
            };
            if begin > end || end > data_len {
                return Err(terr(&format!(
                    "data_offsets [{begin}, {end}] do not lie within the {data_len} data bytes after the header"
                )));
            }
            if let Some(dt) = safetensors_dtype(&dtype) {
                let need = shape.iter().try_fold(dt.itemsize(), |a, &d| a.checked_mul(d));
                if need != Some(end - begin) {
                    return Err(terr(&format!(
                        "data_offsets [{begin}, {end}] span {} bytes, but shape {shape:?} of {dtype} needs {}",
                        end - begin,
                        need.map_or_else(|| "more than fits in memory".to_string(), |n| n.to_string())
                    )));
                }
            }
            tensors.push(TensorEntry { name: name.clone(), dtype, shape, begin });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SafeTensors { path: path.to_path_buf(), data, data_start, tensors })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    /// The tensor `name`, viewed in place (no copy).
    pub fn read(&self, name: &str) -> Result<NpyArray> {
        let loc = format!("tensor {name:?}");
        let Some(t) = self.tensors.iter().find(|t| t.name == name) else {
            return Err(Error::format(
                &self.path,
                loc,
                format!("no such tensor; the file holds: {}", self.names().join(", ")),
            ));
        };
        let dtype = safetensors_dtype(&t.dtype).ok_or_else(|| {
            Error::format(
                &self.path,
                loc.as_str(),
                format!("unsupported dtype {:?}; supported: {}", t.dtype, SAFETENSORS_DTYPES.join(", ")),
            )
        })?;
        NpyArray::from_shared(
            self.data.clone(),
            self.data_start + t.begin,
            dtype,
            false,
            t.shape.clone(),
            &self.path,
            &loc,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Builds `.npy` bytes by hand: magic, version, header length, padded header, data.
    pub(crate) fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8], major: u8) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let prefix = if major == 1 { 10 } else { 12 };
        let mut header = dict.into_bytes();
        let total = (prefix + header.len() + 1).div_ceil(64) * 64;
        header.resize(total - prefix - 1, b' ');
        header.push(b'\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend([major, 0]);
        if major == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header);
        out.extend(data);
        out
    }

    fn p() -> &'static Path {
        Path::new("test.npy")
    }

    fn le<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| f(v)).collect()
    }

    #[test]
    fn integer_dtypes_little_and_big_endian() {
        let a = read_npy_bytes(&npy("|i1", false, "(3,)", &[0xff, 1, 2], 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [-1, 1, 2]);
        let a = read_npy_bytes(&npy("|u1", false, "(2,)", &[0xff, 1], 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [255, 1]);
        let a = read_npy_bytes(&npy("<i2", false, "(2,)", &le(&[-2i16, 300], i16::to_le_bytes), 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [-2, 300]);
        let a = read_npy_bytes(&npy(">i2", false, "(2,)", &le(&[-2i16, 300], i16::to_be_bytes), 1), p(), "").unwrap();
        assert!(a.big_endian);
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [-2, 300]);
        let a = read_npy_bytes(&npy("<u2", false, "(1,)", &60000u16.to_le_bytes(), 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [60000]);
        let a =
            read_npy_bytes(&npy("<i4", false, "(2, 2)", &le(&[1i32, -2, 3, 4], i32::to_le_bytes), 2), p(), "").unwrap();
        assert_eq!(a.shape(), [2, 2]);
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [1, -2, 3, 4]);
        let a = read_npy_bytes(&npy(">u4", false, "(1,)", &4_000_000_000u32.to_be_bytes(), 3), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [4_000_000_000]);
        let a =
            read_npy_bytes(&npy("<i8", false, "(2,)", &le(&[-5i64, 1 << 40], i64::to_le_bytes), 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [-5, 1 << 40]);
        assert_eq!(a.to_f64_vec(p(), "").unwrap(), [-5.0, (1u64 << 40) as f64]);
        let a = read_npy_bytes(&npy(">i8", false, "(1,)", &(-7i64).to_be_bytes(), 1), p(), "").unwrap();
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [-7]);
        let a = read_npy_bytes(&npy("<u8", false, "(1,)", &u64::MAX.to_le_bytes(), 1), p(), "").unwrap();
        let e = a.to_i64_vec(p(), "").unwrap_err().to_string();
        assert!(e.contains("element 0") && e.contains("18446744073709551615"), "{e}");
        let a = read_npy_bytes(&npy("|b1", false, "(3,)", &[1, 0, 1], 1), p(), "").unwrap();
        assert_eq!(a.dtype, DType::Bool);
        assert_eq!(a.to_i64_vec(p(), "").unwrap(), [1, 0, 1]);
        assert_eq!(a.to_f32_vec(p(), "").unwrap(), [1.0, 0.0, 1.0]);
    }

    #[test]
    fn float_dtypes() {
        let a =
            read_npy_bytes(&npy("<f4", false, "(2,)", &le(&[1.5f32, -2.25], f32::to_le_bytes), 1), p(), "").unwrap();
        assert_eq!(a.to_f32_vec(p(), "").unwrap(), [1.5, -2.25]);
        let e = a.to_i64_vec(p(), "").unwrap_err().to_string();
        assert!(e.contains("float32") && e.contains("expected integers"), "{e}");
        let a =
            read_npy_bytes(&npy(">f4", false, "(2,)", &le(&[1.5f32, -2.25], f32::to_be_bytes), 1), p(), "").unwrap();
        assert_eq!(a.to_f32_vec(p(), "").unwrap(), [1.5, -2.25]);
        assert_eq!(a.clone().into_f32_values(p(), "").unwrap().as_slice(), [1.5, -2.25]);
        let a =
            read_npy_bytes(&npy("<f8", false, "(2,)", &le(&[0.1f64, 1e300], f64::to_le_bytes), 1), p(), "").unwrap();
        assert_eq!(a.to_f64_vec(p(), "").unwrap(), [0.1, 1e300]);
        assert_eq!(a.to_f32_vec(p(), "").unwrap(), [0.1f32, f32::INFINITY]);
        let a = read_npy_bytes(&npy(">f8", false, "(1,)", &0.1f64.to_be_bytes(), 1), p(), "").unwrap();
        assert_eq!(a.to_f64_vec(p(), "").unwrap(), [0.1]);
        // f16: 1.0, -2.0, 65504 (max), smallest subnormal, +inf, 0.5
        let halves = [0x3c00u16, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3800];
        let a = read_npy_bytes(&npy("<f2", false, "(6,)", &le(&halves, u16::to_le_bytes), 1), p(), "").unwrap();
        let v = a.to_f32_vec(p(), "").unwrap();
        assert_eq!(v, [1.0, -2.0, 65504.0, 2f32.powi(-24), f32::INFINITY, 0.5]);
        let a = read_npy_bytes(&npy(">f2", false, "(1,)", &0x3c00u16.to_be_bytes(), 1), p(), "").unwrap();
        assert_eq!(a.to_f64_vec(p(), "").unwrap(), [1.0]);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn string_dtypes() {
        let mut data = Vec::new();
        for s in ["ab", "é€", ""] {
            let mut units: Vec<u32> = s.chars().map(|c| c as u32).collect();
            units.resize(3, 0);
            data.extend(le(&units, u32::to_le_bytes));
        }
        let a = read_npy_bytes(&npy("<U3", false, "(3,)", &data, 1), p(), "").unwrap();
        assert_eq!(a.dtype, DType::Unicode(3));
        assert_eq!(a.to_strings().unwrap(), ["ab", "é€", ""]);
        assert!(a.to_f32_vec(p(), "").is_err());
        let be: Vec<u8> = le(&[0x41u32, 0x42], u32::to_be_bytes);
        let a = read_npy_bytes(&npy(">U2", false, "(1,)", &be, 1), p(), "").unwrap();
        assert_eq!(a.to_strings().unwrap(), ["AB"]);
        let a = read_npy_bytes(&npy("|S3", false, "(2,)", b"ab\0xyz", 1), p(), "").unwrap();
        assert_eq!(a.to_strings().unwrap(), ["ab", "xyz"]);
        let a = read_npy_bytes(&npy("<U1", false, "(1,)", &0xd800u32.to_le_bytes(), 1), p(), "").unwrap();
        assert!(a.to_strings().unwrap_err().to_string().contains("element 0"));
    }

    #[test]
    fn header_details() {
        let bytes = npy("<f4", false, "(2, 3)", &[0; 24], 1);
        let h = parse_header(&bytes, p()).unwrap();
        assert_eq!(h, NpyHeader { dtype: DType::F32, big_endian: false, shape: vec![2, 3], data_offset: 128 });
        assert_eq!(h.data_len(), 24);
        // Python 2 long suffixes, double quotes, scalar shape.
        let bytes = npy("<i8", false, "(3L,)", &[0; 24], 1);
        assert_eq!(parse_header(&bytes, p()).unwrap().shape, [3]);
        let a = read_npy_bytes(&npy("<i8", false, "()", &5i64.to_le_bytes(), 1), p(), "").unwrap();
        assert_eq!((a.len(), a.ndim()), (1, 0));
        // fortran_order True is fine when the layout equals C order.
        assert!(read_npy_bytes(&npy("<i8", true, "(3,)", &[0; 24], 1), p(), "").is_ok());
    }

    #[test]
    fn rejects_fortran_order() {
        let e = read_npy_bytes(&npy("<f4", true, "(2, 3)", &[0; 24], 1), p(), "").unwrap_err().to_string();
        assert!(e.contains("header") && e.contains("fortran_order") && e.contains("np.ascontiguousarray"), "{e}");
    }

    #[test]
    fn rejects_truncated_data() {
        let e = read_npy_bytes(&npy("<f4", false, "(2, 3)", &[0; 20], 1), p(), "").unwrap_err();
        let Error::Format { location, message, .. } = &e else { panic!("{e}") };
        assert_eq!(location, "data");
        assert!(message.contains("24 bytes") && message.contains("only 20"), "{message}");
        let e = read_npy_bytes(&npy("<f4", false, "(2,)", &[0; 4], 1), p(), "array \"scores\"").unwrap_err();
        assert!(e.to_string().contains("array \"scores\", data"), "{e}");
    }

    #[test]
    fn rejects_object_and_unknown_dtypes() {
        let e = read_npy_bytes(&npy("|O", false, "(2,)", &[0; 16], 1), p(), "").unwrap_err().to_string();
        assert!(e.contains("header") && e.contains("pickled"), "{e}");
        for d in ["<c8", "<M8[ns]", "|V8", "<f16", "<x4"] {
            assert!(read_npy_bytes(&npy(d, false, "(1,)", &[0; 16], 1), p(), "").is_err(), "{d}");
        }
    }

    #[test]
    fn rejects_header_garbage() {
        for bytes in [
            b"not numpy at all".to_vec(),
            b"\x93NUMPY".to_vec(),
            b"\x93NUMPY\x09\x00\x10\x00".to_vec(),
            b"\x93NUMPY\x01\x00\xff\x00{'descr'".to_vec(),
            npy("<f4", false, "(2, -3)", &[], 1),
            npy("<f4", false, "(2, 3", &[], 1),
        ] {
            let e = read_npy_bytes(&bytes, p(), "").unwrap_err();
            let Error::Format { location, .. } = &e else { panic!("{e}") };
            assert_eq!(location, "header", "{e}");
        }
        let mut bytes = npy("<f4", false, "(1,)", &[0; 4], 1);
        bytes[12] = b'@';
        assert!(parse_header(&bytes, p()).unwrap_err().to_string().contains("header"));
        let mut nested = b"\x93NUMPY\x01\x00\x00\x01".to_vec();
        nested.extend([b'('; 256]);
        assert!(parse_header(&nested, p()).is_err());
    }

    #[test]
    fn reads_npy_file_and_maps_large_f32() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.npy");
        let values: Vec<f32> = (0..100_000).map(|i| i as f32 * 0.5).collect();
        std::fs::write(&path, npy("<f4", false, "(1000, 100)", &le(&values, f32::to_le_bytes), 1)).unwrap();
        let a = read_npy(&path).unwrap();
        assert!(a.is_memory_mapped());
        let v = a.into_f32_values(&path, "").unwrap();
        assert!(v.is_memory_mapped());
        assert_eq!(v.as_slice(), &values[..]);
        assert_eq!(v.clone().into_vec(), values);
        assert!(read_npy(&dir.path().join("missing.npy")).unwrap_err().to_string().contains("missing.npy"));
    }

    fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], deflate: bool) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in members {
            zip.start_file(format!("{name}.npy"), opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn npz_stored_and_deflated() {
        let dir = tempfile::tempdir().unwrap();
        let scores: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let members = [
            ("scores", npy("<f4", false, "(3, 4)", &le(&scores, f32::to_le_bytes), 1)),
            ("ids", npy("<i8", false, "(2,)", &le(&[7i64, 8], i64::to_le_bytes), 1)),
        ];
        for deflate in [false, true] {
            let path = dir.path().join(format!("a{deflate}.npz"));
            write_npz(&path, &members, deflate);
            let mut z = Npz::open(&path).unwrap();
            assert_eq!(z.names(), ["scores", "ids"]);
            assert!(z.contains("scores") && z.contains("ids.npy") && !z.contains("x"));
            let a = z.read("scores").unwrap();
            assert_eq!(a.shape(), [3, 4]);
            assert_eq!(a.into_f32_values(&path, "").unwrap().as_slice(), &scores[..]);
            assert_eq!(z.read("ids.npy").unwrap().to_i64_vec(&path, "").unwrap(), [7, 8]);
            let e = z.read("logits").unwrap_err().to_string();
            assert!(e.contains("array \"logits\"") && e.contains("scores, ids"), "{e}");
        }
        let bad = dir.path().join("bad.npz");
        write_npz(&bad, &[("x", npy("<f4", false, "(3,)", &[0; 8], 1))], true);
        let e = Npz::open(&bad).unwrap().read("x").unwrap_err().to_string();
        assert!(e.contains("array \"x\", data") && e.contains("truncated"), "{e}");
        std::fs::write(&bad, b"garbage").unwrap();
        assert!(Npz::open(&bad).is_err());
    }

    pub(crate) fn safetensors_bytes(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut data: Vec<u8> = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let begin = data.len();
            data.extend(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        let mut h = serde_json::to_vec(&header).unwrap();
        while h.len() & 7 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }

    #[test]
    fn safetensors_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let big: Vec<f32> = (0..300 * 300).map(|i| i as f32).collect();
        let halves = [0x3c00u16, 0xc000];
        std::fs::write(
            &path,
            safetensors_bytes(&[
                ("logits", "F32", &[300, 300], le(&big, f32::to_le_bytes)),
                ("half", "F16", &[1, 2], le(&halves, u16::to_le_bytes)),
                ("b", "BF16", &[1], le(&[0x4000u16], u16::to_le_bytes)),
                ("odd", "F8_E4M3", &[1], vec![0]),
            ]),
        )
        .unwrap();
        let st = SafeTensors::open(&path).unwrap();
        assert_eq!(st.names(), ["b", "half", "logits", "odd"]);
        let a = st.read("logits").unwrap();
        assert_eq!(a.shape(), [300, 300]);
        let v = a.into_f32_values(&path, "").unwrap();
        assert!(v.is_memory_mapped());
        assert_eq!(v.as_slice(), &big[..]);
        assert_eq!(st.read("half").unwrap().to_f32_vec(&path, "").unwrap(), [1.0, -2.0]);
        assert_eq!(st.read("b").unwrap().to_f32_vec(&path, "").unwrap(), [2.0]);
        assert!(st.read("odd").unwrap_err().to_string().contains("unsupported dtype"));
        assert!(st.read("nope").unwrap_err().to_string().contains("b, half, logits, odd"));
    }

    #[test]
    fn safetensors_rejects_bad_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        // Offsets span 8 bytes but shape [3] of F32 needs 12.
        std::fs::write(&path, safetensors_bytes(&[("x", "F32", &[3], vec![0; 8])])).unwrap();
        let e = SafeTensors::open(&path).unwrap_err().to_string();
        assert!(e.contains("tensor \"x\"") && e.contains("needs 12"), "{e}");
        // Offsets past the end of the file.
        let mut bytes = safetensors_bytes(&[("x", "F32", &[3], vec![0; 12])]);
        bytes.truncate(bytes.len() - 4);
        std::fs::write(&path, bytes).unwrap();
        let e = SafeTensors::open(&path).unwrap_err().to_string();
        assert!(e.contains("do not lie within"), "{e}");
        // Header length larger than the file.
        std::fs::write(&path, 1000u64.to_le_bytes()).unwrap();
        assert!(SafeTensors::open(&path).unwrap_err().to_string().contains("header"));
        std::fs::write(&path, b"abc").unwrap();
        assert!(SafeTensors::open(&path).is_err());
    }

    /// `../shared/data` relative to the repository root, or `None` (skip) when
    /// it is missing outside CI. Panics when it is missing and `CI=true`.
    pub(crate) fn shared_data(rel: &str) -> Option<PathBuf> {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(rel);
        if path.exists() {
            return Some(path);
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{} is missing, and CI=true requires the shared reference data", path.display());
        }
        eprintln!("skipping: {} not found", path.display());
        None
    }

    #[test]
    fn real_rater_scores_npz() {
        let Some(path) = shared_data("imagenet/real_rater_scores.npz") else {
            return;
        };
        let mut z = Npz::open(&path).unwrap();
        assert_eq!(z.names(), ["tensor", "info"]);
        let t = z.read("tensor").unwrap();
        assert_eq!((t.dtype, t.shape()), (DType::F64, &[184_962][..]));
        let t = t.to_f64_vec(&path, "").unwrap();
        assert_eq!(t[0], 0.0010162372352512526);
        assert_eq!(t[12345], 0.00019334169827124378);
        assert_eq!(t[184_961], 0.0024233922802656903);
        let info = z.read("info").unwrap();
        assert_eq!((info.dtype, info.shape()), (DType::Unicode(28), &[184_962, 2][..]));
        let info = info.to_strings().unwrap();
        assert_eq!(info[..2], ["ILSVRC2012_val_00041207.JPEG", "556"]);
        assert_eq!(info[2 * 12345..2 * 12345 + 2], ["ILSVRC2012_val_00036815.JPEG", "30"]);
        assert_eq!(info[2 * 184_961 + 1], "753");
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[test]
    fn header_bytes_round_trip() {
        for shape in [vec![3usize], vec![50_000, 1000], vec![0, 5]] {
            let h = header_bytes("<f4", &shape);
            assert_eq!(h.len() % 64, 0);
            let parsed = parse_header(&h, Path::new("x.npy")).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.dtype, DType::F32);
            assert_eq!(parsed.data_offset, h.len());
        }
    }
}
