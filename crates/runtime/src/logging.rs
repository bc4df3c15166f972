//! runc-compatible logging: `{"level":"error","msg":"...","time":"..."}` lines in the `--log`
//! file with `--log-format json` (containerd reads the last error line), logrus-like text
//! otherwise. Library warnings arrive through `tracing`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

pub struct Logger {
    file: Option<Mutex<File>>,
    format: LogFormat,
    debug: bool,
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl Logger {
    pub fn new(path: Option<&Path>, format: LogFormat, debug: bool) -> Logger {
        let file = path
            .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok())
            .map(Mutex::new);
        Logger {
            file,
            format,
            debug,
        }
    }

    pub fn write(&self, level: Level, msg: &str) {
        if level == Level::DEBUG && !self.debug {
            return;
        }
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let line = match self.format {
            LogFormat::Json => {
                format!(
                    "{}\n",
                    serde_json::json!({"level": level_name(level), "msg": msg, "time": time})
                )
            }
            LogFormat::Text => format!(
                "time=\"{time}\" level={} msg={:?}\n",
                level_name(level),
                msg
            ),
        };
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// Errors always reach stderr too (as runc's fatal() does), besides the log file.
    pub fn error(&self, msg: &str) {
        self.write(Level::ERROR, msg);
        if self.file.is_some() {
            eprintln!("skiff-runtime: {msg}");
        }
    }
}

struct MsgVisitor(String);

impl Visit for MsgVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

struct LoggerLayer(&'static Logger);

impl<S: Subscriber> Layer<S> for LoggerLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = MsgVisitor(String::new());
        event.record(&mut v);
        self.0.write(*event.metadata().level(), &v.0);
    }
}

/// Installs the logger as the `tracing` subscriber and returns it.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> &'static Logger {
    let logger: &'static Logger = Box::leak(Box::new(Logger::new(path, format, debug)));
    let max = if debug {
        tracing::level_filters::LevelFilter::DEBUG
    } else {
        tracing::level_filters::LevelFilter::WARN
    };
    let _ = tracing_subscriber::registry()
        .with(LoggerLayer(logger).with_filter(max))
        .try_init();
    logger
}
