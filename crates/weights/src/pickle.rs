//! A minimal pickle reader for PyTorch checkpoints that never executes code.
//!
//! Only the opcodes `torch.save` emits (protocol 2, plus the few protocol 3-4
//! opcodes that cost nothing: `FRAME`, `STACK_GLOBAL`, `MEMOIZE`, the byte
//! strings) are understood. Globals are *recognised*, never imported: the
//! reader knows `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter` (and `_rebuild_parameter_with_state`),
//! the storage classes `torch.FloatStorage` ... `torch.BoolStorage` and
//! `torch.storage.UntypedStorage`, and a few plain-data classes that training
//! scripts store next to the weights: `argparse.Namespace`, numpy scalars and
//! dtypes (`numpy.core.multiarray.scalar`, `numpy.dtype`, with the
//! `_codecs.encode` their protocol-2 pickles use). Those become opaque
//! [`Value::Object`]s; nothing is ever imported or called. Any other global
//! (`os.system`, `builtins.eval`, ...) is an [`Error::ForbiddenGlobal`].
//!
//! [`unpickle_prefix`] decodes one pickle at the start of a byte string and
//! says where it ended, for the legacy (pre-1.6) format, which is several
//! pickles in a row.
//!
//! The memo holds copies, not shared references: a container stored in the
//! memo is copied again into it when it leaves the stack complete, so a
//! checkpoint that holds the same dict twice (`{"student": sd, "teacher": sd}`)
//! reads both in full. (Only a container fetched from the memo while it is
//! still being built, i.e. one that contains itself, is seen incomplete.) Hostile pickles are bounded: nesting deeper than 512 levels,
//! more than 2^22 values copied out of the memo, or more than 2^26 values on
//! the stack or in the memo are errors, as is every length field that points
//! past the end of the data.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::DType;

/// Most values a pickle may push on the stack or store in the memo.
const MAX_ITEMS: usize = 1 << 26;

/// Deepest nesting of containers accepted (deeper trees could overflow the
/// native stack when dropped or cloned).
const MAX_NESTING: u32 = 512;

/// Most values (counting every element of every container) that memo fetches
/// and `DUP` may copy in total: the memo holds copies, not shared references,
/// so this bounds the work a pickle that fetches a big container many times can cause.
const MAX_COPIED: u64 = 1 << 22;

/// A Python global this reader recognises.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter` or `_rebuild_parameter_with_state`.
    RebuildParameter,
    /// A typed storage class such as `torch.FloatStorage`.
    Storage(DType),
    /// `torch.storage.UntypedStorage` (bytes).
    UntypedStorage,
    /// A plain-data class or function whose result is kept opaque
    /// (`argparse.Namespace`, numpy scalars and dtypes, `_codecs.encode`).
    Opaque(&'static str),
}

/// A reference to a storage: the zip member `data/<key>` of `numel` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Element type of the storage.
    pub dtype: DType,
    /// Name of the member under `data/`.
    pub key: String,
    /// Device it was saved from (`cpu`, `cuda:0`); informational.
    pub location: String,
    /// Number of elements.
    pub numel: usize,
}

/// A view of a storage, as built by `_rebuild_tensor_v2`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub strides: Vec<usize>,
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A larger integer (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (also `OrderedDict`), in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A recognised global (a class or function, not called).
    Global(Global),
    /// A storage reference (a persistent id).
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
    /// An opaque object (`argparse.Namespace`, a numpy scalar); its state is dropped.
    Object(String),
}

