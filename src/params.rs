//! Request parameters, Hunchentoot's `get-parameter`, `post-parameter` and `parameter`: the
//! query string, form bodies (`application/x-www-form-urlencoded`, and `multipart/form-data`
//! with file [`Upload`]s), and typed access whose errors ([`ParamError`]) are `400` replies
//! naming the parameter.
//!
//! Everything is parsed on first use and kept with the request, so an actor that restores a
//! saved context reads the same values without parsing again.
//!
//! - Names and values are decoded from `+` (a space) and `%XX`, then read as UTF-8; bytes that
//!   are not valid UTF-8 become U+FFFD (the replacement character). Order is kept, and so are
//!   duplicates (`a=1&a=2`; see [`Request::param_list`]).
//! - A form body is read for any method whose `Content-Type` is one of the two form types; other
//!   bodies have no POST parameters. A body the server refuses to read as a form — more than
//!   [`Config::max_form_fields`](crate::Config::max_form_fields) fields (`413`), a malformed
//!   multipart body (`400`), an upload that could not be stored (`500`) — has no POST parameters
//!   and no uploads; [`Request::check_form`] and the typed accessors report why, as a
//!   [`FormError`]. The whole body is limited by
//!   [`Config::max_body_size`](crate::Config::max_body_size) before any of this (`413`).
//! - Limits are those of the acceptor of the current context when the form is first read
//!   (while a handler runs, or in a restored context); [`Config::default()`](crate::Config)'s
//!   outside any context.
//!
//! ```
//! use iomux::params::ParamError;
//! use iomux::{Handled, Reply, Request};
//!
//! fn page(req: &Request) -> Result<Handled, ParamError> {
//!     let n: u32 = req.param_or("n", 10)?;       // ?n=abc → 400 naming "n"
//!     let tags: Vec<String> = req.param_list("tag")?;
//!     Ok(Reply::text(format!("{n} items tagged {tags:?}\n")).into())
//! }
//!
//! let req = Request::from_bytes(b"GET /?n=3&tag=a&tag=b+c HTTP/1.1\r\nHost: x\r\n\r\n")?;
//! let Handled::Reply(reply) = iomux::Handled::from(page(&req)) else { unreachable!() };
//! assert_eq!(reply.body(), "3 items tagged [\"a\", \"b c\"]\n");
//!
//! let req = Request::from_bytes(b"GET /?n=abc HTTP/1.1\r\nHost: x\r\n\r\n")?;
//! let Handled::Reply(reply) = iomux::Handled::from(page(&req)) else { unreachable!() };
//! assert_eq!(reply.status(), 400);
//! assert!(std::str::from_utf8(reply.body()).unwrap().contains("parameter \"n\""));
//! # Ok::<(), iomux::http::StatusCode>(())
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::StatusCode;

use crate::dispatch::Handled;
use crate::multipart;
use crate::reply::Reply;
use crate::request::{decode_text, media_essence, media_type_param, with_config, Request};
use crate::Config;

/// The fields and uploads of a form body.
#[derive(Debug, Default)]
pub(crate) struct Form {
    fields: Vec<(String, String)>,
    uploads: Vec<Upload>,
}

/// Parameter access (see the [module documentation](self)).
impl Request {
    /// The query string's parameters, in order, duplicates kept (Hunchentoot's
    /// `get-parameters*`).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?a=1&b=x+y&a=%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// let pairs: Vec<(&str, &str)> =
    ///     req.get_parameters().iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    /// assert_eq!(pairs, [("a", "1"), ("b", "x y"), ("a", "é")]);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn get_parameters(&self) -> &[(String, String)] {
        self.ext().get_params.get_or_init(|| {
            form_urlencoded::parse(self.query().unwrap_or_default().as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect()
        })
    }

