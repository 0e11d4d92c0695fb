//! `relay-miner import-go-config`: turns the Go HA relay miner's two config files (a relayer's and a miner's,
//! `../shared/spec/go-operator-surface.md` §A) into our one config, and says what became of every Go key.
//!
//! The Go loader is non-strict and fills zero values with defaults in places; ours is strict and refuses what it
//! cannot honour. Pointing `relay-miner validate` at a Go file only names the first key we do not know, so this
//! module reads the Go files as generic YAML and walks every key: a key with a meaning here is written to our key
//! ([`Fate::Mapped`], with a note where Go's meaning of a value needed care, e.g. a `0` that Go reads as "its
//! default"), a key without one is [`Fate::Dropped`] with the reason, and a key whose value the operator must decide
//! about (a feature we do not have, the two files disagreeing, keys we cannot read) is [`Fate::Attention`]. A Go
//! value our validator refuses is written as it is, so the validation result names it with its Go origin, never
//! silently changed.
//!
//! The report goes to stderr, often a CI log, so it never prints a credential: URLs in it lose their userinfo,
//! query values and API-key-like path segments (`redact`), and a password, token or header value is named by its
//! key only (`is_secret`).
//!
//! Pure: no IO. The CLI (`crate::cli`, module `import_go`) reads the files, writes the output and prints
//! [`Import::report`]; [`import`] itself parses its own output with [`Config::from_yaml`] and
//! [`Config::validate`], so what it prints as valid is what `run` loads.
//!
//! Layout: this file holds the walk's bookkeeping (what was written where, from which Go key) and the report;
//! `shared` the sections both Go files have (`redis`, `pocket_node`, `keys`, `metrics`, `logging`, `pprof`),
//! `relayer` and `miner` the sections of one file each.

mod miner;
mod relayer;
mod shared;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use super::{Config, ConfigError, ConfigIssue, StorageMode};

/// Which Go file a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GoFile {
    /// The Go relayer's config (`--relayer`).
    Relayer,
    /// The Go miner's config (`--miner`).
    Miner,
}

impl std::fmt::Display for GoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Relayer => "relayer",
            Self::Miner => "miner",
        })
    }
}

/// What became of one Go key.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Written to our key `to` (dotted path), with a note when the value was read with Go's meaning.
    Mapped {
        /// Our key.
        to: String,
        /// How the value was read, when not copied as it is.
        note: Option<String>,
    },
    /// Not written: the key has no meaning here (the reason says why).
    Dropped(String),
    /// Not written as Go meant it: the operator must decide (the text says what).
    Attention(String),
}

impl Fate {
    /// `mapped`, `dropped` or `attention`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mapped { .. } => "mapped",
            Self::Dropped(_) => "dropped",
            Self::Attention(_) => "attention",
        }
    }
}

/// One Go key and its fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The file it is in.
    pub file: GoFile,
    /// Its dotted path in that file (a key the file does not set but whose Go default matters is suffixed
    /// ` (not set)`).
    pub key: String,
    /// What became of it.
    pub fate: Fate,
}

/// Options of an import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Storage mode of the output; `None`: `redis` when a Go file has a `redis.url` (how the Go fleet runs),
    /// else `embedded`.
    pub storage: Option<StorageMode>,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// Our config, YAML.
    pub yaml: String,
    /// Every Go key's fate, in file order (relayer first).
    pub items: Vec<Item>,
    /// The output's storage mode.
    pub storage: StorageMode,
    /// Why that mode.
    pub storage_reason: String,
    /// What [`Config::from_yaml`] and [`Config::validate`] say of [`Import::yaml`]; empty when it loads.
    pub issues: Vec<ConfigIssue>,
    /// For each our-key written, the Go key it came from (to name the origin of a validation issue).
    origins: BTreeMap<String, (GoFile, String)>,
}

