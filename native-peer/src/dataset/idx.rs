//! The standard MNIST IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, …),
//! plain or gzip-compressed.

use std::io::Read;
use std::path::Path;

use super::{io_error, DatasetError, Digit};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

fn read_all(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let raw = std::fs::read(path).map_err(io_error(path))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io_error(path))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn malformed(path: &Path, offset: u64, message: impl Into<String>) -> DatasetError {
    DatasetError::Malformed { file: path.to_path_buf(), offset, message: message.into() }
}

fn be_u32(bytes: &[u8], offset: usize, path: &Path) -> Result<u32, DatasetError> {
    bytes
        .get(offset..offset + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed(path, offset as u64, "file ends inside the header"))
}

/// Parses an IDX images file and its labels file into digits.
pub fn read_idx(images: &Path, labels: &Path) -> Result<Vec<Digit>, DatasetError> {
    let img = read_all(images)?;
    let lab = read_all(labels)?;
    parse_idx(&img, images, &lab, labels)
}

/// Parses IDX bytes; paths are only for error messages.
pub fn parse_idx(img: &[u8], images: &Path, lab: &[u8], labels: &Path) -> Result<Vec<Digit>, DatasetError> {
    let magic = be_u32(img, 0, images)?;
    if magic != IMAGES_MAGIC {
        return Err(malformed(images, 0, format!("wrong magic {magic:#010x}, expected {IMAGES_MAGIC:#010x} (IDX images)")));
    }
    let magic = be_u32(lab, 0, labels)?;
    if magic != LABELS_MAGIC {
        return Err(malformed(labels, 0, format!("wrong magic {magic:#010x}, expected {LABELS_MAGIC:#010x} (IDX labels)")));
    }
    let (count, rows, cols) = (be_u32(img, 4, images)? as usize, be_u32(img, 8, images)? as usize, be_u32(img, 12, images)? as usize);
    if rows * cols != 784 {
        return Err(malformed(images, 8, format!("images are {rows}×{cols}, expected 28×28")));
    }
    let label_count = be_u32(lab, 4, labels)? as usize;
    if label_count != count {
        return Err(malformed(labels, 4, format!("{label_count} labels for {count} images")));
    }
    let need = 16 + count * 784;
    if img.len() < need {
        let whole = (img.len().saturating_sub(16)) / 784;
        return Err(malformed(images, (16 + whole * 784) as u64, format!("truncated: image {whole} of {count} is incomplete")));
    }
    if lab.len() < 8 + count {
        return Err(malformed(labels, lab.len() as u64, format!("truncated: {} of {count} labels present", lab.len().saturating_sub(8))));
    }
    let mut digits = Vec::with_capacity(count);
    for i in 0..count {
        let label = lab[8 + i];
        if label > 9 {
            return Err(malformed(labels, (8 + i) as u64, format!("label {label} of image {i} is out of range 0–9")));
        }
        digits.push(Digit { pixels: img[16 + i * 784..16 + (i + 1) * 784].to_vec(), label });
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: u32) -> (Vec<u8>, Vec<u8>) {
        let mut img = Vec::new();
        for v in [IMAGES_MAGIC, n, 28, 28] {
            img.extend(v.to_be_bytes());
        }
        img.extend((0..n * 784).map(|i| (i % 256) as u8));
        let mut lab = Vec::new();
        for v in [LABELS_MAGIC, n] {
            lab.extend(v.to_be_bytes());
        }
        lab.extend((0..n).map(|i| (i % 10) as u8));
        (img, lab)
    }

    fn parse(img: &[u8], lab: &[u8]) -> Result<Vec<Digit>, DatasetError> {
        parse_idx(img, Path::new("images.idx"), lab, Path::new("labels.idx"))
    }

    #[test]
    fn well_formed_files_parse() {
        let (img, lab) = files(3);
        let digits = parse(&img, &lab).unwrap();
        assert_eq!(digits.len(), 3);
        assert_eq!(digits[2].label, 2);
        assert_eq!(digits[1].pixels[0], (784 % 256) as u8);
    }

    #[test]
    fn a_truncated_file_names_file_and_offset() {
        let (img, lab) = files(3);
        let err = parse(&img[..16 + 784 + 100], &lab).unwrap_err().to_string();
        assert!(err.contains("images.idx") && err.contains("offset 800") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn a_wrong_magic_is_named() {
        let (mut img, lab) = files(1);
        img[3] = 0x01;
        let err = parse(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("images.idx") && err.contains("wrong magic"), "{err}");
    }

    #[test]
    fn a_label_out_of_range_is_named() {
        let (img, mut lab) = files(3);
        lab[8 + 1] = 11;
        let err = parse(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("labels.idx") && err.contains("offset 9") && err.contains("label 11"), "{err}");
    }
}