    /// The first query-string parameter with this name, decoded.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?q=rust%20http&q=2 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert_eq!(req.get_parameter("q"), Some("rust http"));
    /// assert_eq!(req.get_parameter("z"), None);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn get_parameter(&self, name: &str) -> Option<&str> {
        first(self.get_parameters(), name)
    }

    /// The form body's fields, in order, duplicates kept (Hunchentoot's `post-parameters*`);
    /// file uploads are in [`uploads`](Request::uploads). Empty when the body is not a form or
    /// was refused (see [`check_form`](Request::check_form)).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
    ///       Content-Length: 13\r\n\r\nname=Jo+Smith",
    /// )?;
    /// assert_eq!(req.post_parameters(), [("name".to_string(), "Jo Smith".to_string())]);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn post_parameters(&self) -> &[(String, String)] {
        self.form().map_or(&[], |form| &form.fields)
    }

    /// The first field of the form body with this name.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
    ///       Content-Length: 7\r\n\r\nkey=val",
    /// )?;
    /// assert_eq!(req.post_parameter("key"), Some("val"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn post_parameter(&self, name: &str) -> Option<&str> {
        first(self.post_parameters(), name)
    }

    /// The parameter with this name from the query string, else from the form body
    /// (Hunchentoot's `parameter`).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST /?a=get HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
    ///       Content-Length: 15\r\n\r\na=post&b=post-b",
    /// )?;
    /// assert_eq!((req.parameter("a"), req.parameter("b")), (Some("get"), Some("post-b")));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.get_parameter(name)
            .or_else(|| self.post_parameter(name))
    }

    /// The files of a `multipart/form-data` body, in order (parts with a `filename`).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
    ///       Content-Length: 83\r\n\r\n\
    ///       --B\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n\r\nhello\r\n--B--\r\n",
    /// )?;
    /// assert_eq!(req.uploads().len(), 1);
    /// assert_eq!(req.uploads()[0].filename(), "a.txt");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn uploads(&self) -> &[Upload] {
        self.form().map_or(&[], |form| &form.uploads)
    }

    /// The first upload of the field with this name.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
    ///       Content-Length: 83\r\n\r\n\
    ///       --B\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n\r\nhello\r\n--B--\r\n",
    /// ).unwrap();
    /// let doc = req.upload("doc").expect("an upload");
    /// assert_eq!((doc.size(), doc.content()?.as_ref()), (5, &b"hello"[..]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn upload(&self, name: &str) -> Option<&Upload> {
        self.uploads().iter().find(|u| u.field == name)
    }

    /// Whether the body, if it is a form, was read: `Err` with the reason if it was refused.
    /// `Ok` for a body that is not a form.
    ///
    /// ```
    /// let config = iomux::Config::default();
    /// let body = "x=1&".repeat(config.max_form_fields + 1);
    /// let raw = format!(
    ///     "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
    ///      Content-Length: {}\r\n\r\n{body}", body.len());
    /// let req = iomux::Request::from_bytes(raw.as_bytes())?;
    /// let err = req.check_form().unwrap_err();
    /// assert_eq!(err.status(), 413);
    /// assert!(req.post_parameters().is_empty());
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// The [`FormError`] the body was refused with.
    pub fn check_form(&self) -> Result<(), FormError> {
        self.form().map(|_| ())
    }

    fn form(&self) -> Result<&Form, FormError> {
        self.ext()
            .form
            .get_or_init(|| {
                let form = with_config(|config| read_form(self, config));
                match &form {
                    Err(e @ FormError::Storage(_)) => log::error!("{e}"),
                    Err(e) => log::debug!("form of {} refused: {e}", self.target()),
                    Ok(_) => {}
                }
                form
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The parameter with this name (query string first, then form body), parsed as `T`; `None`
    /// if absent. An empty value is given to `T::from_str` as it is (so `n=` is an error for
    /// a number, `""` for a `String`).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?n=42&bad=4x2 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert_eq!(req.param::<u32>("n"), Ok(Some(42)));
    /// assert_eq!(req.param::<u32>("missing"), Ok(None));
    /// let err = req.param::<u32>("bad").unwrap_err();
    /// assert_eq!(err.to_string(), r#"parameter "bad": invalid value "4x2" (invalid digit found in string)"#);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// [`ParamError::Invalid`] if the value does not parse; [`ParamError::Form`] if the
    /// parameter is not in the query string and the form body was refused.
    pub fn param<T>(&self, name: &str) -> Result<Option<T>, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = match self.get_parameter(name) {
            Some(value) => Some(value),
            None => first(&self.form()?.fields, name),
        };
        value.map(|v| parse_value(name, v)).transpose()
    }

    /// The parameter with this name parsed as `T`, or `default` if absent.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?page=3 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert_eq!(req.param_or("page", 1u32), Ok(3));
    /// assert_eq!(req.param_or("size", 20u32), Ok(20));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// As [`param`](Request::param).
    pub fn param_or<T>(&self, name: &str, default: T) -> Result<T, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.param(name)?.unwrap_or(default))
    }

    /// The parameter with this name parsed as `T`, which must be there.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?id=7 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert_eq!(req.param_required::<u64>("id"), Ok(7));
    /// let err = req.param_required::<u64>("user").unwrap_err();
    /// assert_eq!((err.status(), err.to_string()), (iomux::http::StatusCode::BAD_REQUEST,
    ///     r#"parameter "user" is missing"#.to_string()));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// [`ParamError::Missing`] if absent; otherwise as [`param`](Request::param).
    pub fn param_required<T>(&self, name: &str) -> Result<T, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.param(name)?.ok_or_else(|| ParamError::Missing {
            name: name.to_string(),
        })
    }

    /// Every value of the parameter with this name (`id=1&id=2`), parsed as `T`: those of the
    /// query string, then those of the form body. Empty if there are none.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /?id=1&x=0&id=2 HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert_eq!(req.param_list::<u8>("id"), Ok(vec![1, 2]));
    /// assert_eq!(req.param_list::<u8>("none"), Ok(vec![]));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// [`ParamError::Invalid`] for the first value that does not parse; [`ParamError::Form`] if
    /// the form body was refused.
    pub fn param_list<T>(&self, name: &str) -> Result<Vec<T>, ParamError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get_parameters()
            .iter()
            .chain(&self.form()?.fields)
            .filter(|(n, _)| n == name)
            .map(|(_, v)| parse_value(name, v))
            .collect()
    }
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn parse_value<T>(name: &str, value: &str) -> Result<T, ParamError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value.parse().map_err(|e: T::Err| ParamError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// Read the request's body as a form, if its content type is one.
fn read_form(req: &Request, config: &Config) -> Result<Form, FormError> {
    let Some(content_type) = req.content_type() else {
        return Ok(Form::default());
    };
    let essence = media_essence(content_type);
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let mut fields = Vec::new();
        for (name, value) in form_urlencoded::parse(req.body()) {
            if fields.len() == config.max_form_fields {
                return Err(FormError::TooManyFields {
                    limit: config.max_form_fields,
                });
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        Ok(Form {
            fields,
            uploads: Vec::new(),
        })
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        let boundary = media_type_param(content_type, "boundary")
            .ok_or(FormError::Malformed("no boundary parameter"))?;
        let parts = multipart::parse(req.body(), boundary.as_bytes(), config.max_form_fields)
            .map_err(|e| match e {
                multipart::Error::TooManyParts => FormError::TooManyFields {
                    limit: config.max_form_fields,
                },
                multipart::Error::Malformed(why) => FormError::Malformed(why),
            })?;
        let mut form = Form::default();
        for part in parts {
            let Some(field) = part.name else { continue };
            let content = &req.body()[part.content.clone()];
            let charset = part
                .content_type
                .as_deref()
                .and_then(|ct| media_type_param(ct, "charset"));
            match part.filename {
                None => {
                    let value = decode_text(content, charset.as_deref()).into_owned();
                    form.fields.push((field, value));
                }
                Some(filename) => {
                    let data = if content.len() <= config.upload_memory_limit {
                        UploadData::Memory(req.body().slice(part.content))
                    } else {
                        let file = TempFile::create(&config.upload_dir, content)
                            .map_err(|e| FormError::Storage(e.to_string()))?;
                        UploadData::File(file)
                    };
                    form.uploads.push(Upload {
                        field,
                        filename,
                        content_type: part
                            .content_type
                            .unwrap_or_else(|| "text/plain".to_string()),
                        size: content.len() as u64,
                        data,
                    });
                }
            }
        }
        Ok(form)
    } else {
        Ok(Form::default())
    }
}

/// A file of a `multipart/form-data` body. Up to
/// [`Config::upload_memory_limit`](crate::Config::upload_memory_limit) bytes it stays in memory
/// (a slice of the body, not a copy); a larger one is written to a temporary file in
/// [`Config::upload_dir`](crate::Config::upload_dir) when the form is first read, readable only
/// by its owner, and removed when the request ends: when the handler has returned and no saved
/// context is left (a deferred reply keeps it until the actor drops its context). Use
/// [`copy_to`](Upload::copy_to) to keep it.
///
/// The file name is the client's: never use it as a path without cleaning it.
///
/// ```
/// let req = iomux::Request::from_bytes(
///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
///       Content-Length: 107\r\n\r\n\
///       --B\r\nContent-Disposition: form-data; name=\"pic\"; filename=\"a.png\"\r\n\
///       Content-Type: image/png\r\n\r\n\x89PNG\r\n--B--\r\n",
/// )?;
/// let pic = req.upload("pic").unwrap();
/// assert_eq!((pic.field(), pic.filename(), pic.content_type()), ("pic", "a.png", "image/png"));
/// assert!(matches!(pic.data(), iomux::params::UploadData::Memory(_)));
/// assert_eq!(pic.path(), None);
/// # Ok::<(), iomux::http::StatusCode>(())
/// ```
#[derive(Debug)]
pub struct Upload {
    field: String,
    filename: String,
    content_type: String,
    size: u64,
    data: UploadData,
}

/// Where an [`Upload`]'s content is.
///
/// ```
/// # let req = iomux::Request::from_bytes(
/// #     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n\
/// #       Content-Length: 78\r\n\r\n\
/// #       --B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n",
/// # )?;
/// use iomux::params::UploadData;
/// match req.upload("f").unwrap().data() {
///     UploadData::Memory(bytes) => assert_eq!(bytes.as_ref(), b"hi"),
///     UploadData::File(file) => println!("spilled to {}", file.path().display()),
/// }
/// # Ok::<(), iomux::http::StatusCode>(())
/// ```
#[derive(Debug)]
pub enum UploadData {
    /// Kept in memory: the bytes.
    Memory(Bytes),
    /// Written to a temporary file, removed with the request.
    File(TempFile),
}

impl Upload {
    /// The form field's name.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert_eq!(req.uploads()[0].field(), "f");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The file name the client sent (`filename*` preferred to `filename`), as sent: it may be
    /// empty (a file input left empty), hold a directory or `..`.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert_eq!(req.uploads()[0].filename(), "t.txt");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn filename(&self) -> &str {
        &self.filename
    }

    /// The part's `Content-Type`; `text/plain` when it has none (RFC 7578 §4.4).
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert_eq!(req.uploads()[0].content_type(), "text/plain");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The content's size in bytes.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert_eq!(req.uploads()[0].size(), 2);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the content is: in memory or in a temporary file.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert!(matches!(req.uploads()[0].data(), iomux::params::UploadData::Memory(_)));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn data(&self) -> &UploadData {
        &self.data
    }

    /// The temporary file's path, if the upload was spilled to one (Hunchentoot's upload
    /// pathname). It is removed when the request ends.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// assert_eq!(req.uploads()[0].path(), None); // 2 bytes stay in memory
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match &self.data {
            UploadData::Memory(_) => None,
            UploadData::File(file) => Some(file.path()),
        }
    }

    /// The content: the bytes in memory, or the temporary file read (a blocking read; the
    /// size is bounded by [`Config::max_body_size`](crate::Config::max_body_size)).
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n").unwrap();
    /// assert_eq!(req.uploads()[0].content()?.as_ref(), b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// Reading the temporary file failed.
    pub fn content(&self) -> io::Result<Bytes> {
        match &self.data {
            UploadData::Memory(bytes) => Ok(bytes.clone()),
            UploadData::File(file) => {
                let mut content = Vec::with_capacity(self.size.try_into().unwrap_or(0));
                File::open(file.path())?.read_to_end(&mut content)?;
                Ok(content.into())
            }
        }
    }

    /// Copy the content to `dest` (created or truncated), to keep it after the request;
    /// returns the bytes copied.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n").unwrap();
    /// let dest = std::env::temp_dir().join(format!("iomux-doc-copy-{}", std::process::id()));
    /// assert_eq!(req.uploads()[0].copy_to(&dest)?, 2);
    /// assert_eq!(std::fs::read(&dest)?, b"hi");
    /// std::fs::remove_file(dest)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// Reading the upload or writing `dest` failed.
    pub fn copy_to(&self, dest: impl AsRef<Path>) -> io::Result<u64> {
        match &self.data {
            UploadData::Memory(bytes) => {
                std::fs::write(dest, bytes)?;
                Ok(bytes.len() as u64)
            }
            UploadData::File(file) => std::fs::copy(file.path(), dest),
        }
    }
}

