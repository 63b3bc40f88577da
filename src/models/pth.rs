//! PyTorch checkpoints (`torch.save`'s zip format, the default since
//! PyTorch 1.6) read in Rust: the zip container through the `zip` crate
//! (zip64 included), and the subset of Python's pickle that a saved state
//! dict uses (dicts, OrderedDicts, tuples, numbers, strings, and tensors
//! rebuilt from their storages). libtorch's own unpickler
//! (`torch::pickle_load`) was tried first: it stops at the OrderedDict with
//! `_metadata` that every `model.state_dict()` is, which is how torchvision
//! ships its weights.
//!
//! A checkpoint is a file from outside, so the reader treats it as hostile:
//! no GLOBAL is ever called (the few this reader knows are interpreted,
//! every other is an inert value), every tensor's size, stride and offset is
//! checked against its storage in Rust before libtorch sees it, and what the
//! file can make the reader allocate is bounded by a small multiple of its
//! own size ([`Limits`]): the bytes its entries inflate to, the tensors it
//! materialises, the values a memo may copy, the depth of nesting and the
//! length of the key paths. A file past a limit is an error naming it.
//!
//! What the file holds comes back as (path of dictionary keys joined with
//! '/', tensor); anything else (epochs, optimiser settings) is left out.
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use tch::{Kind, Tensor};

/// How much a checkpoint of `len` bytes may make the reader allocate.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes the zip's entries may inflate to, all together.
    pub entry_bytes: u64,
    /// Bytes of the tensors rebuilt from storages (a stride-0 view of one
    /// element could otherwise expand to any size).
    pub tensor_bytes: u64,
    /// Bytes the pickle's memo may copy (each lookup copies its value).
    pub memo_bytes: u64,
    /// Levels of nested containers.
    pub depth: usize,
    /// Bytes of the key paths handed back.
    pub path_bytes: u64,
}

impl Limits {
    /// Four times the file for its entries and its tensors, sixteen for memo
    /// copies and key paths, each at least a few MiB so that tiny files read;
    /// 64 levels of nesting (a state dict has 2, a training checkpoint ~6).
    pub fn for_file(len: u64) -> Self {
        const MIB: u64 = 1 << 20;
        Self {
            entry_bytes: 4 * len + MIB,
            tensor_bytes: 4 * len + MIB,
            memo_bytes: 16 * len + 16 * MIB,
            depth: 64,
            path_bytes: 16 * len + 16 * MIB,
        }
    }
}

/// A value of the pickle machine.
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage: its element type and the zip entry holding its bytes.
    Storage(Kind, String),
    Tensor(Tensor),
    /// Anything else (objects the weights do not need).
    Other,
}

impl Clone for Value {
    fn clone(&self) -> Self {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Tuple(v) => Value::Tuple(v.clone()),
            Value::List(v) => Value::List(v.clone()),
            Value::Dict(v) => Value::Dict(v.clone()),
            Value::Global(m, n) => Value::Global(m.clone(), n.clone()),
            Value::Storage(k, key) => Value::Storage(*k, key.clone()),
            Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
            Value::Other => Value::Other,
        }
    }
}

/// A value on the stack or in the memo, with what copying it costs and how
/// deeply it nests (kept beside the value so that neither is recomputed).
#[derive(Clone)]
struct Item {
    value: Value,
    /// Levels of containers: 0 for a scalar.
    depth: usize,
    /// Bytes a deep copy allocates, roughly (a fixed cost per value plus its text).
    cost: u64,
}

/// The fixed cost of one value in [`Item::cost`].
const VALUE_COST: u64 = 32;

impl Item {
    fn leaf(value: Value) -> Self {
        let text = match &value {
            Value::Str(s) => s.len(),
            Value::Global(m, n) => m.len() + n.len(),
            Value::Storage(_, key) => key.len(),
            _ => 0,
        };
        Self {
            value,
            depth: 0,
            cost: VALUE_COST + text as u64,
        }
    }
}

fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn ints(v: &Value, what: &str) -> anyhow::Result<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Ok(*n),
                _ => bail!("a tensor's {what} holds a non-integer"),
            })
            .collect(),
        _ => bail!("a tensor's {what} is not a tuple"),
    }
}