impl Value {
    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Object(_) => "object",
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn recognise(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            Global::RebuildParameter
        }
        ("torch", "FloatStorage") => Global::Storage(DType::F32),
        ("torch", "HalfStorage") => Global::Storage(DType::F16),
        ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
        ("torch", "DoubleStorage") => Global::Storage(DType::F64),
        ("torch", "LongStorage") => Global::Storage(DType::I64),
        ("torch", "IntStorage") => Global::Storage(DType::I32),
        ("torch", "ShortStorage") => Global::Storage(DType::I16),
        ("torch", "CharStorage") => Global::Storage(DType::I8),
        ("torch", "ByteStorage") => Global::Storage(DType::U8),
        ("torch", "BoolStorage") => Global::Storage(DType::Bool),
        ("torch.storage", "UntypedStorage") | ("torch", "UntypedStorage") => Global::UntypedStorage,
        ("argparse", "Namespace") => Global::Opaque("argparse.Namespace"),
        ("numpy.core.multiarray", "scalar") | ("numpy._core.multiarray", "scalar") => Global::Opaque("numpy scalar"),
        ("numpy", "dtype") => Global::Opaque("numpy.dtype"),
        ("_codecs", "encode") => Global::Opaque("bytes"),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
struct Meta {
    depth: u32,
    weight: u64,
}

enum Slot {
    /// A value, its nesting depth (0 for scalars) and its size in values, and
    /// the memo keys it was stored under (updated when it leaves the stack).
    Value(Value, Meta, Vec<u32>),
    Mark,
}

struct Machine<'a> {
    /// Position of `bytes` in the file, for error messages.
    base: usize,
    bytes: &'a [u8],
    pos: usize,
    op_pos: usize,
    path: &'a Path,
    stack: Vec<Slot>,
    memo: HashMap<u32, (Value, Meta)>,
    /// Memo keys whose value is still on the stack, and its stack index.
    live: HashMap<u32, usize>,
    /// Deepest value popped by the current opcode, and the total size popped.
    popped: Meta,
    /// Values copied so far by memo fetches and DUP.
    copied: u64,
}

/// Decodes the pickle `bytes` (the `data.pkl` member of `path`, named in
/// errors); bytes after the STOP opcode are an error.
pub fn unpickle(bytes: &[u8], path: &Path) -> Result<Value> {
    let (v, end) = unpickle_prefix(bytes, path, 0)?;
    if end != bytes.len() {
        return Err(Error::format(
            path,
            format!("pickle, byte {end}"),
            format!("{} bytes follow the end of the pickle", bytes.len() - end),
        ));
    }
    Ok(v)
}

/// Decodes one pickle that starts at `bytes[0]`; returns the value and the
/// position just after its STOP opcode. Error positions are reported as
/// `base + offset` (the pickle's place in the whole file).
pub fn unpickle_prefix(bytes: &[u8], path: &Path, base: usize) -> Result<(Value, usize)> {
    let mut m = Machine {
        base,
        bytes,
        pos: 0,
        op_pos: 0,
        path,
        stack: Vec::new(),
        memo: HashMap::new(),
        live: HashMap::new(),
        popped: Meta { depth: 0, weight: 0 },
        copied: 0,
    };
    let v = m.run()?;
    Ok((v, m.pos))
}

