//! PyTorch checkpoints (`torch.save`'s zip format, the default since
//! PyTorch 1.6) read in Rust: the zip's entries, and the subset of Python's
//! pickle that a saved state dict uses (dicts, OrderedDicts, tuples, numbers,
//! strings, and tensors rebuilt from their storages). libtorch's own
//! unpickler (`torch::pickle_load`) was tried first: it stops at the
//! OrderedDict with `_metadata` that every `model.state_dict()` is, which is
//! how torchvision ships its weights.
//!
//! What the file holds comes back as (path of dictionary keys joined with
//! '/', tensor); anything else (epochs, optimiser settings) is left out.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use tch::{Kind, Tensor};

/// A stored file of the zip: where its bytes lie.
struct Entry {
    start: usize,
    len: usize,
}

fn u16_at(b: &[u8], i: usize) -> anyhow::Result<usize> {
    let s = b.get(i..i + 2).context("truncated zip")?;
    Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
}

fn u32_at(b: &[u8], i: usize) -> anyhow::Result<usize> {
    let s = b.get(i..i + 4).context("truncated zip")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// The zip's stored entries by name (torch.save stores, never compresses).
fn zip_entries(b: &[u8]) -> anyhow::Result<HashMap<String, Entry>> {
    // The end-of-central-directory record lies within the last 64 KiB + 22 bytes.
    let lowest = b.len().saturating_sub(65_557);
    let end = (lowest..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .context("not a zip archive (a checkpoint from before PyTorch 1.6? convert it with scripts/convert_pth.py, or load and save it again with torch.save)")?;
    let count = u16_at(b, end + 10)?;
    let mut at = u32_at(b, end + 16)?;
    let mut entries = HashMap::new();
    for _ in 0..count {
        anyhow::ensure!(
            u32_at(b, at)? == 0x0201_4b50,
            "damaged zip central directory"
        );
        let method = u16_at(b, at + 10)?;
        let size = u32_at(b, at + 20)?;
        let (name_len, extra_len, comment_len) = (
            u16_at(b, at + 28)?,
            u16_at(b, at + 30)?,
            u16_at(b, at + 32)?,
        );
        let local = u32_at(b, at + 42)?;
        let name = String::from_utf8_lossy(
            b.get(at + 46..at + 46 + name_len)
                .context("truncated zip")?,
        )
        .into_owned();
        anyhow::ensure!(
            size != 0xffff_ffff && local != 0xffff_ffff,
            "{name}: a zip64 entry (a checkpoint over 4 GB) is not supported"
        );
        anyhow::ensure!(
            method == 0,
            "{name}: compressed zip entries are not supported"
        );
        anyhow::ensure!(u32_at(b, local)? == 0x0403_4b50, "damaged zip entry {name}");
        let start = local + 30 + u16_at(b, local + 26)? + u16_at(b, local + 28)?;
        anyhow::ensure!(start + size <= b.len(), "truncated zip entry {name}");
        entries.insert(name, Entry { start, len: size });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
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

fn ints(v: &Value) -> anyhow::Result<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Ok(*n),
                _ => bail!("a tensor's size or stride holds a non-integer"),
            })
            .collect(),
        _ => bail!("a tensor's size or stride is not a tuple"),
    }
}

