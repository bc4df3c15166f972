//! Healthchecks (`HEALTHCHECK`, `--health-*`): the image's check merged under the
//! request's, checked when the container is created, and run by one checker thread per
//! running container: every interval a probe runs as an exec in the container, its result
//! goes into the record's `State.Health` (status, failing streak, the last five results)
//! and a change of status becomes a `health_status: <status>` event. The checker follows
//! its container through policy restarts and is started again when the engine adopts a
//! running container.

use std::io::Read;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard_stubs::models::{
    ContainerConfig, ExecConfig, Health, HealthConfig, HealthStatusEnum, HealthcheckResult,
};

use crate::engine::{Ctr, Shared};
use crate::error::{Error, Result};
use crate::model::{now, Status};

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept (more ends with `...`).
const MAX_OUTPUT: usize = 4096;
/// Docker's smallest non-zero duration in a healthcheck.
const MIN_DURATION_NS: i64 = 1_000_000;

/// Docker's merge of a request's healthcheck over the image's: the request's test wins,
/// each duration or count left zero comes from the image.
pub(crate) fn merge(img: Option<HealthConfig>, user: Option<HealthConfig>) -> Option<HealthConfig> {
    let Some(mut u) = user else { return img };
    let Some(i) = img else { return Some(u) };
    if u.test.as_ref().is_none_or(Vec::is_empty) {
        u.test = i.test;
    }
    for (mine, theirs) in [
        (&mut u.interval, i.interval),
        (&mut u.timeout, i.timeout),
        (&mut u.start_period, i.start_period),
        (&mut u.start_interval, i.start_interval),
        (&mut u.retries, i.retries),
    ] {
        if mine.unwrap_or(0) == 0 {
            *mine = theirs;
        }
    }
    Some(u)
}

