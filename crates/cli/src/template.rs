//! A small Go `text/template` subset for `--format`: `{{.Field}}`, nested `{{.A.B}}`,
//! `{{json .}}`, pipes, the functions the Docker CLI offers (`json upper lower title join split
//! index println len pad truncate`), `{{if}}`/`{{else}}`/`{{range}}`/`{{end}}`, and `{{- -}}` trims.
//! Values are JSON values, printed the way Go prints decoded JSON.

use std::fmt::Write as _;

use serde_json::Value;

/// A template that failed to parse or run.
#[derive(Debug, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

type Result<T> = std::result::Result<T, TemplateError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError(msg.into()))
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty: `.`), with `$` meaning the root.
    Field(Vec<String>, bool),
    /// `$name.A.B`.
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Ident(String),
    Sub(Pipeline),
}

type Command = Vec<Arg>;
type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    /// `range [[$k,] $v :=] pipeline`.
    Range(
        Option<(Option<String>, String)>,
        Pipeline,
        Vec<Node>,
        Vec<Node>,
    ),
    With(Pipeline, Vec<Node>, Vec<Node>),
    /// `$x := pipeline`.
    Assign(String, Pipeline),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return err("unclosed action");
        };
        let mut inner = &after[..end];
        if let Some(i) = inner.strip_prefix('-') {
            if i.starts_with(char::is_whitespace) || i.is_empty() {
                text = text.trim_end();
                inner = i;
            }
        }
        trim_next = false;
        if let Some(i) = inner.strip_suffix('-') {
            if i.ends_with(char::is_whitespace) || i.is_empty() {
                trim_next = true;
                inner = i;
            }
        }
        if !text.is_empty() {
            out.push(Tok::Text(text.to_owned()));
        }
        out.push(Tok::Action(inner.trim().to_owned()));
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Tok::Text(text.to_owned()));
    }
    Ok(out)
}

/// Splits an action into words: strings, parentheses and pipes stay whole.
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut w = String::from('"');
            let mut closed = false;
            while let Some(d) = chars.next() {
                if d == c {
                    closed = true;
                    break;
                }
                if d == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => w.push('\n'),
                        Some('t') => w.push('\t'),
                        Some(e) => w.push(e),
                        None => break,
                    }
                } else {
                    w.push(d);
                }
            }
            if !closed {
                return err("unterminated quoted string");
            }
            out.push(w);
        } else if c == '(' || c == ')' || c == '|' {
            chars.next();
            out.push(c.to_string());
        } else {
            let mut w = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() || d == '(' || d == ')' || d == '|' {
                    break;
                }
                w.push(d);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn parse_pipeline(ws: &[String], pos: &mut usize) -> Result<Pipeline> {
    let mut pipe = Vec::new();
    let mut cmd = Vec::new();
    while *pos < ws.len() {
        let w = &ws[*pos];
        *pos += 1;
        match w.as_str() {
            "|" => {
                if cmd.is_empty() {
                    return err("missing command before |");
                }
                pipe.push(std::mem::take(&mut cmd));
            }
            ")" => {
                *pos -= 1;
                break;
            }
            "(" => {
                let sub = parse_pipeline(ws, pos)?;
                if ws.get(*pos).map(String::as_str) != Some(")") {
                    return err("unclosed left paren");
                }
                *pos += 1;
                cmd.push(Arg::Sub(sub));
            }
            _ => cmd.push(parse_arg(w)?),
        }
    }
    if cmd.is_empty() {
        return err("missing value for command");
    }
    pipe.push(cmd);
    Ok(pipe)
}

fn parse_arg(w: &str) -> Result<Arg> {
    if let Some(s) = w.strip_prefix('"') {
        return Ok(Arg::Str(s.to_owned()));
    }
    if w == "." {
        return Ok(Arg::Field(Vec::new(), false));
    }
    if w == "$" {
        return Ok(Arg::Field(Vec::new(), true));
    }
    if let Some(p) = w.strip_prefix("$.") {
        return Ok(Arg::Field(p.split('.').map(str::to_owned).collect(), true));
    }
    if let Some(p) = w.strip_prefix('.') {
        return Ok(Arg::Field(p.split('.').map(str::to_owned).collect(), false));
    }
    if let Some(v) = w.strip_prefix('$') {
        let mut parts = v.split('.');
        let name = parts.next().unwrap_or("").to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return err(format!("bad variable {w:?}"));
        }
        return Ok(Arg::Var(name, parts.map(str::to_owned).collect()));
    }
    if w == "true" || w == "false" {
        return Ok(Arg::Bool(w == "true"));
    }
    if let Ok(n) = w.parse::<f64>() {
        return Ok(Arg::Num(n));
    }
    if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Ok(Arg::Ident(w.to_owned()));
    }
    err(format!("unexpected {w:?} in command"))
}

