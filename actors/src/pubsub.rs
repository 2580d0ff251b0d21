//! The HTTP front of the pub/sub server: routes, subscriber and publisher endpoints, the demo
//! page. Each handler reads the request, then hands its saved context to the hub.

use std::rc::Rc;

use async_executor::LocalExecutor;
use iomux::http::header::{ALLOW, CONTENT_TYPE};
use iomux::http::{HeaderValue, StatusCode};
use iomux::{with_saved_context, Addr, Handled, Reply, Request};

use crate::backend::Backend;
use crate::config::PubSubConfig;
use crate::cors;
use crate::hub::{spawn_hub_with, HubMsg, Mode, NewMessage};
use crate::info::Format;
use crate::msgid::request_cursor;

/// The demo page served at `/`: a live feed / chat on any channel (plain HTML and JS).
pub const DEMO_PAGE: &str = include_str!("demo.html");

/// Methods of `/sub/{channel}` (as nchan lists them; `OPTIONS` and `HEAD` are answered too).
const SUBSCRIBER_METHODS: &str = "GET";
/// Methods of `/pub/{channel}` (as nchan lists them; `OPTIONS` and `HEAD` are answered too).
const PUBLISHER_METHODS: &str = "GET, POST, PUT, DELETE";

/// The nchan-compatible pub/sub server: give [`PubSub::handler`] to an
/// [`Acceptor`](iomux::Acceptor).
///
/// | route | |
/// |---|---|
/// | `GET /sub/{channel}` | long-poll subscriber; with `Accept: text/event-stream`, an EventSource stream |
/// | `POST`/`PUT /pub/{channel}` | publish the body; `201` if subscribers were there, else `202` |
/// | `GET`/`DELETE /pub/{channel}` | channel information / delete the channel (subscribers get `410`) |
/// | `OPTIONS` on both | CORS preflight |
/// | `GET /status` | server figures (`Accept: application/json` or `?format=json` for JSON) |
/// | `GET /` | the demo page |
///
/// ```no_run
/// let ex = async_executor::LocalExecutor::new();
/// let pubsub = iomux_actors::PubSub::new(&ex, iomux_actors::PubSubConfig::default());
/// let acceptor = iomux::Acceptor::bind("127.0.0.1:8080", pubsub.handler())?;
/// async_io::block_on(ex.run(acceptor.serve(&ex)))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct PubSub {
    hub: Addr<HubMsg>,
    config: Rc<PubSubConfig>,
}

impl PubSub {
    /// Start the hub on `executor` (in-process: this loop orders and stores its messages).
    pub fn new(executor: &LocalExecutor<'_>, config: PubSubConfig) -> PubSub {
        PubSub::with_backend(executor, config, Backend::InProcess)
    }