/// A temporary file holding a spilled [`Upload`], removed when dropped (with its request).
/// Only the server makes one: its name is unique and unpredictable, it is created anew
/// (`O_EXCL`, so never through an existing file or link) and, on Unix, readable and writable by
/// the owner only.
///
/// ```
/// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
/// if let iomux::params::UploadData::File(file) = req.uploads()[0].data() {
///     println!("{}", file.path().display());
/// }
/// # Ok::<(), iomux::http::StatusCode>(())
/// ```
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Write `content` to a new file in `dir`.
    fn create(dir: &Path, content: &[u8]) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            // A per-process random key (std's hash seed) makes names unpredictable.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(n);
            let name = format!(
                "iomux-upload-{}-{n}-{:016x}",
                std::process::id(),
                hasher.finish()
            );
            let path = dir.join(name);
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    // From here on, dropping `temp` removes the file, also on a failed write.
                    let temp = TempFile { path };
                    file.write_all(content)?;
                    return Ok(temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The file's path.
    ///
    /// ```
    /// # let req = iomux::Request::from_bytes(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 78\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.txt\"\r\n\r\nhi\r\n--B--\r\n")?;
    /// if let iomux::params::UploadData::File(file) = req.uploads()[0].data() {
    ///     assert!(file.path().exists());
    /// }
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("upload file {} not removed: {e}", self.path.display());
            }
        }
    }
}

