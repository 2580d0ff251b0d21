//! `iomux-pubsub`: a ready nchan-compatible long-poll / EventSource pub/sub server.
//!
//! ```sh
//! cargo run --release -p iomux-actors --bin iomux-pubsub -- --listen 127.0.0.1:8080
//! ```
//!
//! Open http://127.0.0.1:8080/ for the demo page, or from a terminal:
//!
//! ```sh
//! curl -i http://127.0.0.1:8080/sub/news &                       # waits for a message
//! curl -i -d 'hello' http://127.0.0.1:8080/pub/news              # 201: the subscriber gets it
//! curl -N -H 'Accept: text/event-stream' http://127.0.0.1:8080/sub/news   # EventSource
//! curl http://127.0.0.1:8080/status
//! ```
//!
//! `--workers N` runs N event loops on N threads (0: one per core) on one port, with one hub
//! per loop in a group: each channel is ordered by one worker and reaches the subscribers of
//! all. Several servers share their channels through one Redis (`--redis redis://127.0.0.1:6379`):
//! a message published on any of them reaches the subscribers of all, and a subscriber resumes
//! its cursor on any of them.
//!
//! Every flag can also be given in the environment as `IOMUX_` and the flag's name in capitals
//! (`--hold-timeout 30s` = `IOMUX_HOLD_TIMEOUT=30s`); flags win. Logs go to stderr. SIGINT or
//! SIGTERM stops the server gracefully (waiting long-polls get 503, streams end).

use std::process::exit;
use std::time::Duration;

use async_executor::LocalExecutor;
use iomux::{Acceptor, Config};
#[cfg(feature = "redis")]
use iomux_actors::RedisBackend;
use iomux_actors::{Backend, HubGroup, PubSub, PubSubConfig};

/// Built without the `redis` feature, no Redis backend exists: `--redis` is refused.
#[cfg(not(feature = "redis"))]
#[derive(Clone)]
enum RedisBackend {}

/// The Redis backend for `url`; with `refuse`, subscribers get `503` while Redis is down.
fn redis_backend(url: &str, refuse: bool) -> std::io::Result<RedisBackend> {
    #[cfg(feature = "redis")]
    return RedisBackend::new(url).map(|backend| {
        backend.while_down(if refuse {
            iomux_actors::WhileDown::Refuse
        } else {
            iomux_actors::WhileDown::Wait
        })
    });
    #[cfg(not(feature = "redis"))]
    let _ = refuse;
    #[cfg(not(feature = "redis"))]
    Err(std::io::Error::other(format!(
        "cannot use Redis at {url}: this iomux-pubsub was built without the `redis` feature \
         (cargo build --release --features iomux-actors/redis --bin iomux-pubsub)"
    )))
}

/// A Redis node's backend, or else `otherwise`.
fn backend(redis: Option<&RedisBackend>, otherwise: impl FnOnce() -> Backend) -> Backend {
    match redis {
        #[cfg(feature = "redis")]
        Some(redis) => Backend::Redis(redis.clone()),
        #[cfg(not(feature = "redis"))]
        Some(never) => match *never {},
        None => otherwise(),
    }
}

const USAGE: &str = "\
usage: iomux-pubsub [FLAGS]

An nchan-compatible pub/sub server: long-poll and EventSource subscribers on
GET /sub/{channel}, publishers on POST/PUT/GET/DELETE /pub/{channel}, figures on
GET /status, a demo page on GET /.

