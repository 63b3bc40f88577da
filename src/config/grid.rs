//! The grid: which runs an experiment has. Every field of the experiment can
//! be an axis (`watermark.size: [0.05, 0.1]`), next to the four regime axes
//! (`arch`, `augment`, `watermark`, `seed`), and named variants bundle
//! overrides, so that several artefact families are one study:
//!
//! ```yaml
//! grid:
//!   seed: [0, 1]
//!   watermark.size: [0.1, 0.15]      # an axis of every variant
//!   variants:
//!     clean: {watermark: false}
//!     red-box: {watermark: true, watermark.colour: [255, 0, 0]}
//!     partial:
//!       watermark: true
//!       grid: {watermark.p: [0.6, 0.8, 1.0]}   # an axis of this variant only
//! ```
//!
//! Run ids are readable and stable: `<arch>[-<variant>]-aug<0|1>-wm<0|1>
//! [-<axis value>...]-s<seed>`, each axis value shortened to the key's last
//! part and the value (`size0.1`). A grid of the four regime axes only gives
//! the ids it always gave (`resnet18-aug1-wm0-s2`).
use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use yaml_serde::{Mapping, Value};

use super::{set_path, ExperimentFile, RunSpec};
use crate::models::Arch;

/// Keys of the grid that are not experiment fields.
const REGIME_AXES: [&str; 4] = ["arch", "augment", "watermark", "seed"];

/// A grid problem, with the key it concerns so that the caller can name its line.
#[derive(Debug)]
pub struct GridError {
    pub key: String,
    pub message: String,
}

impl GridError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The error, naming the key's line in the experiment's text when it is found.
    pub fn at_line_of(self, text: &str) -> anyhow::Error {
        match line_of(text, &self.key) {
            Some(line) => anyhow::anyhow!("grid: {} (line {line}): {}", self.key, self.message),
            None => anyhow::anyhow!("grid: {}: {}", self.key, self.message),
        }
    }
}