impl Import {
    /// The items needing the operator's decision.
    pub fn attention(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| matches!(i.fate, Fate::Attention(_)))
    }

    /// The Go key an issue of our key `key` comes from: the written key that is `key` or its longest parent.
    pub fn origin_of(&self, key: &str) -> Option<&(GoFile, String)> {
        self.origins
            .iter()
            .filter(|(ours, _)| {
                key == ours.as_str()
                    || key
                        .strip_prefix(ours.as_str())
                        .is_some_and(|r| r.starts_with(['.', '[']))
            })
            .max_by_key(|(ours, _)| ours.len())
            .map(|(_, origin)| origin)
    }

    /// The report printed by the CLI: storage choice, every key by fate, then the validation result.
    pub fn report(&self) -> String {
        let mut out = format!("storage.mode: {} ({})\n", mode_name(self.storage), self.storage_reason);
        for title in ["mapped", "dropped", "attention"] {
            let items: Vec<&Item> = self.items.iter().filter(|i| i.fate.kind() == title).collect();
            out.push_str(&format!("{title} ({}):\n", items.len()));
            for item in items {
                let line = match &item.fate {
                    Fate::Mapped { to, note } => {
                        let target = if *to == item.key {
                            String::new()
                        } else {
                            format!(" -> {to}")
                        };
                        let note = note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
                        format!("{}{target}{note}", item.key)
                    }
                    Fate::Dropped(why) => format!("{}: dropped: {why}", item.key),
                    Fate::Attention(what) => format!("{}: attention: {what}", item.key),
                };
                out.push_str(&format!("  {}: {line}\n", item.file));
            }
        }
        if self.issues.is_empty() {
            out.push_str("validation: the output is a valid relay-miner config\n");
        } else {
            out.push_str(&format!(
                "validation: the output does not validate ({} problems):\n",
                self.issues.len()
            ));
            for issue in &self.issues {
                let origin = self
                    .origin_of(&issue.key)
                    .map(|(file, key)| format!(" [from the {file} file's `{key}`]"))
                    .unwrap_or_default();
                let problem = if is_secret(&issue.key) {
                    mask_quoted(&issue.problem)
                } else {
                    issue.problem.clone()
                };
                out.push_str(&format!("  - {}: {problem}{origin}\n", issue.key));
            }
        }
        // Every printed value: a URL's credentials never reach the terminal or a CI log.
        redact(&out)
    }
}

fn mode_name(mode: StorageMode) -> &'static str {
    match mode {
        StorageMode::Embedded => "embedded",
        StorageMode::Raft => "raft",
        StorageMode::Redis => "redis",
    }
}

/// Top-level keys of the output in the order of `config/relay-miner.example.yaml`.
const ORDER: [&str; 17] = [
    "listen_addr",
    "storage",
    "pocket_node",
    "keys",
    "default_validation_mode",
    "default_request_timeout_seconds",
    "default_max_body_size_bytes",
    "services",
    "timeout_profiles",
    "pool_profiles",
    "http_transport",
    "relay_meter",
    "transaction",
    "balance_monitor",
    "metrics",
    "health_check",
    "logging",
];

/// Maps the Go relayer config (and the miner's, if given) to ours. Both are the files' YAML, read generically.
pub fn import(relayer: &Value, miner: Option<&Value>, options: &Options) -> Import {
    let has_redis_url = |v: Option<&Value>| {
        v.and_then(|v| v.get("redis"))
            .and_then(|r| r.get("url"))
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
    };
    let (storage, storage_reason) = match options.storage {
        Some(mode) => (mode, "chosen with --storage".to_string()),
        None if has_redis_url(Some(relayer)) || has_redis_url(miner) => (
            StorageMode::Redis,
            "the Go files have a redis.url: Redis is how they run today; --storage embedded keeps all state in one \
             local file instead"
                .to_string(),
        ),
        None => (
            StorageMode::Embedded,
            "the Go files have no redis.url (Go would have used redis://localhost:6379); --storage redis to share \
             state in Redis"
                .to_string(),
        ),
    };
    let mut cx = Cx {
        file: GoFile::Relayer,
        storage,
        out: Mapping::new(),
        items: Vec::new(),
        written: BTreeMap::new(),
    };
    cx.out.insert("storage".into(), Value::Mapping(Mapping::new()));
    cx.set_raw(&["storage", "mode"], mode_name(storage).into());
    relayer::walk(&mut cx, relayer);
    if let Some(miner) = miner {
        cx.file = GoFile::Miner;
        miner::walk(&mut cx, miner);
    }
    let yaml = render(cx.out);
    let issues = match Config::from_yaml(&yaml) {
        Ok(config) => config.validate(),
        Err(ConfigError::Parse { key, problem }) => vec![ConfigIssue { key, problem }],
        Err(e) => vec![ConfigIssue {
            key: ".".into(),
            problem: e.to_string(),
        }],
    };
    let origins = cx
        .written
        .into_iter()
        .map(|(path, w)| (path, (w.file, w.go_key)))
        .collect();
    Import {
        yaml,
        items: cx.items,
        storage,
        storage_reason,
        issues,
        origins,
    }
}