flags (each also read from the environment as IOMUX_<FLAG>, e.g. IOMUX_LISTEN):
  --listen HOST:PORT            address (default 127.0.0.1:8080; port 0 picks one)
  --buffer-length N             messages kept per channel (default 10; 0 keeps none)
  --buffer-age DURATION         age at which buffered messages are dropped (default 1h)
  --hold-timeout DURATION       long-poll wait before 408, 0 = forever (default 0)
  --first-message RULE          oldest | newest | N (default oldest)
  --heartbeat DURATION          EventSource keep-alive comment interval, 0 = none (default 30s)
  --max-subscribers N           subscribers per channel, 0 = no limit (default 0)
  --channel-idle-timeout DURATION  forget empty channels after this (default 5m)
  --allow-origin POLICY         CORS: echo | none | an origin such as https://example.com or * (default echo)
  --max-message-size BYTES      largest published message, larger gets 413 (default 1048576)
  --max-connections N           open connections before accepting pauses (default 16384)
  --keep-alive-timeout DURATION idle keep-alive connections are closed after this (default 60s)
  --head-timeout DURATION       time to send a request head, from its first byte (default 10s)
  --body-timeout DURATION       time to send a request body (default 30s)
  --write-timeout DURATION      time a client may take to read a reply (default 30s)
  --workers N                   event loops (threads) on the port, 0 = one per core (default 1)
  --redis URL                   share channels with other servers through this Redis,
                                e.g. redis://127.0.0.1:6379 (default: none, in-process hub)
  --redis-down wait|refuse      while Redis is down, subscribers keep waiting (default) or
                                get 503 with Retry-After (publishes get 503 either way)
  --log LEVEL                   error | warn | info | debug | trace (default info)
  -h, --help                    this text

DURATION: a number with a unit (250ms, 30s, 5m, 1h); a bare number is seconds.";

/// Everything the command line sets.
struct Settings {
    listen: String,
    pubsub: PubSubConfig,
    server: Config,
    log: log::LevelFilter,
    /// The Redis that orders and stores the messages (none: this process does).
    redis: Option<String>,
    /// While Redis is down, answer subscribers `503` instead of keeping them waiting.
    redis_refuse: bool,
    /// Event loops; 0: one per core.
    workers: usize,
}

fn main() {
    let settings = parse(std::env::args().skip(1).collect()).unwrap_or_else(|message| {
        eprintln!("iomux-pubsub: {message}\n(try --help)");
        exit(2)
    });
    log::set_max_level(settings.log);
    if log::set_logger(&StderrLogger).is_err() {
        eprintln!("iomux-pubsub: a logger was already set");
    }
    if let Err(e) = run(settings) {
        log::error!("{e}");
        exit(1);
    }
}

fn run(settings: Settings) -> std::io::Result<()> {
    let redis = match &settings.redis {
        Some(url) => {
            let redis = redis_backend(url, settings.redis_refuse)?;
            log::info!("channels are shared through Redis at {url}");
            Some(redis)
        }
        None => None,
    };
    let workers = match settings.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    if workers > 1 {
        return run_workers(settings, workers, redis);
    }
    let backend = backend(redis.as_ref(), || Backend::InProcess);
    let ex = LocalExecutor::new();
    let pubsub = PubSub::with_backend(&ex, settings.pubsub, backend);
    let acceptor = Acceptor::builder()
        .listen(settings.listen.as_str())
        .config(settings.server)
        .bind(pubsub.handler())?;
    stop_on_signals(acceptor.stop_handle())?;
    println!("listening on http://{}", acceptor.local_addr());
    log::info!(
        "iomux-pubsub {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        acceptor.local_addr()
    );
    async_io::block_on(ex.run(acceptor.serve(&ex)))?;
    log::info!("stopped");
    Ok(())
}

/// `workers` event loops on one port, each with its hub: in a group (each channel ordered by one
/// of them), or each a node of the Redis.
fn run_workers(
    settings: Settings,
    workers: usize,
    redis: Option<RedisBackend>,
) -> std::io::Result<()> {
    let group = HubGroup::new(workers);
    let config = settings.pubsub;
    let running = Acceptor::builder()
        .listen(settings.listen.as_str())
        .config(settings.server)
        .workers(workers)
        .bind_workers(move |worker: &iomux::Worker<'_>| {
            let backend = backend(redis.as_ref(), || {
                Backend::Group(group.member(worker.index()))
            });
            PubSub::with_backend(worker.executor(), config.clone(), backend).handler()
        })?;
    stop_on_signals(running.stop_handle())?;
    println!("listening on http://{}", running.local_addr());
    log::info!(
        "iomux-pubsub {} listening on {} with {workers} workers",
        env!("CARGO_PKG_VERSION"),
        running.local_addr()
    );
    running.join()?;
    log::info!("stopped");
    Ok(())
}

