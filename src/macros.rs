//! The context macros: Hunchentoot's WITH-SAVED-SPECIALS, WITH-RESTORED-SPECIALS and
//! SAFE-LAMBDA, and declarations of context locals.

/// Snapshot the current request context into a [`SavedContext`](crate::SavedContext)
/// (IOMUX-ACCEPTOR's WITH-SAVED-SPECIALS). Context locals can be given override values for the
/// snapshot: `with_saved_context!(USER => name, DEPTH => 2)`.
///
/// ```
/// iomux::context_local! { static USER: &'static str = "nobody"; }
/// let saved = iomux::with_saved_context!(USER => "alice");
/// assert_eq!(iomux::with_restored_context!(saved, { USER.get() }), "alice");
/// ```
#[macro_export]
macro_rules! with_saved_context {
    () => {
        $crate::SavedContext::capture()
    };
    ($($local:path => $value:expr),+ $(,)?) => {
        $crate::SavedContext::capture()$(.with_local(&$local, $value))+
    };
}

/// Run a block with a [`SavedContext`](crate::SavedContext) current again
/// (WITH-RESTORED-SPECIALS): the request, its reply under construction, session, acceptor and
/// context locals are those of the snapshot. The previous context is back afterwards, also when
/// the block panics; restores nest. The block's value is the macro's value. The block runs in a
/// closure: `return` and `?` leave the block, not the enclosing function; for `.await` inside,
/// use [`SavedContext::scope`](crate::SavedContext::scope).
///
/// ```no_run
/// # fn f(ctx: iomux::SavedContext) {
/// iomux::with_restored_context!(ctx, {
///     let who = iomux::context::request().peer_addr();
///     iomux::context::send_body(format!("hello again, {who}\n")).ok();
/// });
/// # }
/// ```
#[macro_export]
macro_rules! with_restored_context {
    ($ctx:expr, $body:block) => {
        $crate::SavedContext::restore(&$ctx, || $body)
    };
}

/// A closure that captures the current context now and restores it on every call
/// (Hunchentoot's SAFE-LAMBDA). The closure is `move`.
///
/// ```
/// iomux::context_local! { static N: u32 = 0; }
/// let add = N.scope(5, || iomux::safe_closure!(|x: u32| x + N.get()));
/// assert_eq!(N.get(), 0);
/// assert_eq!(add(1), 6);
/// ```
#[macro_export]
macro_rules! safe_closure {
    (|$($arg:ident $(: $ty:ty)?),* $(,)?| $body:expr) => {{
        let __iomux_saved = $crate::SavedContext::capture();
        move |$($arg $(: $ty)?),*| __iomux_saved.restore(|| $body)
    }};
    (move |$($arg:ident $(: $ty:ty)?),* $(,)?| $body:expr) => {
        $crate::safe_closure!(|$($arg $(: $ty)?),*| $body)
    };
}

/// Declare context locals: values that belong to the request context like Lisp special
/// variables, captured by [`with_saved_context!`] and brought back by
/// [`with_restored_context!`]. The initializer gives the value wherever none was set.
///
/// ```
/// iomux::context_local! {
///     /// Language of the current user.
///     pub static LANG: String = "en".to_string();
///     static VISITS: u32 = 0;
/// }
/// LANG.set("fr".into());
/// assert_eq!(LANG.get(), "fr");
/// assert_eq!(VISITS.get(), 0);
/// ```
#[macro_export]
macro_rules! context_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::context::ContextLocal<$ty> = {
            fn __iomux_init() -> $ty {
                $init
            }
            $crate::context::ContextLocal::new(__iomux_init)
        };
        $crate::context_local!($($rest)*);
    };
}