/// `$name` -> `name`.
fn var_name(w: &str) -> Result<String> {
    match w.strip_prefix('$') {
        Some(n) if !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            Ok(n.to_owned())
        }
        _ => err(format!("expected a variable, got {w:?}")),
    }
}

fn parse_nodes(toks: &[Tok], pos: &mut usize, nested: bool) -> Result<(Vec<Node>, &'static str)> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s.clone())),
            Tok::Action(a) if a.starts_with("/*") => {}
            Tok::Action(a) => {
                let ws = words(a)?;
                let Some(first) = ws.first() else {
                    return err("missing value for command");
                };
                match first.as_str() {
                    "end" if nested => return Ok((nodes, "end")),
                    "else" if nested => {
                        if ws.len() > 1 {
                            return err("else with arguments is not supported");
                        }
                        return Ok((nodes, "else"));
                    }
                    "end" | "else" => return err(format!("unexpected {{{{{first}}}}}")),
                    "if" | "range" | "with" => {
                        let mut p = 1;
                        // `range $v :=` / `range $k, $v :=`.
                        let mut vars = None;
                        if first == "range" {
                            match ws.iter().position(|w| w == ":=") {
                                Some(2) => vars = Some((None, var_name(&ws[1])?)),
                                Some(3) => {
                                    let k = ws[1].strip_suffix(',').ok_or_else(|| {
                                        TemplateError(
                                            "range can only initialize variables: want $k, $v"
                                                .into(),
                                        )
                                    })?;
                                    vars = Some((Some(var_name(k)?), var_name(&ws[2])?));
                                }
                                Some(_) => return err("too many declarations in range"),
                                None => {}
                            }
                            if let Some((k, _)) = &vars {
                                p = if k.is_some() { 4 } else { 3 };
                            }
                        }
                        let pipe = parse_pipeline(&ws, &mut p)?;
                        let (body, how) = parse_nodes(toks, pos, true)?;
                        let alt = if how == "else" {
                            let (alt, how) = parse_nodes(toks, pos, true)?;
                            if how != "end" {
                                return err("expected end");
                            }
                            alt
                        } else {
                            Vec::new()
                        };
                        nodes.push(match first.as_str() {
                            "if" => Node::If(pipe, body, alt),
                            "range" => Node::Range(vars, pipe, body, alt),
                            _ => Node::With(pipe, body, alt),
                        });
                    }
                    _ if ws.get(1).is_some_and(|w| w == ":=" || w == "=") => {
                        let name = var_name(first)?;
                        let mut p = 2;
                        let pipe = parse_pipeline(&ws, &mut p)?;
                        nodes.push(Node::Assign(name, pipe));
                    }
                    _ => {
                        let mut p = 0;
                        let pipe = parse_pipeline(&ws, &mut p)?;
                        if p < ws.len() {
                            return err("unexpected ) in command");
                        }
                        nodes.push(Node::Action(pipe));
                    }
                }
            }
        }
    }
    if nested {
        return err("unexpected EOF: missing {{end}}");
    }
    Ok((nodes, ""))
}

/// Go's truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A value printed the way Go's template prints decoded JSON.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_inner).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_inner(&o[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn go_inner(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        _ => go_string(v),
    }
}

/// JSON as Go's encoder writes it: `<`, `>`, `&` (which appear only inside strings) escaped.
pub fn go_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_string(other),
    }
}

fn as_usize(v: &Value) -> Result<usize> {
    v.as_f64()
        .filter(|f| *f >= 0.0)
        .map(|f| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = f as usize;
            n
        })
        .ok_or_else(|| TemplateError(format!("expected a number, got {}", go_string(v))))
}