/// The most dimensions a tensor may have (libtorch's own limit is 64 too).
const MAX_DIMS: usize = 64;

/// Checks a view `(size, stride, offset)` of a storage of `storage_len`
/// elements: non-negative, no overflow, every element inside the storage.
/// Returns the view's element count.
fn check_view(size: &[i64], stride: &[i64], offset: i64, storage_len: i64) -> anyhow::Result<i64> {
    anyhow::ensure!(
        size.len() == stride.len(),
        "a tensor with {} sizes and {} strides",
        size.len(),
        stride.len()
    );
    anyhow::ensure!(
        size.len() <= MAX_DIMS,
        "a tensor of {} dimensions (at most {MAX_DIMS})",
        size.len()
    );
    anyhow::ensure!(
        offset >= 0,
        "a tensor at a negative storage offset ({offset})"
    );
    if let Some(s) = size.iter().find(|&&s| s < 0) {
        bail!("a tensor of negative size ({s})");
    }
    if let Some(s) = stride.iter().find(|&&s| s < 0) {
        bail!("a tensor with a negative stride ({s})");
    }
    let overflow = || anyhow::anyhow!("a tensor whose size or strides overflow 64 bits");
    let numel = size
        .iter()
        .try_fold(1i64, |n, &s| n.checked_mul(s))
        .ok_or_else(overflow)?;
    if numel == 0 {
        anyhow::ensure!(
            offset <= storage_len,
            "an empty tensor at offset {offset} of a storage of {storage_len} elements"
        );
        return Ok(0);
    }
    let last = size
        .iter()
        .zip(stride)
        .try_fold(offset, |at, (&n, &s)| {
            at.checked_add((n - 1).checked_mul(s)?)
        })
        .ok_or_else(overflow)?;
    anyhow::ensure!(
        last < storage_len,
        "a tensor reaching element {last} of a storage of {storage_len} elements"
    );
    Ok(numel)
}

/// The pickle machine over `data.pkl`, with the archive's storages.
struct Unpickler<'a, R: Read + std::io::Seek> {
    code: &'a [u8],
    at: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<usize, Item>,
    archive: &'a mut Archive<R>,
    prefix: String,
    storages: HashMap<String, Tensor>,
    limits: Limits,
    /// Bytes copied out of the memo so far.
    memo_copied: u64,
    /// Bytes of tensors rebuilt so far.
    tensor_bytes: u64,
}

/// The zip container and how much of it has been inflated.
struct Archive<R: Read + std::io::Seek> {
    zip: zip::ZipArchive<R>,
    inflated: u64,
    limit: u64,
}

impl<R: Read + std::io::Seek> Archive<R> {
    /// An entry's bytes, counted against the inflation limit (an entry's
    /// declared size may lie; what is read is what counts).
    fn entry(&mut self, name: &str) -> anyhow::Result<Vec<u8>> {
        let entry = self
            .zip
            .by_name(name)
            .with_context(|| format!("the archive has no readable {name}"))?;
        let left = self.limit.saturating_sub(self.inflated);
        let mut bytes = Vec::with_capacity(entry.size().min(left) as usize);
        entry
            .take(left + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name} from the archive"))?;
        self.inflated += bytes.len() as u64;
        anyhow::ensure!(
            self.inflated <= self.limit,
            "{name}: the archive's entries inflate past {} bytes, more than a checkpoint of this size can hold",
            self.limit
        );
        Ok(bytes)
    }
}

