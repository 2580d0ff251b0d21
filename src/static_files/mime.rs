//! Content types by file extension: a small built-in table of the types a web site serves.

use std::path::Path;

/// Extensions (lowercase) and their content types, sorted by extension for a binary search.
/// Text types carry `charset=utf-8`.
const TYPES: &[(&str, &str)] = &[
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/x-icon"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xml", "application/xml"),
    ("zip", "application/zip"),
];

/// The type of content that is not in the table.
///
/// ```
/// use iomux::static_files::{mime_type, DEFAULT_TYPE};
/// assert_eq!(mime_type(std::path::Path::new("x.unknown")), DEFAULT_TYPE);
/// ```
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// The content type for `path`, by its extension (case-insensitive), from a built-in table of
/// common web types; [`DEFAULT_TYPE`] for others and for names without an extension.
///
/// ```
/// use std::path::Path;
/// use iomux::static_files::mime_type;
/// assert_eq!(mime_type(Path::new("site/index.HTML")), "text/html; charset=utf-8");
/// assert_eq!(mime_type(Path::new("logo.png")), "image/png");
/// assert_eq!(mime_type(Path::new("data.bin")), "application/octet-stream");
/// assert_eq!(mime_type(Path::new("README")), "application/octet-stream");
/// ```
pub fn mime_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return DEFAULT_TYPE;
    };
    let ext = ext.to_ascii_lowercase();
    TYPES
        .binary_search_by(|(e, _)| (*e).cmp(ext.as_str()))
        .map_or(DEFAULT_TYPE, |i| TYPES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lowercase() {
        assert!(TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(TYPES
            .iter()
            .all(|(e, _)| e.bytes().all(|b| !b.is_ascii_uppercase())));
        for (ext, ty) in TYPES {
            assert_eq!(mime_type(Path::new(&format!("x.{ext}"))), *ty);
        }
    }
}