fn call(name: &str, args: Vec<Value>) -> Result<Value> {
    let one = |args: &[Value]| -> Result<Value> {
        match args {
            [v] => Ok(v.clone()),
            _ => err(format!(
                "wrong number of args for {name}: want 1 got {}",
                args.len()
            )),
        }
    };
    Ok(match name {
        "json" => {
            let v = one(&args)?;
            Value::String(go_json(&v))
        }
        "upper" => Value::String(as_str(&one(&args)?).to_uppercase()),
        "lower" => Value::String(as_str(&one(&args)?).to_lowercase()),
        "title" => Value::String(title(&as_str(&one(&args)?))),
        "len" => {
            let v = one(&args)?;
            let n = match &v {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::Null => 0,
                other => return err(format!("len of {}", go_string(other))),
            };
            Value::from(n)
        }
        "join" => match args.as_slice() {
            [Value::Array(a), sep] => {
                Value::String(a.iter().map(as_str).collect::<Vec<_>>().join(&as_str(sep)))
            }
            [Value::Null, _] => Value::String(String::new()),
            [v, _] => Value::String(as_str(v)),
            _ => return err("wrong number of args for join: want 2"),
        },
        "split" => match args.as_slice() {
            [s, sep] => Value::Array(
                as_str(s)
                    .split(&as_str(sep))
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            ),
            _ => return err("wrong number of args for split: want 2"),
        },
        "index" => {
            let mut it = args.into_iter();
            let Some(mut v) = it.next() else {
                return err("wrong number of args for index");
            };
            for k in it {
                v = match (&v, &k) {
                    (Value::Object(o), _) => o.get(&as_str(&k)).cloned().unwrap_or(Value::Null),
                    (Value::Array(a), _) => {
                        let i = as_usize(&k)?;
                        a.get(i)
                            .cloned()
                            .ok_or_else(|| TemplateError(format!("index out of range: {i}")))?
                    }
                    (Value::Null, _) => Value::Null,
                    _ => return err(format!("can't index item of type {}", go_string(&v))),
                };
            }
            v
        }
        "print" | "println" => {
            let parts: Vec<String> = args.iter().map(go_string).collect();
            let mut s = if name == "println" {
                parts.join(" ")
            } else {
                parts.concat()
            };
            if name == "println" {
                s.push('\n');
            }
            Value::String(s)
        }
        "printf" => {
            let mut it = args.into_iter();
            let fmt = as_str(&it.next().unwrap_or(Value::Null));
            let mut out = String::new();
            let mut chars = fmt.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('%') => out.push('%'),
                    Some('q') => {
                        let _ = write!(out, "{:?}", as_str(&it.next().unwrap_or(Value::Null)));
                    }
                    Some(_) => out.push_str(&as_str(&it.next().unwrap_or(Value::Null))),
                    None => out.push('%'),
                }
            }
            Value::String(out)
        }
        "pad" => match args.as_slice() {
            [s, l, r] => Value::String(format!(
                "{}{}{}",
                " ".repeat(as_usize(l)?),
                as_str(s),
                " ".repeat(as_usize(r)?)
            )),
            _ => return err("wrong number of args for pad: want 3"),
        },
        "truncate" => match args.as_slice() {
            [s, n] => Value::String(as_str(s).chars().take(as_usize(n)?).collect()),
            _ => return err("wrong number of args for truncate: want 2"),
        },
        "not" => Value::Bool(!truthy(&one(&args)?)),
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "eq" => match args.split_first() {
            Some((a, rest)) if !rest.is_empty() => Value::Bool(rest.iter().any(|b| eq(a, b))),
            _ => return err("wrong number of args for eq"),
        },
        "ne" => match args.as_slice() {
            [a, b] => Value::Bool(!eq(a, b)),
            _ => return err("wrong number of args for ne: want 2"),
        },
        _ => return err(format!("function {name:?} not defined")),
    })
}

fn eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn lookup(v: &Value, path: &[String]) -> Result<Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Object(o) => match o.get(p) {
                Some(x) => x,
                None => return Ok(Value::Null),
            },
            Value::Null => return Ok(Value::Null),
            other => {
                return err(format!(
                    "can't evaluate field {p} in type {}",
                    match other {
                        Value::Array(_) => "[]interface {}",
                        Value::String(_) => "string",
                        Value::Number(_) => "float64",
                        _ => "bool",
                    }
                ))
            }
        };
    }
    Ok(cur.clone())
}

struct Ctx<'a> {
    root: &'a Value,
    /// Variables in scope, innermost last.
    vars: std::cell::RefCell<Vec<(String, Value)>>,
}