fn render(mut out: Mapping) -> String {
    let mut ordered = Mapping::new();
    for key in ORDER {
        if let Some(v) = out.remove(key) {
            ordered.insert(key.into(), v);
        }
    }
    for (k, v) in out {
        ordered.insert(k, v);
    }
    let body = serde_norway::to_string(&Value::Mapping(ordered)).unwrap_or_default();
    format!(
        "# relay-miner config written by `relay-miner import-go-config` from the Go relay miner's config files.\n\
         # Every key is documented in config/relay-miner.example.yaml; check with: relay-miner validate --config FILE\n\
         {body}"
    )
}

/// A value written to our config, and where it came from.
struct Written {
    file: GoFile,
    go_key: String,
    value: Value,
}

/// What to do when the second Go file sets one of our keys the first already set, to another value.
#[derive(Clone, Copy)]
enum Conflict<'a> {
    /// The files must agree: an attention item, with this hint on what to decide.
    Attention(&'a str),
    /// The first file's value stands; the second's is dropped with this reason.
    KeepFirst(&'a str),
}

/// The walk's state: the output so far and every key's fate.
struct Cx {
    /// The file being walked.
    file: GoFile,
    /// The output's storage mode (Redis keys are dropped unless `redis`).
    storage: StorageMode,
    /// Our config so far.
    out: Mapping,
    /// Every Go key's fate so far.
    items: Vec<Item>,
    /// Our keys written so far (dotted), to compare what the second file sets and to name validation origins.
    written: BTreeMap<String, Written>,
}

impl Cx {
    fn item(&mut self, key: &str, fate: Fate) {
        self.items.push(Item {
            file: self.file,
            key: key.to_string(),
            fate,
        });
    }

    fn drop_key(&mut self, key: &str, why: &str) {
        self.item(key, Fate::Dropped(why.to_string()));
    }

    /// Drops `value` at `key`: a mapping is reported leaf by leaf, anything else as one key.
    fn drop_tree(&mut self, key: &str, value: &Value, why: &str) {
        match value {
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    self.drop_tree(&join(key, &scalar_text(k)), v, why);
                }
            }
            _ => self.drop_key(key, why),
        }
    }

    fn attention(&mut self, key: &str, what: impl Into<String>) {
        self.item(key, Fate::Attention(what.into()));
    }

    /// A key the Go file's section does not have: the Go loader ignored it.
    fn unknown(&mut self, key: &str) {
        let file = self.file;
        self.attention(
            key,
            format!("not a key of the Go {file} config (the Go loader ignored it; a typo?): nothing written"),
        );
    }

    /// Writes `value` at our key `to` for Go key `key`; the second file's value for a key the first set is
    /// compared, and a different one handled by `conflict`.
    fn put(&mut self, key: &str, to: &[&str], value: Value, note: Option<String>, conflict: Conflict<'_>) {
        let dotted = to.join(".");
        if let Some(first) = self.written.get(&dotted)
            && first.file != self.file
        {
            let (first_file, first_value) = (first.file, show(&first.value));
            if first.value == value {
                let note = format!("same as the {first_file} file's");
                self.item(
                    key,
                    Fate::Mapped {
                        to: dotted,
                        note: Some(note),
                    },
                );
                return;
            }
            let values = if is_secret(&dotted) || is_secret(key) {
                format!("the {first_file} file's value differs from this file's (values not printed: credentials)")
            } else {
                format!(
                    "the {first_file} file has `{first_value}`, this file `{}`",
                    show(&value)
                )
            };
            let what = format!(
                "{values}; relay-miner runs one process with one value: {dotted} is written with the {first_file} \
                 file's"
            );
            match conflict {
                Conflict::Attention(hint) => self.attention(key, format!("{what}; {hint}")),
                Conflict::KeepFirst(why) => self.drop_key(key, &format!("{what} ({why})")),
            }
            return;
        }
        self.set_raw(to, value.clone());
        self.written.insert(
            dotted.clone(),
            Written {
                file: self.file,
                go_key: key.to_string(),
                value,
            },
        );
        self.item(key, Fate::Mapped { to: dotted, note });
    }

    /// [`Cx::put`] where the files must agree.
    fn put_agree(&mut self, key: &str, to: &[&str], value: Value, note: Option<String>) {
        self.put(
            key,
            to,
            value,
            note,
            Conflict::Attention("decide which is right and fix the output"),
        );
    }

    fn set_raw(&mut self, to: &[&str], value: Value) {
        let mut map = &mut self.out;
        for (i, segment) in to.iter().enumerate() {
            let k = Value::from(*segment);
            if i + 1 == to.len() {
                map.insert(k, value);
                return;
            }
            let entry = map.entry(k).or_insert_with(|| Value::Mapping(Mapping::new()));
            if !entry.is_mapping() {
                *entry = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(next) = entry else { return };
            map = next;
        }
    }

    // Typed readers: a Go value of the wrong type is an attention item (the Go loader refuses it too), `None`.

    fn u64_of(&mut self, key: &str, value: &Value) -> Option<u64> {
        let n = value.as_u64();
        if n.is_none() {
            self.attention(
                key,
                format!("`{}` is not a whole number ≥ 0: nothing written", shown(key, value)),
            );
        }
        n
    }

    fn str_of(&mut self, key: &str, value: &Value) -> Option<String> {
        let s = value.as_str().map(str::to_string);
        if s.is_none() {
            self.attention(key, format!("`{}` is not a string: nothing written", shown(key, value)));
        }
        s
    }

    fn bool_of(&mut self, key: &str, value: &Value) -> Option<bool> {
        let b = value.as_bool();
        if b.is_none() {
            self.attention(
                key,
                format!("`{}` is not true or false: nothing written", shown(key, value)),
            );
        }
        b
    }

    fn f64_of(&mut self, key: &str, value: &Value) -> Option<f64> {
        let f = value.as_f64();
        if f.is_none() {
            self.attention(key, format!("`{}` is not a number: nothing written", shown(key, value)));
        }
        f
    }

    fn map_of<'v>(&mut self, key: &str, value: &'v Value) -> Option<&'v Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            Value::Null => Some(empty_mapping()),
            other => {
                self.attention(
                    key,
                    format!("`{}` is not a mapping: nothing written", shown(key, other)),
                );
                None
            }
        }
    }

    /// Copies a whole number, strings and booleans as they are.
    fn copy_u64(&mut self, key: &str, value: &Value, to: &[&str]) {
        if let Some(n) = self.u64_of(key, value) {
            self.put_agree(key, to, n.into(), None);
        }
    }

    fn copy_bool(&mut self, key: &str, value: &Value, to: &[&str]) {
        if let Some(b) = self.bool_of(key, value) {
            self.put_agree(key, to, b.into(), None);
        }
    }

    /// A whole number Go reads as its default `go_default` when 0: written as that default, with a note.
    fn u64_zero_is(&mut self, key: &str, value: &Value, to: &[&str], go_default: u64) {
        let Some(n) = self.u64_of(key, value) else { return };
        let note = (n == 0).then(|| format!("Go reads 0 as its default {go_default}"));
        let n = if n == 0 { go_default } else { n };
        self.put_agree(key, to, n.into(), note);
    }
}

