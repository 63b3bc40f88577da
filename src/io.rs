//! File writing that a kill cannot leave half done: write to a temporary name
//! in the same folder, flush, then rename into place.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The temporary name used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))
}

/// Runs `write` on a temporary path, then renames the result to `path`.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))
}

/// Writes an image (RGB, gray, ...) as a PNG, atomically.
pub fn write_png<P>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    path: &Path,
) -> anyhow::Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", path.display()))
    })
}

/// Writes a float32 array in NumPy's .npy format (version 1.0, C order), atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    anyhow::ensure!(
        shape.iter().product::<usize>() == data.len(),
        "npy: shape {shape:?} does not match {} values",
        data.len()
    );
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let shape_text = if shape.len() == 1 {
        format!("({dims},)")
    } else {
        format!("({dims})")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Reads a little-endian float32 .npy file in C order; returns (shape, data).
pub fn read_npy_f32(path: &Path) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() > 10 && &bytes[..6] == b"\x93NUMPY",
        "{}: not a .npy file",
        path.display()
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).context("npy header")?;
    anyhow::ensure!(
        header.contains("'<f4'") && header.contains("'fortran_order': False"),
        "{}: only little-endian float32 in C order is supported (header {header})",
        path.display()
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("npy shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let data: Vec<f32> = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    anyhow::ensure!(
        data.len() == shape.iter().product::<usize>(),
        "{}: {} values for shape {shape:?}",
        path.display(),
        data.len()
    );
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn npy_round_trip() {
        let p = std::env::temp_dir().join(format!("nave-npy-{}.npy", std::process::id()));
        super::write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0, "header padded to 64 bytes");
        assert_eq!(
            super::read_npy_f32(&p).unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5])
        );
    }
}