impl Ctx<'_> {
    fn arg(&self, a: &Arg, dot: &Value) -> Result<Value> {
        Ok(match a {
            Arg::Field(p, root) => lookup(if *root { self.root } else { dot }, p)?,
            Arg::Var(name, path) => {
                let v = self
                    .vars
                    .borrow()
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| TemplateError(format!("undefined variable \"${name}\"")))?;
                lookup(&v, path)?
            }
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => serde_json::Number::from_f64(*n)
                .map(|n| {
                    if n.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    {
                        #[allow(clippy::cast_possible_truncation)]
                        Value::from(n.as_f64().unwrap_or(0.0) as i64)
                    } else {
                        Value::Number(n)
                    }
                })
                .unwrap_or(Value::Null),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Ident(f) => call(f, Vec::new())?,
            Arg::Sub(p) => self.pipeline(p, dot)?,
        })
    }

    fn command(&self, c: &Command, dot: &Value, piped: Option<Value>) -> Result<Value> {
        match c.first() {
            Some(Arg::Ident(f)) => {
                let mut args = c[1..]
                    .iter()
                    .map(|a| self.arg(a, dot))
                    .collect::<Result<Vec<_>>>()?;
                args.extend(piped);
                call(f, args)
            }
            // A method call with arguments (`.Label "key"`): look the key up in the map the
            // field's plural names (`Labels`), the way the Docker CLI's `Label` method does.
            Some(Arg::Field(p, root)) if c.len() > 1 => {
                let key = self.arg(&c[1], dot)?;
                let mut plural = p.clone();
                if let Some(last) = plural.last_mut() {
                    last.push('s');
                }
                let base = if *root { self.root } else { dot };
                let key = as_str(&key);
                let found = match lookup(base, &plural)? {
                    Value::Object(m) => m.get(&key).cloned(),
                    // The CLI's rows carry labels as `k=v,k2=v2`.
                    Value::String(s) => s.split(',').find_map(|kv| {
                        kv.split_once('=')
                            .filter(|(k, _)| *k == key)
                            .map(|(_, v)| Value::String(v.to_owned()))
                    }),
                    _ => None,
                };
                Ok(found.unwrap_or(Value::String(String::new())))
            }
            Some(a) if c.len() == 1 => {
                if piped.is_some() {
                    return err("can't give argument to non-function");
                }
                self.arg(a, dot)
            }
            _ => err("can't give argument to non-function"),
        }
    }

    fn pipeline(&self, p: &Pipeline, dot: &Value) -> Result<Value> {
        let mut v = None;
        for c in p {
            v = Some(self.command(c, dot, v)?);
        }
        Ok(v.unwrap_or(Value::Null))
    }

    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
        // Variables assigned in this block end with it.
        let depth = self.vars.borrow().len();
        let r = self.nodes_in(nodes, dot, out);
        self.vars.borrow_mut().truncate(depth);
        r
    }

    fn nodes_in(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
        for n in nodes {
            match n {
                Node::Assign(name, p) => {
                    let v = self.pipeline(p, dot)?;
                    self.vars.borrow_mut().push((name.clone(), v));
                }
                Node::Text(s) => out.push_str(s),
                Node::Action(p) => out.push_str(&go_string(&self.pipeline(p, dot)?)),
                Node::If(p, body, alt) => {
                    if truthy(&self.pipeline(p, dot)?) {
                        self.nodes(body, dot, out)?;
                    } else {
                        self.nodes(alt, dot, out)?;
                    }
                }
                Node::With(p, body, alt) => {
                    let v = self.pipeline(p, dot)?;
                    if truthy(&v) {
                        self.nodes(body, &v, out)?;
                    } else {
                        self.nodes(alt, dot, out)?;
                    }
                }
                Node::Range(vars, p, body, alt) => {
                    let v = self.pipeline(p, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v))
                            .collect(),
                        Value::Object(o) => {
                            let mut keys: Vec<_> = o.keys().cloned().collect();
                            keys.sort();
                            keys.into_iter()
                                .map(|k| (Value::String(k.clone()), o[&k].clone()))
                                .collect()
                        }
                        Value::Null => Vec::new(),
                        other => {
                            return err(format!("range can't iterate over {}", go_string(&other)))
                        }
                    };
                    if items.is_empty() {
                        self.nodes(alt, dot, out)?;
                    }
                    for (k, it) in &items {
                        let depth = self.vars.borrow().len();
                        if let Some((kv, vv)) = vars {
                            let mut vs = self.vars.borrow_mut();
                            if let Some(kv) = kv {
                                vs.push((kv.clone(), k.clone()));
                            }
                            vs.push((vv.clone(), it.clone()));
                        }
                        let r = self.nodes(body, it, out);
                        self.vars.borrow_mut().truncate(depth);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Template {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Template> {
        let toks = lex(src)?;
        let mut pos = 0;
        let (nodes, _) = parse_nodes(&toks, &mut pos, false)?;
        Ok(Template { nodes })
    }

    /// Runs the template on `v`.
    pub fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        Ctx {
            root: v,
            vars: std::cell::RefCell::new(Vec::new()),
        }
        .nodes(&self.nodes, v, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn r(t: &str, v: Value) -> String {
        Template::parse(t).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_and_nesting() {
        let v = json!({"Name": "/x", "State": {"Running": true, "Pid": 42}, "N": null});
        assert_eq!(
            r("{{.Name}} {{.State.Running}} {{.State.Pid}}", v.clone()),
            "/x true 42"
        );
        assert_eq!(r("{{.Missing}}|{{.N}}", v.clone()), "<no value>|<no value>");
        assert_eq!(r("{{ .State.Pid }}", v), "42");
    }

    #[test]
    fn json_and_functions() {
        let v = json!({"A": {"b": 1}, "L": ["x", "y"], "S": "hello world"});
        assert_eq!(r("{{json .A}}", v.clone()), r#"{"b":1}"#);
        assert_eq!(r("{{json .}}", json!({"a": "b"})), r#"{"a":"b"}"#);
        assert_eq!(
            r("{{json .}}", json!({"a": "<none>&"})),
            r#"{"a":"\u003cnone\u003e\u0026"}"#
        );
        assert_eq!(
            r("{{upper .S}} {{lower \"AB\"}} {{title .S}}", v.clone()),
            "HELLO WORLD ab Hello World"
        );
        assert_eq!(
            r("{{join .L \",\"}} {{len .L}} {{index .L 1}}", v.clone()),
            "x,y 2 y"
        );
        assert_eq!(r("{{index .A \"b\"}}", v.clone()), "1");
        assert_eq!(r("{{println .S}}", v.clone()), "hello world\n");
        assert_eq!(r("{{.S | upper}}", v.clone()), "HELLO WORLD");
        assert_eq!(r("{{.L}} {{.A}}", v), "[x y] map[b:1]");
    }

    #[test]
    fn control_flow_and_trims() {
        let v = json!({"L": [{"n": 1}, {"n": 2}], "T": true, "E": []});
        assert_eq!(r("{{range .L}}{{.n}};{{end}}", v.clone()), "1;2;");
        assert_eq!(r("{{if .T}}yes{{else}}no{{end}}", v.clone()), "yes");
        assert_eq!(r("{{if .E}}yes{{else}}no{{end}}", v.clone()), "no");
        assert_eq!(r("{{range .E}}x{{else}}empty{{end}}", v.clone()), "empty");
        assert_eq!(r("a {{- \"b\" -}} c", v.clone()), "abc");
        assert_eq!(r("{{range $.L}}{{$.T}}{{end}}", v), "truetrue");
        assert_eq!(r("{{if eq .X \"a\"}}A{{end}}", json!({"X": "a"})), "A");
    }

    #[test]
    fn variables() {
        let v = json!({"Labels": {"b": "2", "a": "1"}, "L": ["x", "y"], "N": "n"});
        assert_eq!(
            r(
                "{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}",
                v.clone()
            ),
            "a=1;b=2;"
        );
        assert_eq!(
            r("{{range $i, $e := .L}}{{$i}}:{{$e}} {{end}}", v.clone()),
            "0:x 1:y "
        );
        assert_eq!(
            r("{{range $e := .L}}{{$e}}{{$.N}}{{end}}", v.clone()),
            "xnyn"
        );
        assert_eq!(
            r("{{$n := .N}}{{range .L}}{{$n}}{{.}}{{end}}", v.clone()),
            "nxny"
        );
        assert!(Template::parse("{{$x}}").unwrap().render(&v).is_err());
    }

    #[test]
    fn label_method() {
        let v = json!({"Labels": {"com.x": "1"}});
        assert_eq!(r("{{.Label \"com.x\"}}", v), "1");
        let v = json!({"Labels": "a=1,com.x=2"});
        assert_eq!(r("{{.Label \"com.x\"}}|{{.Label \"no\"}}", v), "2|");
    }

    #[test]
    fn errors_are_reported() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let t = Template::parse("{{nosuch .A}}").unwrap();
        assert!(t
            .render(&json!({}))
            .unwrap_err()
            .to_string()
            .contains("not defined"));
    }
}
