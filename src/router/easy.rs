//! Easy handlers (Hunchentoot's `define-easy-handler`): a function whose parameters are named,
//! typed request parameters, declared with [`easy_handler!`](crate::easy_handler) and read with
//! the typed accessors of [`params`](crate::params).

/// Define an easy handler: a function whose parameters are request parameters, by name, each
/// parsed to its type, with optional defaults (Hunchentoot's `define-easy-handler`). Values come
/// from the query string, then the form body (see [`params`](crate::params)).
///
/// The macro defines `fn NAME(&Request) -> Handled`, a [`Handler`](crate::Handler) to give to a
/// [`Router`](crate::router::Router) or an [`Acceptor`](crate::Acceptor). Each parameter is
/// read before the body runs, according to how it is declared:
///
/// | declared as | read with | when absent |
/// |---|---|---|
/// | `name: T` | [`Request::param_required`](crate::Request::param_required) | `400`, naming it |
/// | `name: T = default` | [`Request::param`](crate::Request::param) | `default` |
/// | `name: Option<T>` | [`Request::param`](crate::Request::param) | `None` |
/// | `name: Vec<T>` | [`Request::param_list`](crate::Request::param_list) (every value) | empty |
///
/// `T` is any `FromStr` type; a value that does not parse answers the
/// [`ParamError`](crate::params::ParamError)'s `400 Bad Request` naming the parameter, and the
/// body does not run. A default is a value of the type, or a `&str` for a `String`
/// ([`EasyDefault`]); it is evaluated only when needed. `Option` and `Vec` are recognized by
/// those names written as such (`Option<u32>`, not `std::option::Option<u32>`).
///
/// The return type is anything `Into<Handled>`: a [`Reply`](crate::Reply), a `String`, or
/// [`Handled`](crate::Handled) to defer (save the context with
/// [`with_saved_context!`](crate::with_saved_context) and reply later). In the body, `return`
/// leaves it with a value of the return type, and
/// [`context::request()`](crate::context::request) is the request.
///
/// ```
/// use iomux::{easy_handler, Handled, Reply};
///
/// easy_handler! {
///     /// `GET /hello?name=Ada&times=2` → `Hello, Ada!` twice.
///     pub fn hello(name: String = "world", times: u32 = 1, tag: Vec<String>) -> Reply {
///         let mut text = format!("Hello, {name}!\n").repeat(times as usize);
///         text.push_str(&tag.join(","));
///         Reply::text(text)
///     }
/// }
///
/// easy_handler! {
///     /// A required parameter, an optional one, and a reply that comes later.
///     fn wait(channel: String, timeout: Option<u64>) -> Handled {
///         let saved = iomux::with_saved_context!();
///         // ... hand `saved` to an actor, which replies with `with_restored_context!`.
///         # let _ = (channel, timeout, saved);
///         Handled::Deferred
///     }
/// }
///
/// let router = iomux::router::Router::new().get("/hello", hello).get("/wait", wait);
/// # let _ = router;
/// ```
#[macro_export]
macro_rules! easy_handler {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident ( $($params:tt)* ) -> $ret:ty { $($body:tt)* }
    ) => {
        $(#[$attr])*
        $vis fn $name(request: &$crate::Request) -> $crate::Handled {
            $crate::__easy_params!(request; $($params)*);
            let body = move || -> $ret { $($body)* };
            ::core::convert::Into::<$crate::Handled>::into(body())
        }
    };
}

/// Reads the parameters of an [`easy_handler!`], one declaration at a time.
#[doc(hidden)]
#[macro_export]
macro_rules! __easy_params {
    ($req:ident; $(,)?) => {};
    ($req:ident; $param:ident : Option<$ty:ty> $(, $($rest:tt)*)?) => {
        let $param: ::core::option::Option<$ty> =
            $crate::__easy_try!($req.param::<$ty>(::core::stringify!($param)));
        $crate::__easy_params!($req; $($($rest)*)?);
    };
    ($req:ident; $param:ident : Vec<$ty:ty> $(, $($rest:tt)*)?) => {
        let $param: ::std::vec::Vec<$ty> =
            $crate::__easy_try!($req.param_list::<$ty>(::core::stringify!($param)));
        $crate::__easy_params!($req; $($($rest)*)?);
    };
    ($req:ident; $param:ident : $ty:ty = $default:expr $(, $($rest:tt)*)?) => {
        let $param: $ty = match $crate::__easy_try!($req.param::<$ty>(::core::stringify!($param))) {
            ::core::option::Option::Some(value) => value,
            ::core::option::Option::None => {
                <_ as $crate::router::EasyDefault<$ty>>::into_default($default)
            }
        };
        $crate::__easy_params!($req; $($($rest)*)?);
    };
    ($req:ident; $param:ident : $ty:ty $(, $($rest:tt)*)?) => {
        let $param: $ty =
            $crate::__easy_try!($req.param_required::<$ty>(::core::stringify!($param)));
        $crate::__easy_params!($req; $($($rest)*)?);
    };
}

/// The value of a parameter, or return its error reply from the handler.
#[doc(hidden)]
#[macro_export]
macro_rules! __easy_try {
    ($read:expr) => {
        match $read {
            ::core::result::Result::Ok(value) => value,
            ::core::result::Result::Err(error) => {
                let error: $crate::params::ParamError = error;
                return ::core::convert::Into::<$crate::Handled>::into(error);
            }
        }
    };
}

/// What may be given as the default of an [`easy_handler!`](crate::easy_handler) parameter of
/// type `T`: a `T`, or a `&str` for a `String`.
///
/// ```
/// use iomux::router::EasyDefault;
/// let s: String = EasyDefault::<String>::into_default("x");
/// let n: u32 = EasyDefault::<u32>::into_default(7);
/// assert_eq!((s.as_str(), n), ("x", 7));
/// ```
pub trait EasyDefault<T> {
    /// The default value.
    fn into_default(self) -> T;
}

impl<T> EasyDefault<T> for T {
    fn into_default(self) -> T {
        self
    }
}

impl EasyDefault<String> for &str {
    fn into_default(self) -> String {
        self.to_owned()
    }
}