/// Why a request body could not be read as a form.
///
/// ```
/// use iomux::params::FormError;
/// let err = FormError::TooManyFields { limit: 1000 };
/// assert_eq!(err.status(), 413);
/// assert_eq!(err.to_string(), "the form has more than 1000 fields");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// More fields (or multipart parts) than
    /// [`Config::max_form_fields`](crate::Config::max_form_fields): `413 Content Too Large`.
    TooManyFields {
        /// The limit.
        limit: usize,
    },
    /// Not a well-formed `multipart/form-data` body: `400 Bad Request`. The reason.
    Malformed(&'static str),
    /// An upload could not be written to its temporary file: `500 Internal Server Error`. The
    /// I/O error's text (logged, not sent to the client).
    Storage(String),
}

impl FormError {
    /// The status to answer with.
    ///
    /// ```
    /// assert_eq!(iomux::params::FormError::Malformed("no close delimiter").status(), 400);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            FormError::TooManyFields { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FormError::Malformed(_) => StatusCode::BAD_REQUEST,
            FormError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::TooManyFields { limit } => {
                write!(f, "the form has more than {limit} fields")
            }
            FormError::Malformed(why) => write!(f, "malformed multipart/form-data body: {why}"),
            FormError::Storage(e) => write!(f, "an upload could not be stored: {e}"),
        }
    }
}