/// The pickle machine over `data.pkl`, with the archive's storages.
struct Unpickler<'a> {
    code: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    file: &'a [u8],
    entries: &'a HashMap<String, Entry>,
    prefix: String,
    storages: HashMap<String, Tensor>,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        let s = self
            .code
            .get(self.at..self.at + n)
            .context("truncated pickle")?;
        self.at += n;
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
    fn text(&mut self, n: usize) -> anyhow::Result<Value> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }
    fn pop(&mut self) -> anyhow::Result<Value> {
        self.stack.pop().context("pickle stack underflow")
    }
    fn pop_mark(&mut self) -> anyhow::Result<Vec<Value>> {
        let mark = self.marks.pop().context("pickle mark missing")?;
        anyhow::ensure!(mark <= self.stack.len(), "pickle mark beyond the stack");
        Ok(self.stack.split_off(mark))
    }

    /// A storage's bytes as a flat tensor (read once per storage).
    fn storage(&mut self, kind: Kind, key: &str) -> anyhow::Result<Tensor> {
        if let Some(t) = self.storages.get(key) {
            return Ok(t.shallow_clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let e = self
            .entries
            .get(&name)
            .with_context(|| format!("the archive has no {name}"))?;
        let bytes = &self.file[e.start..e.start + e.len];
        let element = kind.elt_size_in_bytes();
        anyhow::ensure!(
            bytes.len().is_multiple_of(element),
            "{name}: {} bytes for {kind:?}",
            bytes.len()
        );
        let t = Tensor::from_data_size(bytes, &[(bytes.len() / element) as i64], kind);
        self.storages.insert(key.to_string(), t.shallow_clone());
        Ok(t)
    }

    fn reduce(&mut self, callable: Value, args: Value) -> anyhow::Result<Value> {
        let Value::Global(module, name) = callable else {
            return Ok(Value::Other);
        };
        let args = match args {
            Value::Tuple(a) => a,
            _ => return Ok(Value::Other),
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => Value::Dict(Vec::new()),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let (Some(Value::Storage(kind, key)), Some(Value::Int(offset))) =
                    (args.first(), args.get(1))
                else {
                    bail!("a tensor without its storage");
                };
                let (size, stride) = (ints(&args[2])?, ints(&args[3])?);
                let flat = self.storage(*kind, key)?;
                Value::Tensor(flat.as_strided(&size, &stride, *offset).contiguous())
            }
            ("torch._utils", "_rebuild_parameter") => {
                args.into_iter().next().unwrap_or(Value::Other)
            }
            _ => Value::Other,
        })
    }

    fn run(&mut self) -> anyhow::Result<Value> {
        loop {
            let op = *self.take(1)?.first().unwrap();
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.marks.push(self.stack.len()),
                b'X' => {
                    let n = self.uint(4)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8c | b'U' | b'C' => {
                    let n = self.uint(1)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.uint(8)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b'T' | b'B' => {
                    let n = self.uint(4)?;
                    let v = self.text(n)?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.stack.push(Value::Int(v));
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
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().unwrap());
                    self.stack.push(Value::Float(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    anyhow::ensure!(self.stack.len() >= n, "pickle stack underflow");
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'q' | b'r' => {
                    let i = self.uint(if op == b'q' { 1 } else { 4 })?;
                    let top = self.stack.last().context("pickle stack underflow")?.clone();
                    self.memo.insert(i, top);
                }
                0x94 => {
                    let top = self.stack.last().context("pickle stack underflow")?.clone();
                    self.memo.insert(self.memo.len(), top);
                }
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })?;
                    let v = self.memo.get(&i).context("pickle memo miss")?.clone();
                    self.stack.push(v);
                }
                b'c' => {
                    let (module, name) = (self.line()?, self.line()?);
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let (name, module) = (self.pop()?, self.pop()?);
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        bail!("STACK_GLOBAL without names");
                    };
                    self.stack.push(Value::Global(module, name));
                }
                b'R' => {
                    let (args, callable) = (self.pop()?, self.pop()?);
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Other);
                }
                b'Q' => {
                    let pid = self.pop()?;
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
                    self.stack.push(v);
                }
                b's' => {
                    let (v, k) = (self.pop()?, self.pop()?);
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.extend(items);
                    }
                }
                // BUILD: an object's state (a state dict's `_metadata`): not needed.
                b'b' => {
                    self.pop()?;
                }
                b'.' => return self.pop(),
                other => bail!("pickle opcode 0x{other:02x} is not supported"),
            }
        }
    }
}

/// Dictionaries' tensors by path (keys joined with '/').
fn flatten(value: Value, prefix: &str, out: &mut Vec<(String, Tensor)>) {
    match value {
        Value::Tensor(t) => out.push((prefix.to_string(), t)),
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
                flatten(v, &path, out);
            }
        }
        _ => {}
    }
}

/// Every tensor of a file written by `torch.save`, by its path of keys.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let read = || -> anyhow::Result<Vec<(String, Tensor)>> {
        let file = std::fs::read(path)?;
        let entries = zip_entries(&file)?;
        let pickle_name = entries
            .keys()
            .find(|n| n.ends_with("data.pkl"))
            .context("the archive holds no data.pkl (not a torch.save file)")?
            .clone();
        let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
        let e = &entries[&pickle_name];
        let mut machine = Unpickler {
            code: &file[e.start..e.start + e.len],
            at: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            file: &file,
            entries: &entries,
            prefix,
            storages: HashMap::new(),
        };
        let value = machine.run()?;
        let mut out = Vec::new();
        flatten(value, "", &mut out);
        Ok(out)
    };
    read().with_context(|| format!("reading the PyTorch checkpoint {}", path.display()))
}