impl<R: Read + std::io::Seek> Unpickler<'_, R> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let end = self.at.checked_add(n).context("truncated pickle")?;
        let s = self.code.get(self.at..end).context("truncated pickle")?;
        self.at = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> anyhow::Result<usize> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0usize, |a, &b| (a << 8) | b as usize))
    }
    fn line(&mut self) -> anyhow::Result<String> {
        let rest = &self.code[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("truncated pickle")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
    fn text(&mut self, n: usize) -> anyhow::Result<Item> {
        Ok(Item::leaf(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        )))
    }
    fn push(&mut self, value: Value) {
        self.stack.push(Item::leaf(value));
    }
    fn pop(&mut self) -> anyhow::Result<Item> {
        self.stack.pop().context("pickle stack underflow")
    }
    fn pop_mark(&mut self) -> anyhow::Result<Vec<Item>> {
        let mark = self.marks.pop().context("pickle mark missing")?;
        anyhow::ensure!(mark <= self.stack.len(), "pickle mark beyond the stack");
        Ok(self.stack.split_off(mark))
    }

    /// A container made of `items`, one level deeper than the deepest.
    fn container(&self, items: Vec<Item>, make: fn(Vec<Value>) -> Value) -> anyhow::Result<Item> {
        let depth = 1 + items.iter().map(|i| i.depth).max().unwrap_or(0);
        self.check_depth(depth)?;
        let cost = VALUE_COST + items.iter().map(|i| i.cost).sum::<u64>();
        Ok(Item {
            value: make(items.into_iter().map(|i| i.value).collect()),
            depth,
            cost,
        })
    }

    fn check_depth(&self, depth: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            depth <= self.limits.depth,
            "containers nested deeper than {} levels",
            self.limits.depth
        );
        Ok(())
    }

    /// Adds `items` to the dict or list on top of the stack (SETITEM(S),
    /// APPEND(S)); anything else there takes nothing, as the weights need
    /// nothing from objects.
    fn extend_top(&mut self, items: Vec<Item>) -> anyhow::Result<()> {
        let Some(top) = self.stack.last() else {
            bail!("pickle stack underflow");
        };
        let depth = 1 + items.iter().map(|i| i.depth).max().unwrap_or(0);
        let depth = depth.max(top.depth);
        self.check_depth(depth)?;
        let cost: u64 = items.iter().map(|i| i.cost).sum();
        let top = self.stack.last_mut().expect("checked above");
        match &mut top.value {
            Value::Dict(d) => {
                let mut it = items.into_iter().map(|i| i.value);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            Value::List(l) => l.extend(items.into_iter().map(|i| i.value)),
            _ => return Ok(()),
        }
        top.depth = depth;
        top.cost += cost;
        Ok(())
    }

    /// Counts a copy into or out of the memo against the memo limit, before
    /// it is made: each lookup copies its value, so a chain of lookups could
    /// otherwise double a value at every step.
    fn charge_memo(&mut self, cost: u64) -> anyhow::Result<()> {
        self.memo_copied = self.memo_copied.saturating_add(cost);
        anyhow::ensure!(
            self.memo_copied <= self.limits.memo_bytes,
            "the pickle's memo copies more than {} bytes of values, more than a checkpoint of this size holds",
            self.limits.memo_bytes
        );
        Ok(())
    }

    /// A storage's bytes as a flat tensor (read once per storage).
    fn storage(&mut self, kind: Kind, key: &str) -> anyhow::Result<Tensor> {
        if let Some(t) = self.storages.get(key) {
            anyhow::ensure!(
                t.kind() == kind,
                "storage {key} is read as both {:?} and {kind:?}",
                t.kind()
            );
            return Ok(t.shallow_clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let bytes = self.archive.entry(&name)?;
        let element = kind.elt_size_in_bytes();
        anyhow::ensure!(
            bytes.len().is_multiple_of(element),
            "{name}: {} bytes for {kind:?}",
            bytes.len()
        );
        let t = Tensor::f_from_data_size(&bytes, &[(bytes.len() / element) as i64], kind)
            .with_context(|| format!("{name}: not a storage of {kind:?}"))?;
        self.storages.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
    /// checked before libtorch sees it.
    fn rebuild_tensor(&mut self, args: &[Value]) -> anyhow::Result<Value> {
        anyhow::ensure!(
            args.len() >= 4,
            "_rebuild_tensor takes (storage, offset, size, stride, ...), got {} arguments",
            args.len()
        );
        let Value::Storage(kind, key) = &args[0] else {
            bail!("a tensor without its storage");
        };
        let Value::Int(offset) = args[1] else {
            bail!("a tensor whose storage offset is not an integer");
        };
        let (size, stride) = (ints(&args[2], "size")?, ints(&args[3], "stride")?);
        let flat = self.storage(*kind, key)?;
        let numel = check_view(&size, &stride, offset, flat.numel() as i64)?;
        self.tensor_bytes += numel as u64 * kind.elt_size_in_bytes() as u64;
        anyhow::ensure!(
            self.tensor_bytes <= self.limits.tensor_bytes,
            "the tensors rebuilt from storages take more than {} bytes, more than a checkpoint of this size holds \
             (views that repeat elements, stride 0?)",
            self.limits.tensor_bytes
        );
        let view = flat
            .f_as_strided(&size, &stride, offset)
            .and_then(|t| t.f_contiguous())
            .context("rebuilding a tensor")?;
        Ok(Value::Tensor(view))
    }

    fn reduce(&mut self, callable: Value, args: Value) -> anyhow::Result<Value> {
        let Value::Global(module, name) = callable else {
            return Ok(Value::Other);
        };
        let Value::Tuple(args) = args else {
            return Ok(Value::Other);
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Value::Dict(Vec::new()),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.rebuild_tensor(&args)?
            }
            ("torch._utils", "_rebuild_parameter") => {
                args.into_iter().next().unwrap_or(Value::Other)
            }
            _ => Value::Other,
        })
    }

    fn run(&mut self) -> anyhow::Result<Value> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'}' => self.stack.push(Item {
                    depth: 1,
                    ..Item::leaf(Value::Dict(Vec::new()))
                }),
                b']' => self.stack.push(Item {
                    depth: 1,
                    ..Item::leaf(Value::List(Vec::new()))
                }),
                b')' => self.stack.push(Item {
                    depth: 1,
                    ..Item::leaf(Value::Tuple(Vec::new()))
                }),
                b'(' => self.marks.push(self.stack.len()),
                b'X' | b'T' | b'B' => {
                    let n = self.uint(4)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' | b'C' => {
                    let n = self.uint(1)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8d | 0x8e => {
                    let n = self.uint(8)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.push(Value::Int(v));
                }
                0x8a => {
                    let n = self.uint(1)?;
                    let bytes = self.take(n)?.to_vec();
                    let mut v: i64 = 0;
                    for (i, b) in bytes.iter().enumerate().take(8) {
                        v |= (*b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v));
                }
                b'G' => {
                    let b: [u8; 8] = self.take(8)?.try_into().expect("8 bytes taken");
                    self.push(Value::Float(f64::from_be_bytes(b)));
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.container(items, Value::Tuple)?;
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.container(items, Value::List)?;
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    anyhow::ensure!(self.stack.len() >= n, "pickle stack underflow");
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.container(items, Value::Tuple)?;
                    self.stack.push(v);
                }
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len(),
                    };
                    let cost = self.stack.last().context("pickle stack underflow")?.cost;
                    self.charge_memo(cost)?;
                    let top = self.stack.last().expect("checked above").clone();
                    self.memo.insert(i, top);
                }
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })?;
                    let cost = self.memo.get(&i).context("pickle memo miss")?.cost;
                    self.charge_memo(cost)?;
                    let v = self.memo[&i].clone();
                    self.stack.push(v);
                }
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.push(Value::Global(module, name));
                }
                0x93 => {
                    let (name, module) = (self.pop()?.value, self.pop()?.value);
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        bail!("STACK_GLOBAL without names");
                    };
                    self.push(Value::Global(module, name));
                }
                b'R' => {
                    let (args, callable) = (self.pop()?, self.pop()?.value);
                    // The result is at most as deep and as costly as its
                    // arguments (a parameter hands its tensor back).
                    let (depth, cost) = (args.depth, args.cost + VALUE_COST);
                    let value = self.reduce(callable, args.value)?;
                    self.stack.push(Item { value, depth, cost });
                }
                0x81 => {
                    self.pop()?;
                    self.pop()?;
                    self.push(Value::Other);
                }
                b'Q' => {
                    let pid = self.pop()?.value;
                    let v = match pid {
                        Value::Tuple(items) => match items.as_slice() {
                            [Value::Str(tag), Value::Global(_, class), Value::Str(key), ..]
                                if tag == "storage" =>
                            {
                                let kind = storage_kind(class).with_context(|| {
                                    format!("storage type {class} is not supported")
                                })?;
                                Value::Storage(kind, key.clone())
                            }
                            _ => Value::Other,
                        },
                        _ => Value::Other,
                    };
                    self.push(v);
                }
                b's' => {
                    let (v, k) = (self.pop()?, self.pop()?);
                    self.extend_top(vec![k, v])?;
                }
                b'u' | b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v])?;
                }
                // BUILD: an object's state (a state dict's `_metadata`): not needed.
                b'b' => {
                    self.pop()?;
                }
                b'.' => return Ok(self.pop()?.value),
                other => bail!("pickle opcode 0x{other:02x} is not supported"),
            }
        }
    }
}