/// Checks a healthcheck as Docker does at create (its messages).
pub(crate) fn validate(hc: &HealthConfig) -> Result<()> {
    for (name, v) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        let v = v.unwrap_or(0);
        if v != 0 && v < MIN_DURATION_NS {
            return Err(Error::InvalidInput(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if hc.retries.unwrap_or(0) < 0 {
        return Err(Error::InvalidInput(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    match hc.test.as_deref() {
        None | Some([]) => Ok(()),
        Some([kind, ..]) if ["NONE", "CMD", "CMD-SHELL"].contains(&kind.as_str()) => {
            if kind != "NONE" && probe_args(hc.test.as_deref().unwrap_or_default()).is_none() {
                return Err(Error::InvalidInput(format!(
                    "Healthcheck {kind} needs a command"
                )));
            }
            Ok(())
        }
        Some([kind, ..]) => Err(Error::InvalidInput(format!(
            "unknown Healthcheck type {kind:?} (want NONE, CMD or CMD-SHELL)"
        ))),
    }
}

/// The probe's command line: `CMD` runs its arguments, `CMD-SHELL` its one string under
/// `/bin/sh -c`. `None` for `NONE` or no check.
pub(crate) fn probe_args(test: &[String]) -> Option<Vec<String>> {
    match test {
        [k, rest @ ..] if k == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        [k, rest @ ..] if k == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        _ => None,
    }
}

/// A healthcheck with Docker's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    args: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    start_interval: Duration,
    retries: i64,
}

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n.unsigned_abs()),
        _ => default,
    }
}

/// The container's healthcheck, if it has one that runs.
pub(crate) fn settings(cfg: &ContainerConfig) -> Option<Settings> {
    let hc = cfg.healthcheck.as_ref()?;
    Some(Settings {
        args: probe_args(hc.test.as_deref()?)?,
        interval: dur(hc.interval, DEFAULT_INTERVAL),
        timeout: dur(hc.timeout, DEFAULT_TIMEOUT),
        start_period: dur(hc.start_period, Duration::ZERO),
        start_interval: dur(hc.start_interval, DEFAULT_START_INTERVAL),
        retries: hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
    })
}

/// `ps`'s suffix: `(healthy)`, `(unhealthy)`, `(health: starting)`.
pub(crate) fn status_suffix(h: Option<&Health>) -> Option<String> {
    match h?.status? {
        HealthStatusEnum::STARTING => Some("(health: starting)".into()),
        HealthStatusEnum::HEALTHY => Some("(healthy)".into()),
        HealthStatusEnum::UNHEALTHY => Some("(unhealthy)".into()),
        _ => None,
    }
}

/// `ps --filter health=`: whether a container's health is `want` (`none`: no check).
pub(crate) fn filter_matches(h: Option<&Health>, want: &str) -> Result<bool> {
    let have = match h.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => "starting",
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        _ => "none",
    };
    if !["starting", "healthy", "unhealthy", "none"].contains(&want) {
        return Err(Error::InvalidInput(format!(
            "Unrecognised filter value for health: {want}"
        )));
    }
    Ok(have == want)
}

/// Go's `time.Duration` text for the messages Docker writes (`30s`, `1.5s`, `500ms`).
fn go_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        let s = d.as_secs_f64();
        let mut t = format!("{s:.9}");
        while t.ends_with('0') {
            t.pop();
        }
        format!("{}s", t.trim_end_matches('.'))
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A probe's output as Docker keeps it: the first 4096 bytes, `...` when cut.
fn truncate_output(mut out: Vec<u8>) -> String {
    let cut = out.len() > MAX_OUTPUT;
    out.truncate(MAX_OUTPUT);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if cut {
        s.push_str("...");
    }
    s
}

/// Records one probe result; the new status when it changed.
fn apply(
    h: &mut Health,
    res: HealthcheckResult,
    in_start_period: bool,
    retries: i64,
) -> Option<HealthStatusEnum> {
    let old = h.status;
    if res.exit_code == Some(0) {
        h.failing_streak = Some(0);
        h.status = Some(HealthStatusEnum::HEALTHY);
    } else if !(old == Some(HealthStatusEnum::STARTING) && in_start_period) {
        // Failures while starting within the start period do not count.
        let streak = h.failing_streak.unwrap_or(0) + 1;
        h.failing_streak = Some(streak);
        if streak >= retries {
            h.status = Some(HealthStatusEnum::UNHEALTHY);
        }
    }
    let log = h.log.get_or_insert_with(Vec::new);
    log.push(res);
    if log.len() > MAX_LOG_ENTRIES {
        let extra = log.len() - MAX_LOG_ENTRIES;
        log.drain(..extra);
    }
    (h.status != old).then_some(h.status).flatten()
}

/// A run starts: a container with a healthcheck is `starting` again, its streak reset
/// and its log kept (as Docker does). Also done by the checker when it sees the new run;
/// here so that the status is right as soon as the start returns.
pub(crate) fn on_start(rec: &mut crate::model::Record) {
    if settings(&rec.config).is_none() {
        return;
    }
    let h = rec.state.health.get_or_insert_with(Health::default);
    h.status = Some(HealthStatusEnum::STARTING);
    h.failing_streak = Some(0);
    h.log.get_or_insert_with(Vec::new);
}

/// Runs one probe in the container (an exec, bounded by the timeout).
fn probe(sh: &Shared, id: &str, s: &Settings) -> HealthcheckResult {
    let start = now();
    let done = |code: i64, output: String| HealthcheckResult {
        start: Some(start.clone()),
        end: Some(now()),
        exit_code: Some(code),
        output: Some(output),
    };
    let cfg = ExecConfig {
        cmd: Some(s.args.clone()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let mut proc = match sh.exec_process(id, &cfg) {
        Ok(p) => p,
        Err(e) => return done(-1, skiff_container::chain(&e)),
    };
    let helper = nix::unistd::Pid::from_raw(i32::try_from(proc.pid()).unwrap_or(0));
    let (tx, rx) = mpsc::channel();
    let stdout = proc.stdout.take();
    let stderr = proc.stderr.take();
    // Output in the order it comes, stdout and stderr together, as Docker keeps it.
    let (otx, orx) = mpsc::channel::<Vec<u8>>();
    for pipe in [
        stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
        stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let otx = otx.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if otx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(otx);
    std::thread::spawn(move || {
        let mut out = Vec::new();
        for chunk in orx {
            if out.len() <= MAX_OUTPUT {
                out.extend_from_slice(&chunk);
            }
        }
        let _ = tx.send((proc.wait().unwrap_or(-1), out));
    });
    match rx.recv_timeout(s.timeout) {
        Ok((code, out)) => {
            let failed = out.starts_with(b"exec failed: ");
            let code = if code == 125 && failed { 126 } else { code };
            done(code, truncate_output(out))
        }
        Err(_) => {
            // The helper forwards SIGTERM to the probe; it goes for good soon after.
            use nix::sys::signal::{kill, Signal};
            let _ = kill(helper, Signal::SIGTERM);
            if rx.recv_timeout(Duration::from_secs(2)).is_err() {
                let _ = kill(helper, Signal::SIGKILL);
            }
            done(
                -1,
                format!("Health check exceeded timeout ({})", go_duration(s.timeout)),
            )
        }
    }
}

/// Starts the checker of a container that has a healthcheck (a no-op otherwise). A
/// checker started earlier for the same container stops at its next look.
/// The caller may hold the container's lock: the thread takes it only once it runs.
pub(crate) fn start_checker(sh: &Arc<Shared>, ctr: &Arc<Ctr>) {
    use std::sync::atomic::Ordering;
    let gen = ctr.health_gen.fetch_add(1, Ordering::SeqCst) + 1;
    let (sh, ctr) = (sh.clone(), ctr.clone());
    let r = std::thread::Builder::new()
        .name("skiff-health".into())
        .spawn(move || {
            let settings = settings(&ctr.lock().rec.config);
            if let Some(s) = settings {
                check_loop(&sh, &ctr, gen, &s);
            }
        });
    if let Err(e) = r {
        tracing::error!("cannot start a healthcheck thread: {e}");
    }
}

fn check_loop(sh: &Arc<Shared>, ctr: &Arc<Ctr>, gen: u64, s: &Settings) {
    use std::sync::atomic::Ordering;
    // The run being checked (its StartedAt) and when it started here.
    let mut run = String::new();
    let mut run_t0 = Instant::now();
    let mut due: Option<Instant> = None;
    let interval = |st: &crate::engine::CtrState, t0: Instant| {
        let starting =
            st.rec.state.health.as_ref().and_then(|h| h.status) == Some(HealthStatusEnum::STARTING);
        if t0.elapsed() < s.start_period && starting {
            s.start_interval
        } else {
            s.interval
        }
    };
    loop {
        let mut st = ctr.lock();
        let id = st.rec.id.clone();
        loop {
            let status = st.rec.state.status;
            let over = st.removed
                || sh.shutdown.load(Ordering::SeqCst)
                || ctr.health_gen.load(Ordering::SeqCst) != gen
                || matches!(status, Status::Exited | Status::Dead | Status::Removing)
                || (status == Status::Created && st.rec.monitor.is_none());
            if over {
                return;
            }
            if status == Status::Running && st.rec.state.started_at != run {
                // A new run: starting again, the log kept (as Docker does).
                run = st.rec.state.started_at.clone();
                run_t0 = Instant::now();
                on_start(&mut st.rec);
                sh.persist_logged(&st.rec);
                due = Some(Instant::now() + interval(&st, run_t0));
            }
            let now_i = Instant::now();
            if status == Status::Running && due.is_some_and(|d| now_i >= d) {
                break;
            }
            let wait = due
                .map(|d| d.saturating_duration_since(now_i))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(10), Duration::from_secs(1));
            st = ctr
                .cv
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        let res = probe(sh, &id, s);
        let mut st = ctr.lock();
        if ctr.health_gen.load(Ordering::SeqCst) != gen
            || st.rec.state.started_at != run
            || st.removed
        {
            continue;
        }
        let in_start = run_t0.elapsed() < s.start_period;
        let h = st.rec.state.health.get_or_insert_with(Health::default);
        let changed = apply(h, res, in_start, s.retries);
        sh.persist_logged(&st.rec);
        due = Some(Instant::now() + interval(&st, run_t0));
        drop(st);
        if let Some(status) = changed {
            sh.event(&id, &format!("health_status: {status}"), &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn the_request_overrides_the_image_field_by_field() {
        let img = HealthConfig {
            interval: Some(5_000_000_000),
            retries: Some(7),
            ..hc(&["CMD", "true"])
        };
        let user = HealthConfig {
            interval: Some(1_000_000_000),
            ..Default::default()
        };
        let m = merge(Some(img.clone()), Some(user)).unwrap();
        assert_eq!(m.test, img.test);
        assert_eq!(m.interval, Some(1_000_000_000));
        assert_eq!(m.retries, Some(7));
        let none = merge(Some(img), Some(hc(&["NONE"]))).unwrap();
        assert!(settings(&ContainerConfig {
            healthcheck: Some(none),
            ..Default::default()
        })
        .is_none());
    }

    #[test]
    fn cmd_and_cmd_shell() {
        assert_eq!(
            probe_args(&["CMD".into(), "ls".into(), "/".into()]),
            Some(vec!["ls".to_string(), "/".into()])
        );
        assert_eq!(
            probe_args(&["CMD-SHELL".into(), "test -f /x".into()]),
            Some(vec![
                "/bin/sh".to_string(),
                "-c".into(),
                "test -f /x".into()
            ])
        );
        assert_eq!(probe_args(&["NONE".into()]), None);
    }

    #[test]
    fn bad_healthchecks_are_refused_with_dockers_messages() {
        let e = validate(&HealthConfig {
            interval: Some(10),
            ..hc(&["CMD", "true"])
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        let e = validate(&HealthConfig {
            retries: Some(-1),
            ..hc(&["CMD", "true"])
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "Retries in Healthcheck cannot be negative");
        assert!(validate(&hc(&["BOGUS", "x"])).is_err());
        assert!(validate(&hc(&["CMD"])).is_err());
    }

    fn result(code: i64) -> HealthcheckResult {
        HealthcheckResult {
            exit_code: Some(code),
            ..Default::default()
        }
    }

    #[test]
    fn status_follows_docker_rules() {
        let mut h = Health {
            status: Some(HealthStatusEnum::STARTING),
            failing_streak: Some(0),
            log: None,
        };
        // Failures within the start period do not count.
        assert_eq!(apply(&mut h, result(1), true, 2), None);
        assert_eq!(h.failing_streak, Some(0));
        assert_eq!(apply(&mut h, result(1), false, 2), None);
        assert_eq!(
            apply(&mut h, result(1), false, 2),
            Some(HealthStatusEnum::UNHEALTHY)
        );
        assert_eq!(h.failing_streak, Some(2));
        assert_eq!(
            apply(&mut h, result(0), false, 2),
            Some(HealthStatusEnum::HEALTHY)
        );
        assert_eq!(h.failing_streak, Some(0));
        for _ in 0..10 {
            apply(&mut h, result(0), false, 2);
        }
        assert_eq!(h.log.as_ref().unwrap().len(), MAX_LOG_ENTRIES);
    }

    #[test]
    fn output_and_durations_as_docker_writes_them() {
        let s = truncate_output(vec![b'a'; 5000]);
        assert_eq!(s.len(), MAX_OUTPUT + 3);
        assert!(s.ends_with("..."));
        assert_eq!(truncate_output(b"ok\n".to_vec()), "ok\n");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn ps_suffix_and_filter() {
        let h = Health {
            status: Some(HealthStatusEnum::STARTING),
            ..Default::default()
        };
        assert_eq!(
            status_suffix(Some(&h)).as_deref(),
            Some("(health: starting)")
        );
        assert!(filter_matches(Some(&h), "starting").unwrap());
        assert!(filter_matches(None, "none").unwrap());
        assert!(filter_matches(None, "bogus").is_err());
    }
}
