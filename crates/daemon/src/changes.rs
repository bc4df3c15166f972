//! `docker import --change`: the Dockerfile instructions that set an image's run config.

use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Builds the run config from `changes` (`CMD ["sh"]`, `ENV A=1`, `WORKDIR /x`, ...).
pub fn config_from_changes(changes: &[&str]) -> Result<Option<oci_spec::image::Config>, ApiError> {
    let mut c = Map::new();
    let mut any = false;
    for change in changes.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        any = true;
        let (instr, args) = change
            .split_once(char::is_whitespace)
            .unwrap_or((change, ""));
        let args = args.trim();
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => {
                c.insert("Cmd".into(), json!(command(args)?));
            }
            "ENTRYPOINT" => {
                c.insert("Entrypoint".into(), json!(command(args)?));
            }
            "ENV" => {
                let env = c.entry("Env").or_insert_with(|| json!([]));
                for (k, v) in pairs(args, "ENV")? {
                    if let Some(a) = env.as_array_mut() {
                        a.retain(|e| e.as_str().is_none_or(|e| !e.starts_with(&format!("{k}="))));
                        a.push(json!(format!("{k}={v}")));
                    }
                }
            }
            "LABEL" => {
                let labels = c.entry("Labels").or_insert_with(|| json!({}));
                for (k, v) in pairs(args, "LABEL")? {
                    labels[k] = json!(v);
                }
            }
            "WORKDIR" => {
                c.insert("WorkingDir".into(), json!(args));
            }
            "USER" => {
                c.insert("User".into(), json!(args));
            }
            "STOPSIGNAL" => {
                c.insert("StopSignal".into(), json!(args));
            }
            "EXPOSE" => {
                let ports = c.entry("ExposedPorts").or_insert_with(|| json!({}));
                for p in args.split_whitespace() {
                    let p = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                    ports[p] = json!({});
                }
            }
            "VOLUME" => {
                let vols = c.entry("Volumes").or_insert_with(|| json!({}));
                let list: Vec<String> = if args.starts_with('[') {
                    serde_json::from_str(args).map_err(|e| {
                        ApiError::bad_request(format!("invalid VOLUME change {args:?}: {e}"))
                    })?
                } else {
                    args.split_whitespace().map(str::to_owned).collect()
                };
                for v in list {
                    vols[v] = json!({});
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{other} is not a valid change command (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR)"
                )))
            }
        }
    }
    if !any {
        return Ok(None);
    }
    serde_json::from_value(Value::Object(c))
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid change: {e}")))
}

/// JSON (exec) form, or the shell form wrapped in `/bin/sh -c`.
fn command(args: &str) -> Result<Vec<String>, ApiError> {
    if args.starts_with('[') {
        return serde_json::from_str(args)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON array {args:?}: {e}")));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), args.into()])
}

/// `K=V K2="V 2"` or the legacy `K V` form.
fn pairs(args: &str, what: &str) -> Result<Vec<(String, String)>, ApiError> {
    if !args.contains('=') {
        return match args.split_once(char::is_whitespace) {
            Some((k, v)) => Ok(vec![(k.to_owned(), v.trim().to_owned())]),
            None => Err(ApiError::bad_request(format!(
                "{what} needs a value: {args:?}"
            ))),
        };
    }
    let mut out = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request(format!("{what} {args:?}: expected KEY=VALUE")))?;
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| ApiError::bad_request(format!("{what} {args:?}: unclosed quote")))?;
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((k.trim().to_owned(), v));
        rest = next.trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_build_a_config() {
        let c = config_from_changes(&[
            r#"CMD ["/bin/hello", "x"]"#,
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "WORKDIR /srv",
            "EXPOSE 80 53/udp",
            "LABEL team=a",
            "ENTRYPOINT echo hi",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.cmd().as_ref().unwrap(), &["/bin/hello", "x"]);
        assert_eq!(c.env().as_ref().unwrap(), &["B=two words", "A=3"]);
        assert_eq!(c.working_dir().as_deref(), Some("/srv"));
        assert_eq!(
            c.entrypoint().as_ref().unwrap(),
            &["/bin/sh", "-c", "echo hi"]
        );
        let mut ports = c.exposed_ports().clone().unwrap();
        ports.sort();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels().as_ref().unwrap()["team"], "a");
        assert!(config_from_changes(&["RUN x"]).is_err());
        assert!(config_from_changes(&[]).unwrap().is_none());
    }
}