/// Dictionaries' tensors by path (keys joined with '/'), the paths' bytes
/// counted against `budget`.
fn flatten(
    value: Value,
    prefix: &str,
    out: &mut Vec<(String, Tensor)>,
    budget: &mut u64,
) -> anyhow::Result<()> {
    match value {
        Value::Tensor(t) => {
            *budget = budget.checked_sub(prefix.len() as u64).context(
                "the checkpoint's key paths are longer than a checkpoint of this size holds",
            )?;
            out.push((prefix.to_string(), t));
        }
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}/{key}")
                };
                flatten(v, &path, out, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every tensor of the bytes of a file written by `torch.save`, by its path
/// of keys; a damaged or hostile file is an error, never a panic.
pub fn read_bytes(file: &[u8]) -> anyhow::Result<Vec<(String, Tensor)>> {
    let limits = Limits::for_file(file.len() as u64);
    let zip = zip::ZipArchive::new(std::io::Cursor::new(file)).context(
        "not a zip archive (a checkpoint from before PyTorch 1.6? convert it with scripts/convert_pth.py, \
         or load and save it again with torch.save)",
    )?;
    // torch.save writes `<name>/data.pkl` beside `<name>/data/<key>`.
    let pickle_name = zip
        .file_names()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| (n.matches('/').count(), n.to_string()))
        .context("the archive holds no data.pkl (not a torch.save file)")?
        .to_string();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut archive = Archive {
        zip,
        inflated: 0,
        limit: limits.entry_bytes,
    };
    let code = archive.entry(&pickle_name)?;
    let mut machine = Unpickler {
        code: &code,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        archive: &mut archive,
        prefix,
        storages: HashMap::new(),
        limits,
        memo_copied: 0,
        tensor_bytes: 0,
    };
    let value = machine.run()?;
    let mut out = Vec::new();
    let mut budget = limits.path_bytes;
    flatten(value, "", &mut out, &mut budget)?;
    Ok(out)
}