fn empty_mapping() -> &'static Mapping {
    static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Mapping::new)
}

/// `a.b` (or `b` at the root).
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A mapping key as text.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// A value on one line, for the report.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim().replace('\n', " "))
            .unwrap_or_else(|_| "?".into()),
    }
}

/// Whether a dotted key (ours or Go's) holds credentials: an `authentication` or `headers` value, a password or a
/// token. Its value is never printed, only its key.
fn is_secret(key: &str) -> bool {
    key.split(['.', '[', ' ']).any(|s| {
        matches!(
            s,
            "authentication" | "headers" | "password" | "bearer_token" | "plain_token"
        )
    })
}

/// A value for the report: nothing of a credential key's, URL credentials redacted otherwise.
fn shown(key: &str, v: &Value) -> String {
    if is_secret(key) {
        "<not printed: credentials>".into()
    } else {
        redact(&show(v))
    }
}

/// A validation problem of a credential key with every `quoted` or "quoted" part replaced (a parse error quotes
/// the value).
fn mask_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(q) if c == q => {
                out.push_str("***");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push_str("***");
    }
    out
}

/// `text` with the credentials of every URL in it (`scheme://…`) replaced by `***`: the userinfo
/// (`redis://:secret@host` → `redis://***@host`), every query value (`?api_key=***`) and path segments that look
/// like an API key (16+ letters, digits, `-` or `_`, with a letter and a digit: `/v2/***`).
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | ',' | ';' | ')' | ']' | '}' | '>'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        out.push_str(&redact_url(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A URL after its `scheme://`, redacted (see [`redact`]).
fn redact_url(url: &str) -> String {
    // The last `@` ends the userinfo even if the password has a raw `/` or `?` (over-redacting a path with an `@`
    // is the safe side).
    let (userinfo, rest) = match url.rfind('@') {
        Some(at) => (true, &url[at + 1..]),
        None => (false, url),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut out = String::from(if userinfo { "***@" } else { "" });
    for (i, segment) in before_query.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let token_like = segment.len() >= 16
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && segment.chars().any(|c| c.is_ascii_digit())
            && segment.chars().any(|c| c.is_ascii_alphabetic());
        out.push_str(if i > 0 && token_like { "***" } else { segment });
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if p.is_empty() => String::new(),
                None => "***".into(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The entries of a mapping with their dotted keys, non-string keys reported.
fn entries<'v>(cx: &mut Cx, parent: &str, map: &'v Mapping) -> Vec<(String, String, &'v Value)> {
    let mut out = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            Some(name) => out.push((name.to_string(), join(parent, name), v)),
            None => cx.attention(&join(parent, &show(k)), "a key that is not a string: nothing written"),
        }
    }
    out
}

/// A Go duration (`time.ParseDuration`: `2h`, `1h30m`, `90s`, `1.5h`, `500ms`) in whole seconds; `Err` says why
/// not.
fn go_duration_seconds(text: &str) -> Result<u64, String> {
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err("not a positive Go duration like 2h or 1h30m".into());
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| "not a Go duration like 2h or 1h30m".to_string())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err("not a Go duration like 2h or 1h30m (units ns, us, ms, s, m, h)".into()),
        };
        rest = &rest[unit_len..];
        nanos += number * factor;
    }
    let seconds = nanos / 1e9;
    if seconds.fract() != 0.0 || !seconds.is_finite() || seconds > u64::MAX as f64 {
        return Err("not a whole number of seconds".into());
    }
    Ok(seconds as u64)
}

/// A Go listen address: `:9092` (every interface, Go's meaning) is `0.0.0.0:9092` here.
fn listen_addr(addr: &str) -> (String, Option<String>) {
    match addr.strip_prefix(':') {
        Some(port) => (
            format!("0.0.0.0:{port}"),
            Some(format!("Go's `{addr}` listens on every interface")),
        ),
        None => (addr.to_string(), None),
    }
}