/// The first line at or after `grid:` that starts with `key:` (or with its last part).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("grid:"))?;
    let last = key.rsplit('.').next().unwrap_or(key);
    for candidate in [key, last] {
        for (i, line) in lines.iter().enumerate().skip(start) {
            let t = line.trim_start().trim_start_matches("- ");
            if t.starts_with(&format!("{candidate}:"))
                || t.starts_with(&format!("\"{candidate}\":"))
            {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The axes of the grid or of one variant.
#[derive(Debug, Clone, Default)]
struct Axes {
    arch: Option<Vec<Arch>>,
    augment: Option<Vec<bool>>,
    watermark: Option<Vec<bool>>,
    seed: Option<Vec<u64>>,
    /// Experiment fields (dotted paths) and their values, in file order.
    fields: Vec<(String, Vec<Value>)>,
}

/// A named set of overrides, with axes of its own.
#[derive(Debug, Clone)]
struct NamedVariant {
    name: String,
    /// Experiment fields fixed for this variant (no token in the id).
    fixed: Vec<(String, Value)>,
    axes: Axes,
}

/// The parsed grid.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    axes: Axes,
    variants: Vec<NamedVariant>,
}

/// The most runs one experiment may name.
pub const MAX_RUNS: usize = 100_000;

/// One grid point's regime values, handed to [`super::run_spec`].
#[derive(Debug, Clone)]
pub struct Point {
    pub variant: Option<String>,
    pub augment: bool,
    pub watermark: bool,
    pub seed: u64,
    /// The other axes' values, shortened, in order.
    pub tags: Vec<String>,
}

/// `<arch>[-<variant>]-aug<a>-wm<w>[-<tag>...]`: a run id without its seed.
pub fn regime_name(
    arch: Arch,
    variant: Option<&str>,
    augment: bool,
    watermark: bool,
    tags: &[String],
) -> String {
    let mut parts = vec![arch.to_string()];
    parts.extend(variant.map(String::from));
    parts.push(format!("aug{}", augment as u8));
    parts.push(format!("wm{}", watermark as u8));
    parts.extend(tags.iter().cloned());
    parts.join("-")
}

fn key_of(k: &Value) -> Result<String, GridError> {
    k.as_str()
        .map(String::from)
        .ok_or_else(|| GridError::new(format!("{k:?}"), "grid keys must be field names"))
}

/// Flattens nested mappings into dotted keys: `{watermark: {size: x}}` -> `watermark.size: x`.
fn flatten(prefix: &str, map: &Mapping, out: &mut Vec<(String, Value)>) -> Result<(), GridError> {
    for (k, v) in map {
        let k = key_of(k)?;
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Mapping(inner)
                if !(prefix.is_empty() && (key == "variants" || key == "grid")) =>
            {
                flatten(&key, inner, out)?
            }
            _ => out.push((key, v.clone())),
        }
    }
    Ok(())
}

fn list_of<T: serde::de::DeserializeOwned>(key: &str, v: &Value) -> Result<Vec<T>, GridError> {
    let items = match v {
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    };
    if items.is_empty() {
        return Err(GridError::new(key, "must list at least one value"));
    }
    items
        .into_iter()
        .map(|item| {
            yaml_serde::from_value(item.clone())
                .map_err(|e| GridError::new(key, format!("{item:?} is not a valid value: {e}")))
        })
        .collect()
}

fn check_field_key(key: &str) -> Result<(), GridError> {
    let top = key.split('.').next().unwrap_or(key);
    if top == "name" || top == "grid" || key.is_empty() {
        return Err(GridError::new(key, "is not something a grid can vary"));
    }
    Ok(())
}

impl Axes {
    /// Sets a regime axis (`arch`, `augment`, `watermark`, `seed`) from a value or a list.
    fn set_regime(&mut self, key: &str, v: &Value) -> Result<(), GridError> {
        match key {
            "arch" => self.arch = Some(list_of(key, v)?),
            "augment" => self.augment = Some(list_of(key, v)?),
            "watermark" => self.watermark = Some(list_of(key, v)?),
            _ => self.seed = Some(list_of(key, v)?),
        }
        Ok(())
    }

    /// The axes of a mapping: regime axes and dotted experiment fields, each a list.
    fn parse(map: &Mapping, skip: &[&str]) -> Result<Self, GridError> {
        let mut flat = Vec::new();
        flatten("", map, &mut flat)?;
        let mut axes = Axes::default();
        for (key, v) in flat {
            if skip.contains(&key.as_str()) {
                continue;
            }
            if REGIME_AXES.contains(&key.as_str()) {
                axes.set_regime(&key, &v)?;
                continue;
            }
            check_field_key(&key)?;
            let Value::Sequence(values) = v else {
                return Err(GridError::new(
                    &key,
                    format!("an axis lists its values, e.g. {key}: [{}]; to fix one value set it outside the grid or in a variant", scalar_text(&v)),
                ));
            };
            if values.is_empty() {
                return Err(GridError::new(&key, "must list at least one value"));
            }
            if axes.fields.iter().any(|(k, _)| *k == key) {
                return Err(GridError::new(&key, "is given twice"));
            }
            axes.fields.push((key, values));
        }
        Ok(axes)
    }
}

fn scalar_text(v: &Value) -> String {
    yaml_serde::to_string(v)
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// A value as it appears in a run id: `0.05`, `1` for true, `255.0.0` for a
/// list, a path's file stem; only letters, digits, `.`, `+` and `_`.
fn short_value(v: &Value) -> String {
    let raw = match v {
        Value::Bool(b) => (*b as u8).to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.contains('/') => std::path::Path::new(s)
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| s.clone()),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items.iter().map(short_value).collect::<Vec<_>>().join("."),
        Value::Null => "null".into(),
        other => scalar_text(other),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".+_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Grid {
    /// Reads `grid:` (null or absent: one run, seed 0, no augmentation, no watermark).
    pub fn parse(grid: &Value) -> Result<Self, GridError> {
        let map = match grid {
            Value::Null => return Ok(Self::default()),
            Value::Mapping(m) => m,
            other => {
                return Err(GridError::new(
                    "grid",
                    format!("must be a mapping of axes, got {}", scalar_text(other)),
                ))
            }
        };
        let axes = Axes::parse(map, &["variants"])?;
        let mut variants = Vec::new();
        match map.get("variants") {
            None => {}
            Some(Value::Mapping(named)) => {
                if named.is_empty() {
                    return Err(GridError::new("variants", "names no variant"));
                }
                for (name, body) in named {
                    variants.push(NamedVariant::parse(&key_of(name)?, body)?);
                }
            }
            Some(_) => {
                return Err(GridError::new(
                    "variants",
                    "must map each variant's name to its overrides, e.g. variants: {red-box: {watermark.colour: [255, 0, 0]}}",
                ))
            }
        }
        Ok(Self { axes, variants })
    }

    /// Where the grid varies or fixes `key`, if it does (for `--set`).
    pub fn varies(&self, key: &str) -> Option<String> {
        if self.axes.fields.iter().any(|(k, _)| k == key) {
            return Some(format!("the grid axis {key}"));
        }
        self.variants.iter().find_map(|v| {
            (v.fixed.iter().any(|(k, _)| k == key) || v.axes.fields.iter().any(|(k, _)| k == key))
                .then(|| format!("the variant {}", v.name))
        })
    }

    /// Last parts of the field keys that more than one axis ends with: those
    /// axes are named by their whole key in run ids.
    fn ambiguous_short_names(&self) -> BTreeSet<String> {
        let mut seen: HashMap<String, BTreeSet<String>> = HashMap::new();
        let all = std::iter::once(&self.axes).chain(self.variants.iter().map(|v| &v.axes));
        for axes in all {
            for (k, _) in &axes.fields {
                let last = k.rsplit('.').next().unwrap_or(k).to_string();
                seen.entry(last).or_default().insert(k.clone());
            }
        }
        seen.into_iter()
            .filter(|(_, keys)| keys.len() > 1)
            .map(|(last, _)| last)
            .collect()
    }

    /// Every grid point as a resolved, validated run, with its `key=value`
    /// description. `base` is the experiment file as a YAML value (after `--set`).
    pub fn expand(
        &self,
        base: &Value,
        experiment: &str,
    ) -> Result<Vec<(RunSpec, Vec<String>)>, GridError> {
        let ambiguous = self.ambiguous_short_names();
        let short_key = |key: &str| {
            let last = key.rsplit('.').next().unwrap_or(key);
            if ambiguous.contains(last) {
                key.replace('.', "_")
            } else {
                last.to_string()
            }
        };
        let anonymous = [None];
        let variants: Vec<Option<&NamedVariant>> = if self.variants.is_empty() {
            anonymous.to_vec()
        } else {
            self.variants.iter().map(Some).collect()
        };
        let mut out: Vec<(RunSpec, Vec<String>)> = Vec::new();
        let mut ids: HashMap<String, Vec<String>> = HashMap::new();
        for variant in variants {
            let error_key = variant.map_or("grid".to_string(), |v| v.name.clone());
            let fail = |message: String| GridError::new(&error_key, message);
            // This variant's axes: its own over the grid's.
            let own = variant.map(|v| &v.axes);
            let augment = own
                .and_then(|a| a.augment.clone())
                .or(self.axes.augment.clone())
                .unwrap_or(vec![false]);
            let watermark = own
                .and_then(|a| a.watermark.clone())
                .or(self.axes.watermark.clone())
                .unwrap_or(vec![false]);
            let seeds = own
                .and_then(|a| a.seed.clone())
                .or(self.axes.seed.clone())
                .unwrap_or(vec![0]);
            let archs: Option<Vec<Arch>> =
                own.and_then(|a| a.arch.clone()).or(self.axes.arch.clone());
            let fixed: &[(String, Value)] = variant.map_or(&[], |v| &v.fixed);
            let mut fields: Vec<(String, Vec<Value>)> = self
                .axes
                .fields
                .iter()
                .filter(|(k, _)| !fixed.iter().any(|(f, _)| f == k))
                .cloned()
                .collect();
            for (k, values) in own.map_or(&[][..], |a| &a.fields) {
                match fields.iter_mut().find(|(f, _)| f == k) {
                    Some(slot) => slot.1 = values.clone(),
                    None => fields.push((k.clone(), values.clone())),
                }
            }
            // The variant's own file: the base with its fixed fields.
            let mut file_value = base.clone();
            for (k, v) in fixed {
                set_path(&mut file_value, k, v.clone()).map_err(|e| fail(format!("{e:#}")))?;
            }
            // Counted before anything is built: a file's few lines can name
            // a product of billions (30 axes of two values).
            let runs_here = fields
                .iter()
                .map(|(_, v)| v.len())
                .chain([
                    archs.as_ref().map_or(1, Vec::len),
                    augment.len(),
                    watermark.len(),
                    seeds.len(),
                ])
                .try_fold(1usize, |n, k| n.checked_mul(k))
                .and_then(|n| n.checked_add(out.len()))
                .filter(|&n| n <= MAX_RUNS);
            if runs_here.is_none() {
                return Err(fail(format!(
                    "the grid names more than {MAX_RUNS} runs; split the study into several experiments"
                )));
            }
            // One experiment file per combination of the field axes.
            let mut combos = Vec::new();
            for combo in product(&fields) {
                let mut value = file_value.clone();
                let mut tags = Vec::new();
                let mut described: Vec<String> = variant
                    .map(|v| format!("variant={}", v.name))
                    .into_iter()
                    .collect();
                for ((key, _), v) in fields.iter().zip(&combo) {
                    set_path(&mut value, key, (*v).clone())
                        .map_err(|e| fail(format!("{key}: {e:#}")))?;
                    tags.push(format!("{}{}", short_key(key), short_value(v)));
                    described.push(format!("{key}={}", scalar_text(v)));
                }
                let file: ExperimentFile = yaml_serde::from_value(value).map_err(|e| {
                    let message = format!("{e} (with {})", described.join(", "));
                    // Name the axis or fixed field the message is about, for its line.
                    let keys = fields
                        .iter()
                        .map(|(k, _)| k)
                        .chain(fixed.iter().map(|(k, _)| k));
                    match keys.into_iter().find(|k| {
                        let last = k.rsplit('.').next().unwrap_or(k);
                        message.contains(&format!("`{last}`"))
                    }) {
                        Some(k) => GridError::new(k.as_str(), message),
                        None => fail(message),
                    }
                })?;
                combos.push((file, tags, described));
            }
            // None: each combination's own model.arch.
            let arch_axis: Vec<Option<Arch>> = match &archs {
                Some(list) => list.iter().copied().map(Some).collect(),
                None => vec![None],
            };
            for &arch in &arch_axis {
                for &aug in &augment {
                    for &wm in &watermark {
                        for (file, tags, described) in &combos {
                            for &seed in &seeds {
                                let point = Point {
                                    variant: variant.map(|v| v.name.clone()),
                                    augment: aug,
                                    watermark: wm,
                                    seed,
                                    tags: tags.clone(),
                                };
                                let spec =
                                    super::run_spec(file, arch.unwrap_or(file.model.arch), point)
                                        .with_context(|| format!("in {experiment}"))
                                        .map_err(|e| fail(format!("{e:#}")))?;
                                ids.entry(spec.id.clone())
                                    .or_default()
                                    .push(described.join(" "));
                                out.push((spec, described.clone()));
                            }
                        }
                    }
                }
            }
        }
        if let Some((id, whence)) = ids.iter().find(|(_, w)| w.len() > 1) {
            return Err(GridError::new(
                "grid",
                format!(
                    "two grid points give the run id {id} ({}); give their values shortened forms that differ",
                    whence.join(" | ")
                ),
            ));
        }
        Ok(out)
    }
}

impl NamedVariant {
    fn parse(name: &str, body: &Value) -> Result<Self, GridError> {
        if let Some(why) = super::name_problem(name) {
            return Err(GridError::new(
                name.escape_debug().to_string(),
                format!("a variant's name is part of run ids: {why}"),
            ));
        }
        if name.starts_with("aug") || name.starts_with("wm") {
            return Err(GridError::new(
                name,
                "a variant's name is part of run ids and does not start with aug or wm",
            ));
        }
        let map = match body {
            Value::Mapping(m) => m.clone(),
            Value::Null => Mapping::new(),
            other => {
                return Err(GridError::new(
                    name,
                    format!(
                        "a variant maps fields to values, got {}",
                        scalar_text(other)
                    ),
                ))
            }
        };
        let mut flat = Vec::new();
        flatten("", &map, &mut flat)?;
        let mut axes = match map.get("grid") {
            Some(Value::Mapping(g)) => Axes::parse(g, &[])?,
            Some(_) => return Err(GridError::new(name, "its grid must be a mapping of axes")),
            None => Axes::default(),
        };
        let mut fixed = Vec::new();
        for (key, v) in flat {
            if key == "grid" {
                continue;
            }
            if REGIME_AXES.contains(&key.as_str()) {
                axes.set_regime(&key, &v)?;
            } else {
                check_field_key(&key)?;
                fixed.push((key, v));
            }
        }
        Ok(Self {
            name: name.to_string(),
            fixed,
            axes,
        })
    }
}

/// The cartesian product of the axes' values, the first axis outermost.
fn product(axes: &[(String, Vec<Value>)]) -> Vec<Vec<&Value>> {
    let mut out: Vec<Vec<&Value>> = vec![Vec::new()];
    for (_, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(v);
                    p
                })
            })
            .collect();
    }
    out
}