/// Every tensor of a file written by `torch.save`, by its path of keys.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    std::fs::read(path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| read_bytes(&bytes))
        .with_context(|| format!("reading the PyTorch checkpoint {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_checked_against_their_storage() {
        assert_eq!(check_view(&[2, 3], &[3, 1], 0, 6).unwrap(), 6);
        assert!(check_view(&[2, 3], &[3, 1], 1, 6).is_err());
        assert_eq!(check_view(&[0, 3], &[3, 1], 6, 6).unwrap(), 0);
        assert_eq!(check_view(&[], &[], 5, 6).unwrap(), 1);
        for (size, stride, offset) in [
            (vec![-1], vec![1], 0),
            (vec![2], vec![-1], 1),
            (vec![2], vec![1], -1),
            (vec![2, 2], vec![1], 0),
            (vec![1 << 40, 1 << 40], vec![1, 1], 0),
            (vec![3], vec![i64::MAX], 0),
        ] {
            assert!(
                check_view(&size, &stride, offset, 6).is_err(),
                "{size:?} {stride:?} {offset}"
            );
        }
        // Stride 0 stays inside the storage: its expansion is bounded by
        // the reader's tensor limit instead.
        assert_eq!(check_view(&[1 << 30], &[0], 0, 1).unwrap(), 1 << 30);
    }
}