impl std::error::Error for FormError {}

/// A parameter that a handler asked for could not be given: the reply is `400 Bad Request`
/// naming the parameter (or the [`FormError`]'s status). A handler returning
/// `Result<Handled, ParamError>` (or `Result<Reply, ParamError>`) is a
/// [`Handler`](crate::Handler): the error becomes that reply, so `?` is all it takes.
///
/// ```
/// use iomux::params::ParamError;
/// use iomux::{Handled, Request};
///
/// let handler = |req: &Request| -> Result<Handled, ParamError> {
///     let id: u64 = req.param_required("id")?;
///     Ok(format!("item {id}\n").into())
/// };
/// # fn is_handler(_: impl iomux::Handler) {}
/// # is_handler(handler);
/// let req = Request::from_bytes(b"GET /?id=x HTTP/1.1\r\nHost: h\r\n\r\n")?;
/// let reply = iomux::Reply::from(handler(&req).unwrap_err());
/// assert_eq!(reply.status(), 400);
/// assert_eq!(reply.body(), "400 Bad Request\nparameter \"id\": invalid value \"x\" (invalid digit found in string)\n");
/// # Ok::<(), iomux::http::StatusCode>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// The value does not parse as the type asked for.
    Invalid {
        /// The parameter's name.
        name: String,
        /// The value received.
        value: String,
        /// Why it does not parse (the type's `FromStr` error).
        reason: String,
    },
    /// A required parameter is absent.
    Missing {
        /// The parameter's name.
        name: String,
    },
    /// The form body, where the parameter was looked for, was refused.
    Form(FormError),
}

