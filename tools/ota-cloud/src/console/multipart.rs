//! A minimal `multipart/form-data` reader (RFC 7578) for the release upload form: the whole
//! body is in memory already (bounded by the admin router's body limit), so this only splits
//! it at the boundary and reads each part's `Content-Disposition` name and filename. No
//! nested multiparts, no transfer encodings other than binary (what browsers send).

/// One part of a form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The field name.
    pub(crate) name: String,
    /// The file name, for a file field.
    pub(crate) filename: Option<String>,
    /// The bytes.
    pub(crate) data: &'a [u8],
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    if !it
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    it.filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let off = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|b| *b == first)?;
        i += off;
        if hay[i..i + needle.len()] == *needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A `key="value"` parameter of a header value.
fn param(header: &str, key: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

/// The parts of `body`. Errors: no opening boundary, a part without headers or name, or no
/// closing boundary (a truncated body).
pub(crate) fn parse<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, &'static str> {
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let start = find(body, open.as_bytes(), 0).ok_or("no multipart boundary in the body")?;
    let mut pos = start + open.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("malformed multipart boundary line");
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a multipart part has no header end")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "a multipart part header is not UTF-8")?;
        let disposition = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.trim())
            .ok_or("a multipart part has no Content-Disposition")?;
        let name = param(disposition, "name").ok_or("a multipart part has no name")?;
        let data_start = head_end + 4;
        let end =
            find(body, delim.as_bytes(), data_start).ok_or("the multipart body is truncated")?;
        parts.push(Part {
            name,
            filename: param(disposition, "filename"),
            data: &body[data_start..end],
        });
        pos = end + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_a_binary_file() {
        let b = "XyZ123";
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary=\"{b}\"")).as_deref(),
            Some(b)
        );
        assert_eq!(boundary("application/json"), None);
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ123\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n",
        );
        body.extend_from_slice(b"--XyZ123\r\nContent-Disposition: form-data; name=\"container\"; filename=\"fw.ota\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        // Binary data with CR LF and a near-boundary inside.
        let file = b"\x00\r\n--XyZ12\r\n\xff";
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--XyZ123--\r\n");
        let parts = parse(b, &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data),
            ("csrf", &b"abc"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("fw.ota"));
        assert_eq!(parts[1].data, file);
    }

    #[test]
    fn refuses_truncated_and_malformed_bodies() {
        let b = "B";
        assert!(parse(b, b"nothing").is_err());
        assert!(parse(
            b,
            b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ndata"
        )
        .is_err());
        assert!(parse(b, b"--B\r\nX-Other: 1\r\n\r\ndata\r\n--B--").is_err());
        assert!(parse(b, b"--Bjunk").is_err());
        assert_eq!(parse(b, b"--B--").unwrap(), vec![]);
    }
}