impl<'a> Machine<'a> {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::format(self.path, format!("pickle, byte {}", self.base + self.op_pos), message)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.err(format!(
                "the pickle ends early: {n} bytes needed at byte {}, but it is {} bytes long",
                self.pos,
                self.bytes.len()
            )));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("the pickle ends inside a GLOBAL name (no newline)"));
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.err("a GLOBAL name is not UTF-8"))?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    /// Pushes `v`; a container is one level deeper than anything popped by this opcode.
    fn push(&mut self, v: Value) -> Result<()> {
        let scalar = matches!(
            v,
            Value::None
                | Value::Bool(_)
                | Value::Int(_)
                | Value::BigInt(_)
                | Value::Float(_)
                | Value::Str(_)
                | Value::Bytes(_)
                | Value::Global(_)
                | Value::Object(_)
        );
        let meta = if scalar {
            Meta { depth: 0, weight: 1 }
        } else {
            Meta { depth: self.popped.depth + 1, weight: self.popped.weight.saturating_add(1) }
        };
        self.push_d(v, meta)
    }

    fn push_d(&mut self, v: Value, meta: Meta) -> Result<()> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(self.err("the pickle stack is too deep"));
        }
        if meta.depth > MAX_NESTING {
            return Err(self.err(format!("values nested more than {MAX_NESTING} levels deep")));
        }
        self.stack.push(Slot::Value(v, meta, Vec::new()));
        Ok(())
    }

    /// A value leaves the stack: the memo entries made from it get its final state.
    fn finish(&mut self, v: &Value, m: Meta, keys: Vec<u32>) -> Result<()> {
        for k in keys {
            self.live.remove(&k);
            self.count_copy(m)?;
            self.memo.insert(k, (v.clone(), m));
        }
        Ok(())
    }

    /// Counts a copy of `meta.weight` values against [`MAX_COPIED`].
    fn count_copy(&mut self, meta: Meta) -> Result<()> {
        self.copied = self.copied.saturating_add(meta.weight);
        if self.copied > MAX_COPIED {
            return Err(self.err(format!("the pickle fetches more than {MAX_COPIED} values from its memo")));
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Slot::Value(v, m, keys)) => {
                self.finish(&v, m, keys)?;
                self.popped.depth = self.popped.depth.max(m.depth);
                self.popped.weight = self.popped.weight.saturating_add(m.weight);
                Ok(v)
            }
            Some(Slot::Mark) => Err(self.err("expected a value on the stack, found a MARK")),
            None => Err(self.err("the stack is empty")),
        }
    }

    /// The value on top of the stack, to be modified in place: its depth
    /// grows to hold what this opcode popped.
    fn top_mut(&mut self) -> Result<&mut Value> {
        let popped = self.popped;
        if popped.depth >= MAX_NESTING {
            return Err(self.err(format!("values nested more than {MAX_NESTING} levels deep")));
        }
        match self.stack.last_mut() {
            Some(Slot::Value(v, m, _)) => {
                m.depth = m.depth.max(popped.depth + 1);
                m.weight = m.weight.saturating_add(popped.weight);
                Ok(v)
            }
            Some(Slot::Mark) => Err(Error::format(
                self.path,
                format!("pickle, byte {}", self.base + self.op_pos),
                "expected a value on the stack, found a MARK",
            )),
            None => {
                Err(Error::format(self.path, format!("pickle, byte {}", self.base + self.op_pos), "the stack is empty"))
            }
        }
    }

    /// Pops everything down to the last MARK (and the MARK).
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.err("no MARK on the stack"));
        };
        let mut popped = self.popped;
        let slots: Vec<Slot> = self.stack.drain(m..).skip(1).collect();
        let mut items = Vec::with_capacity(slots.len());
        for s in slots {
            if let Slot::Value(v, m, keys) = s {
                self.finish(&v, m, keys)?;
                popped.depth = popped.depth.max(m.depth);
                popped.weight = popped.weight.saturating_add(m.weight);
                items.push(v);
            }
        }
        self.popped = popped;
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let meta = match self.stack.last() {
            Some(Slot::Value(_, m, _)) => *m,
            _ => return Err(self.err("PUT with no value on the stack")),
        };
        self.count_copy(meta)?;
        if self.memo.len() >= MAX_ITEMS {
            return Err(self.err("the memo is too large"));
        }
        let v = match self.stack.last_mut() {
            Some(Slot::Value(v, m, keys)) => {
                if keys.len() >= 16 {
                    return Err(Error::format(
                        self.path,
                        format!("pickle, byte {}", self.base + self.op_pos),
                        "one value stored in the memo more than 16 times",
                    ));
                }
                keys.push(key);
                (v.clone(), *m)
            }
            _ => return Err(self.err("PUT with no value on the stack")),
        };
        self.memo.insert(key, v);
        self.live.insert(key, self.stack.len() - 1);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        // A value still on the stack is copied in its current state.
        if let Some(&i) = self.live.get(&key) {
            if let Some(Slot::Value(_, m, _)) = self.stack.get(i) {
                let m = *m;
                self.count_copy(m)?;
                if let Some(Slot::Value(v, _, _)) = self.stack.get(i) {
                    let v = v.clone();
                    return self.push_d(v, m);
                }
            }
        }
        let meta =
            self.memo.get(&key).map(|(_, m)| *m).ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.count_copy(meta)?;
        let (v, m) =
            self.memo.get(&key).cloned().ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.push_d(v, m)
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        match recognise(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => Err(Error::ForbiddenGlobal {
                path: self.path.to_path_buf(),
                offset: self.base + self.op_pos,
                name: format!("{module}.{name}"),
            }),
        }
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> Result<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of values"));
        }
        let target = self.top_mut()?;
        let Value::Dict(items) = target else {
            let t = target.type_name();
            return Err(self.err(format!("SETITEM(S) on a {t}, expected a dict")));
        };
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(slot) = items.iter_mut().find(|(old, _)| *old == k) {
                slot.1 = v;
            } else {
                items.push((k, v));
            }
        }
        Ok(())
    }

    fn append(&mut self, values: Vec<Value>) -> Result<()> {
        let target = self.top_mut()?;
        let Value::List(items) = target else {
            let t = target.type_name();
            return Err(self.err(format!("APPEND(S) on a {t}, expected a list")));
        };
        items.extend(values);
        Ok(())
    }

    fn usize_arg(&self, v: &Value, what: &str) -> Result<usize> {
        match v {
            Value::Int(i) => usize::try_from(*i).map_err(|_| self.err(format!("{what} is {i}, expected >= 0"))),
            other => Err(self.err(format!("{what} is a {}, expected an int", other.type_name()))),
        }
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        match v {
            Value::Tuple(items) | Value::List(items) => items.iter().map(|d| self.usize_arg(d, what)).collect(),
            other => Err(self.err(format!("{what} is a {}, expected a tuple of ints", other.type_name()))),
        }
    }

    fn call(&mut self, func: Value, args: Value) -> Result<Value> {
        let Value::Tuple(args) = args else {
            return Err(self.err(format!("call arguments are a {}, expected a tuple", args.type_name())));
        };
        let Value::Global(g) = func else {
            return Err(self.err(format!("calling a {}, expected a known class or function", func.type_name())));
        };
        match g {
            Global::OrderedDict => match args.as_slice() {
                [] => Ok(Value::Dict(Vec::new())),
                [Value::List(pairs)] | [Value::Tuple(pairs)] => {
                    let mut items = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        match p {
                            Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                                items.push((kv[0].clone(), kv[1].clone()))
                            }
                            _ => return Err(self.err("OrderedDict argument is not a list of pairs")),
                        }
                    }
                    Ok(Value::Dict(items))
                }
                _ => Err(self.err("OrderedDict called with unexpected arguments")),
            },
            Global::RebuildTensorV2 => {
                if args.len() < 4 {
                    return Err(self.err(format!("_rebuild_tensor_v2 takes at least 4 arguments, got {}", args.len())));
                }
                let Value::Storage(storage) = &args[0] else {
                    return Err(self.err(format!(
                        "_rebuild_tensor_v2: the first argument is a {}, expected a storage",
                        args[0].type_name()
                    )));
                };
                let offset = self.usize_arg(&args[1], "_rebuild_tensor_v2 storage_offset")?;
                let shape = self.usize_tuple(&args[2], "_rebuild_tensor_v2 size")?;
                let strides = self.usize_tuple(&args[3], "_rebuild_tensor_v2 stride")?;
                if shape.len() != strides.len() {
                    return Err(self.err(format!(
                        "_rebuild_tensor_v2: size {shape:?} and stride {strides:?} have different lengths"
                    )));
                }
                Ok(Value::Tensor(TensorRef { storage: storage.clone(), offset, shape, strides }))
            }
            Global::RebuildParameter => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                Some(other) => {
                    Err(self.err(format!("_rebuild_parameter: the data is a {}, expected a tensor", other.type_name())))
                }
                None => Err(self.err("_rebuild_parameter called without arguments")),
            },
            Global::Opaque(what) => Ok(Value::Object(what.into())),
            Global::Storage(_) | Global::UntypedStorage => {
                Err(self.err("a storage class is called directly; storages must be persistent ids"))
            }
        }
    }

    fn persistent(&mut self, pid: Value) -> Result<Value> {
        let Value::Tuple(items) = pid else {
            return Err(self.err(format!("persistent id is a {}, expected a tuple", pid.type_name())));
        };
        match items.as_slice() {
            // Zip format: 5 items; legacy format: a sixth, the view metadata (None for whole storages).
            [Value::Str(tag), Value::Global(cls), Value::Str(key), Value::Str(location), numel, rest @ ..]
                if tag == "storage" && (rest.is_empty() || matches!(rest, [Value::None])) =>
            {
                let dtype = match cls {
                    Global::Storage(d) => *d,
                    Global::UntypedStorage => DType::U8,
                    other => return Err(self.err(format!("persistent id names {other:?}, expected a storage class"))),
                };
                let numel = self.usize_arg(numel, "storage size")?;
                Ok(Value::Storage(StorageRef { dtype, key: key.clone(), location: location.clone(), numel }))
            }
            _ => Err(self.err("persistent id is not ('storage', storage_type, key, location, numel)")),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_pos = self.pos;
            self.popped = Meta { depth: 0, weight: 0 };
            let op = self.arr::<1>()?[0];
            match op {
                0x80 => {
                    let proto = self.arr::<1>()?[0];
                    if proto > 5 {
                        return Err(self.err(format!("pickle protocol {proto} is not supported")));
                    }
                }
                0x95 => {
                    self.arr::<8>()?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(&m, &n)?,
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'q' => {
                    let k = self.arr::<1>()?[0];
                    self.memo_put(u32::from(k))?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.arr::<4>()?);
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| self.err("the memo is too large"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.arr::<1>()?[0];
                    self.memo_get(u32::from(k))?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.arr::<4>()?);
                    self.memo_get(k)?;
                }
                b'(' => {
                    if self.stack.len() >= MAX_ITEMS {
                        return Err(self.err("the pickle stack is too deep"));
                    }
                    self.stack.push(Slot::Mark);
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()))?;
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.arr::<4>()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.arr::<1>()?[0];
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arr::<2>()?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.arr::<1>()?[0])
                    } else {
                        let n = i32::from_le_bytes(self.arr::<4>()?);
                        usize::try_from(n).map_err(|_| self.err("LONG4 with a negative length"))?
                    };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut a = [fill; 8];
                        a[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::BigInt(b.to_vec())
                    };
                    self.push(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.arr::<8>()?);
                    self.push(Value::Float(v))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(self.arr::<4>()?) as usize,
                        0x8c => usize::from(self.arr::<1>()?[0]),
                        _ => usize::try_from(u64::from_le_bytes(self.arr::<8>()?)).unwrap_or(usize::MAX),
                    };
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("a string is not valid UTF-8"))?.to_string();
                    self.push(Value::Str(s))?;
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => usize::from(self.arr::<1>()?[0]),
                        b'B' => u32::from_le_bytes(self.arr::<4>()?) as usize,
                        _ => usize::try_from(u64::from_le_bytes(self.arr::<8>()?)).unwrap_or(usize::MAX),
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = match cls {
                        Value::Global(Global::OrderedDict) | Value::Global(Global::Opaque(_)) => {
                            self.call(cls, args)?
                        }
                        other => {
                            return Err(self.err(format!("NEWOBJ of a {}, expected a known class", other.type_name())))
                        }
                    };
                    self.push(v)?;
                }
                b'b' => {
                    let _state = self.pop()?;
                    let target = self.top_mut()?;
                    if !matches!(target, Value::Dict(_) | Value::Object(_) | Value::Tensor(_)) {
                        let t = target.type_name();
                        return Err(self.err(format!("BUILD on a {t}, expected a dict or an object")));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.push(v)?;
                }
                b'0' => match self.stack.pop() {
                    Some(Slot::Value(v, m, keys)) => self.finish(&v, m, keys)?,
                    Some(Slot::Mark) => {}
                    None => return Err(self.err("POP on an empty stack")),
                },
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let meta = match self.stack.last() {
                        Some(Slot::Value(_, m, _)) => *m,
                        _ => return Err(self.err("DUP with no value on the stack")),
                    };
                    self.count_copy(meta)?;
                    let v = match self.stack.last() {
                        Some(Slot::Value(v, _, _)) => v.clone(),
                        _ => return Err(self.err("DUP with no value on the stack")),
                    };
                    self.push_d(v, meta)?;
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                other => {
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: &[u8]) -> Result<Value> {
        unpickle(b, Path::new("x.pth"))
    }

    #[test]
    fn dict_of_ints_and_strings() {
        // {'a': 1, 'b': [2, 'c']} with protocol 2.
        let b =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02X\x01\x00\x00\x00cq\x04eu.";
        let v = p(b).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.get("b"), Some(&Value::List(vec![Value::Int(2), Value::Str("c".into())])));
    }

    #[test]
    fn forbidden_global_is_named() {
        let b = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let e = p(b).unwrap_err().to_string();
        assert!(e.contains("os.system") && e.contains("x.pth"), "{e}");
        let b = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let e = p(b).unwrap_err().to_string();
        assert!(e.contains("builtins.eval"), "{e}");
    }

    #[test]
    fn malformed_pickles_are_errors() {
        for b in [&b""[..], b"\x80", b"\x80\x02", b"}(K\x01u", b"s.", b"h\x05.", b"\xff", b"X\xff\xff\xff\xff", b"(."] {
            assert!(p(b).is_err(), "{b:?}");
        }
        let e = p(b"\x80\x02}K\x01").unwrap_err().to_string();
        assert!(e.contains("ends early") && e.contains("byte 5"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = vec![b']'; 100_000];
        b.extend(std::iter::repeat_n(b'a', 99_999));
        b.push(b'.');
        let e = p(&b).unwrap_err().to_string();
        assert!(e.contains("nested"), "{e}");
        // The same through the memo and tuples.
        let mut b = b"]q\x00".to_vec();
        for _ in 0..2000 {
            b.extend_from_slice(b"h\x00\x85q\x00");
        }
        b.push(b'.');
        assert!(p(&b).unwrap_err().to_string().contains("nested"));
        // Doubling a tuple through the memo: bounded work, then an error.
        let mut b = b"]q\x00".to_vec();
        for _ in 0..200 {
            b.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        b.push(b'.');
        let e = p(&b).unwrap_err().to_string();
        assert!(e.contains("memo") || e.contains("nested"), "{e}");
        let mut ok = vec![b']'; 100];
        ok.extend(std::iter::repeat_n(b'a', 99));
        ok.push(b'.');
        p(&ok).unwrap();
    }

    #[test]
    fn a_shared_container_is_read_in_full_both_times() {
        // {'a': d, 'b': d} with d = {'k': 1}: d is fetched from the memo while still on the stack.
        let b =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01}q\x02(X\x01\x00\x00\x00kq\x03K\x01uX\x01\x00\x00\x00bq\x04h\x02u.";
        let v = p(b).unwrap();
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))]);
        assert_eq!((v.get("a"), v.get("b")), (Some(&d), Some(&d)));
        // [d, d] with d = {'k': 7}: d is fetched after it left the stack.
        let b = b"\x80\x02]q\x00}q\x01(X\x01\x00\x00\x00kq\x02K\x07uah\x01a.";
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(7))]);
        assert_eq!(p(b).unwrap(), Value::List(vec![d.clone(), d]));
        // Trailing bytes after STOP are an error for a whole-file pickle.
        assert!(p(b"N.N").unwrap_err().to_string().contains("follow the end"));
    }

    #[test]
    fn long1_decodes_negative_and_large() {
        assert_eq!(p(b"\x8a\x02\xff\xfe.").unwrap(), Value::Int(-257));
        assert_eq!(p(b"\x8a\x01\x80.").unwrap(), Value::Int(-128));
        assert_eq!(p(b"\x8a\x00.").unwrap(), Value::Int(0));
    }
}