    /// Start the hub on `executor`, with its messages ordered and stored by `backend`: one
    /// [`HubGroup`](crate::HubGroup) member per worker, or (feature `redis`) a `RedisBackend`
    /// shared with other processes.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")] {
    /// use iomux_actors::{Backend, PubSub, PubSubConfig, RedisBackend};
    /// let ex = async_executor::LocalExecutor::new();
    /// let redis = RedisBackend::new("redis://127.0.0.1:6379")?;
    /// let pubsub = PubSub::with_backend(&ex, PubSubConfig::default(), Backend::Redis(redis));
    /// let acceptor = iomux::Acceptor::bind("127.0.0.1:8080", pubsub.handler())?;
    /// async_io::block_on(ex.run(acceptor.serve(&ex)))?;
    /// # }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_backend(
        executor: &LocalExecutor<'_>,
        config: PubSubConfig,
        backend: Backend,
    ) -> PubSub {
        let hub = spawn_hub_with(executor, config.clone(), backend);
        PubSub {
            hub,
            config: Rc::new(config),
        }
    }

    /// The hub's address, to publish from the application itself.
    pub fn hub(&self) -> &Addr<HubMsg> {
        &self.hub
    }

    /// The request handler.
    pub fn handler(&self) -> impl Fn(&Request) -> Handled + 'static {
        let this = self.clone();
        move |request: &Request| this.handle(request)
    }

    fn handle(&self, request: &Request) -> Handled {
        let path = request.path();
        if let Some(channel) = path.strip_prefix("/sub/") {
            return self.subscriber(request, channel);
        }
        if let Some(channel) = path.strip_prefix("/pub/") {
            return self.publisher(request, channel);
        }
        match (path.as_ref(), request.method()) {
            ("/", "GET" | "HEAD") => Reply::html(DEMO_PAGE).into(),
            ("/status", "GET" | "HEAD") => {
                let json = Format::of(request) == Format::Json
                    || request
                        .query()
                        .is_some_and(|q| q.split('&').any(|p| p == "format=json"));
                let format = if json { Format::Json } else { Format::Text };
                self.hub.do_send(HubMsg::Status {
                    format,
                    ctx: with_saved_context!(),
                });
                Handled::Deferred
            }
            ("/" | "/status", _) => method_not_allowed("GET, HEAD").into(),
            _ => Reply::error(StatusCode::NOT_FOUND).into(),
        }
    }

    /// The channel id, or the reply refusing it.
    fn channel_id(&self, channel: &str) -> Result<String, Reply> {
        if channel.is_empty()
            || channel.len() > self.config.max_channel_id_len
            || channel.chars().any(char::is_control)
        {
            return Err(Reply::text("invalid channel id\n").with_status(StatusCode::BAD_REQUEST));
        }
        Ok(channel.to_string())
    }

    /// A refusal, with the CORS headers that let a script of an allowed origin read it.
    fn refuse(&self, request: &Request, mut reply: Reply) -> Handled {
        let origin = cors::allowed_origin(&self.config.allow_origin, request);
        cors::add(reply.headers_mut(), origin, false);
        reply.into()
    }

    fn subscriber(&self, request: &Request, channel: &str) -> Handled {
        match request.method() {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                return cors::preflight(
                    &self.config.allow_origin,
                    request,
                    SUBSCRIBER_METHODS,
                    cors::SUBSCRIBER_HEADERS,
                )
                .into()
            }
            _ => return self.refuse(request, method_not_allowed(SUBSCRIBER_METHODS)),
        }
        let channel = match self.channel_id(channel) {
            Ok(channel) => channel,
            Err(refusal) => return self.refuse(request, refusal),
        };
        let cursor = match request_cursor(request) {
            Ok(cursor) => cursor,
            Err(e) => {
                let reply = Reply::with_type("text/plain", e.to_string());
                return self.refuse(request, reply.with_status(StatusCode::BAD_REQUEST));
            }
        };
        let mode = if request
            .header("accept")
            .is_some_and(|a| a.contains("text/event-stream"))
        {
            Mode::EventSource
        } else {
            Mode::LongPoll
        };
        self.hub.do_send(HubMsg::Subscribe {
            channel,
            cursor,
            mode,
            ctx: with_saved_context!(),
        });
        Handled::Deferred
    }

    fn publisher(&self, request: &Request, channel: &str) -> Handled {
        let channel = match self.channel_id(channel) {
            Ok(channel) => channel,
            Err(refusal) => return self.refuse(request, refusal),
        };
        let format = Format::of(request);
        let ctx = with_saved_context!();
        let msg = match request.method() {
            "POST" | "PUT" => {
                let header = |name| {
                    request
                        .header_bytes(name)
                        .and_then(|v| HeaderValue::from_bytes(v).ok())
                };
                let message = NewMessage {
                    body: request.body().clone(),
                    content_type: header(CONTENT_TYPE.as_str()),
                    event: header("x-eventsource-event"),
                };
                HubMsg::Publish {
                    channel,
                    message,
                    format,
                    ctx,
                }
            }
            "GET" | "HEAD" => HubMsg::Info {
                channel,
                format,
                ctx,
            },
            "DELETE" => HubMsg::Delete {
                channel,
                format,
                ctx,
            },
            "OPTIONS" => {
                return cors::preflight(
                    &self.config.allow_origin,
                    request,
                    PUBLISHER_METHODS,
                    cors::PUBLISHER_HEADERS,
                )
                .into()
            }
            _ => return self.refuse(request, method_not_allowed(PUBLISHER_METHODS)),
        };
        // The hub answers at once; a publish must not get an error at shutdown for a
        // message it stores.
        iomux::context::keep_on_shutdown();
        self.hub.do_send(msg);
        Handled::Deferred
    }
}

fn method_not_allowed(allow: &'static str) -> Reply {
    Reply::error(StatusCode::METHOD_NOT_ALLOWED).header(ALLOW, HeaderValue::from_static(allow))
}