/// Longest part of a bad value quoted in a [`ParamError`]'s message, in characters.
const QUOTED_VALUE_CHARS: usize = 64;

impl ParamError {
    /// The status to answer with: `400`, or the [`FormError`]'s.
    ///
    /// ```
    /// use iomux::params::{FormError, ParamError};
    /// assert_eq!(ParamError::Missing { name: "q".into() }.status(), 400);
    /// assert_eq!(ParamError::Form(FormError::TooManyFields { limit: 2 }).status(), 413);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            ParamError::Invalid { .. } | ParamError::Missing { .. } => StatusCode::BAD_REQUEST,
            ParamError::Form(e) => e.status(),
        }
    }

    /// The parameter's name (`None` for a refused form).
    ///
    /// ```
    /// assert_eq!(iomux::params::ParamError::Missing { name: "q".into() }.name(), Some("q"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        match self {
            ParamError::Invalid { name, .. } | ParamError::Missing { name } => Some(name),
            ParamError::Form(_) => None,
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Invalid {
                name,
                value,
                reason,
            } => {
                let shown: String = value.chars().take(QUOTED_VALUE_CHARS).collect();
                let more = if shown.len() < value.len() { "…" } else { "" };
                write!(
                    f,
                    "parameter {name:?}: invalid value {shown:?}{more} ({reason})"
                )
            }
            ParamError::Missing { name } => write!(f, "parameter {name:?} is missing"),
            ParamError::Form(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ParamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParamError::Form(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FormError> for ParamError {
    fn from(e: FormError) -> ParamError {
        ParamError::Form(e)
    }
}

/// The error reply: `STATUS Reason`, then (except for a `500`, whose reason is logged when the
/// form is read) the error's text, as `text/plain`.
impl From<ParamError> for Reply {
    fn from(e: ParamError) -> Reply {
        let status = e.status();
        if status.is_server_error() {
            return Reply::error(status);
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        Reply::text(format!("{} {reason}\n{e}\n", status.as_u16())).with_status(status)
    }
}

/// As [`Reply`]'s conversion.
impl From<FormError> for Reply {
    fn from(e: FormError) -> Reply {
        Reply::from(ParamError::Form(e))
    }
}

/// The error reply (see [`Reply`]'s conversion).
impl From<ParamError> for Handled {
    fn from(e: ParamError) -> Handled {
        Handled::Reply(e.into())
    }
}

/// The error reply (see [`Reply`]'s conversion).
impl From<FormError> for Handled {
    fn from(e: FormError) -> Handled {
        Handled::Reply(e.into())
    }
}

/// A handler may return `Result<_, ParamError>`: `Ok` as it is, `Err` as its error reply.
impl<T: Into<Handled>> From<Result<T, ParamError>> for Handled {
    fn from(result: Result<T, ParamError>) -> Handled {
        match result {
            Ok(handled) => handled.into(),
            Err(e) => e.into(),
        }
    }
}