/// SIGINT / SIGTERM stop the acceptor gracefully; a second one exits at once.
fn stop_on_signals(stop: iomux::StopHandle) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if stop.is_stopped() {
                    eprintln!("iomux-pubsub: signal {signal} again: exiting now");
                    exit(130);
                }
                log::info!("signal {signal}: stopping");
                stop.stop();
            }
        })?;
    Ok(())
}

fn parse(args: Vec<String>) -> Result<Settings, String> {
    let mut settings = Settings {
        listen: "127.0.0.1:8080".into(),
        pubsub: PubSubConfig::default(),
        server: Config::default(),
        log: log::LevelFilter::Info,
        redis: None,
        redis_refuse: false,
        workers: 1,
    };
    // The environment first, then the flags over it.
    let mut pairs: Vec<(String, String)> = FLAGS
        .iter()
        .filter_map(|flag| {
            let var = format!("IOMUX_{}", flag.replace('-', "_").to_uppercase());
            std::env::var(&var)
                .ok()
                .map(|value| (flag.to_string(), value))
        })
        .collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_string(), value)
            }
        };
        if !FLAGS.contains(&name.as_str()) {
            return Err(format!("unknown flag --{name}"));
        }
        pairs.push((name, value));
    }
    for (name, value) in pairs {
        apply(&mut settings, &name, &value).map_err(|e| format!("--{name} {value:?}: {e}"))?;
    }
    Ok(settings)
}

const FLAGS: &[&str] = &[
    "listen",
    "buffer-length",
    "buffer-age",
    "hold-timeout",
    "first-message",
    "heartbeat",
    "max-subscribers",
    "channel-idle-timeout",
    "allow-origin",
    "max-message-size",
    "max-connections",
    "keep-alive-timeout",
    "head-timeout",
    "body-timeout",
    "write-timeout",
    "workers",
    "redis",
    "redis-down",
    "log",
];

fn apply(s: &mut Settings, name: &str, value: &str) -> Result<(), String> {
    let number = || {
        value
            .parse::<usize>()
            .map_err(|_| "expected a whole number".to_string())
    };
    match name {
        "listen" => s.listen = value.to_string(),
        "buffer-length" => s.pubsub.buffer_length = number()?,
        "buffer-age" => s.pubsub.buffer_age = duration(value)?,
        "hold-timeout" => s.pubsub.hold_timeout = duration(value)?,
        "first-message" => s.pubsub.first_message = value.parse()?,
        "heartbeat" => s.pubsub.heartbeat_interval = duration(value)?,
        "max-subscribers" => s.pubsub.max_subscribers_per_channel = number()?,
        "channel-idle-timeout" => s.pubsub.channel_idle_timeout = duration(value)?,
        "allow-origin" => {
            s.pubsub.allow_origin = value.parse().unwrap_or(iomux_actors::AllowOrigin::Echo)
        }
        "max-message-size" => s.server.max_body_size = number()?,
        "max-connections" => s.server.max_connections = number()?,
        "keep-alive-timeout" => s.server.keep_alive_timeout = duration(value)?,
        "head-timeout" => s.server.head_timeout = duration(value)?,
        "body-timeout" => s.server.body_timeout = duration(value)?,
        "write-timeout" => s.server.write_timeout = duration(value)?,
        "workers" => s.workers = number()?,
        "redis" if value.is_empty() => s.redis = None,
        "redis" => {
            redis_backend(value, false).map_err(|e| e.to_string())?;
            s.redis = Some(value.to_string());
        }
        "redis-down" => {
            s.redis_refuse = match value {
                "wait" => false,
                "refuse" => true,
                _ => return Err("expected wait or refuse".into()),
            }
        }
        "log" => {
            s.log = value
                .parse()
                .map_err(|_| "expected error, warn, info, debug or trace")?
        }
        _ => return Err("unknown flag".into()),
    }
    Ok(())
}

/// `250ms`, `30s`, `5m`, `1h`, or a bare number of seconds.
fn duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, not {value:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
    })
}

/// Writes log records to stderr: `LEVEL target: message`.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
