//! Fenced writes on Redis ([`crate::Fencing`]): every fenced write is a Lua script that first compares the
//! election's lease key (`{lease}` = holder name, the Go layout) and token key (`{lease}:token`) with the
//! fence's candidate and token, and fails with the error code `FENCED` (mapped to
//! [`StorageError::Fenced`](crate::StorageError::Fenced)) without touching anything when they differ. Redis runs
//! a script atomically, so no campaign can slip between the check and the write.
//!
//! [`Scripts`] pairs each script body with its fenced twin: the fenced one appends the two lease keys to `KEYS`
//! and candidate + token to `ARGV`, and both define `NK` / `NA` (the body's own key and argument counts) so a
//! body that loops over its arguments never sees the fence's. [`RedisBackend::fenced_cmd`] runs one plain
//! command under the fence.
//!
//! What is fenced and what is not (see [`crate::Fencing`]): session put/delete, relay-log `ack` and
//! `trim_session` (each page of the trim is its own atomic script: a trim fenced off midway has removed earlier
//! pages only, which the next leader's trim of the same settled session removes anyway), trie batches and
//! namespace deletion, KV writes, and appends. Not fenced: stream deliveries (`read`, `read_pending`, `claim`
//! and [`BlockingReader`](super::BlockingReader)), whose `XREADGROUP` / `XCLAIM` run outside scripts. They only
//! move entries between consumers of the group: every miner of a fleet reads as the same consumer, so entries a
//! deposed leader read stay pending for that consumer and the next leader's `read_pending` delivers them again;
//! they cannot be lost without a fenced `ack` or `trim_session`. Trie `open` is a read (a prefetch) and is not
//! fenced either; the one write it can make, moving a trie an earlier release kept at the Go key to its own key
//! (`trie` module), changes no content and happens at most once (`RENAMENX`).

use redis::{Script, ScriptInvocation};

use super::RedisBackend;
use crate::contract::Fence;

const PLAIN_PRELUDE: &str = "local NK, NA = #KEYS, #ARGV\n";

const FENCED_PRELUDE: &str = r"
local NK, NA = #KEYS - 2, #ARGV - 2
if redis.call('GET', KEYS[NK + 1]) ~= ARGV[NA + 1] or redis.call('GET', KEYS[NK + 2]) ~= ARGV[NA + 2] then
  return redis.error_reply('FENCED lease ' .. KEYS[NK + 1] .. ' is not held by ' .. ARGV[NA + 1] ..
    ' with token ' .. ARGV[NA + 2])
end
";

/// The first line of a script Redis ≥ 7 runs at `maxmemory` too (script flags; older servers cannot parse it).
pub(crate) const ALLOW_OOM: &str = "#!lua flags=allow-oom\n";

/// One script body as a plain and a fenced script, and for a few small writes also as twins Redis ≥ 7 runs at
/// `maxmemory` ([`Scripts::allow_oom`]).
pub(crate) struct Scripts {
    plain: Script,
    fenced: Script,
    /// The plain and fenced twins flagged `allow-oom`, for servers that know script flags.
    oom: Option<(Script, Script)>,
}

impl Scripts {
    /// Both variants of `body` (which must use `NK` / `NA` instead of `#KEYS` / `#ARGV`).
    pub(crate) fn new(body: &str) -> Self {
        Self {
            plain: Script::new(&format!("{PLAIN_PRELUDE}{body}")),
            fenced: Script::new(&format!("{FENCED_PRELUDE}{body}")),
            oom: None,
        }
    }

    /// As [`Scripts::new`], and run with the `allow-oom` flag on servers that know script flags (Redis ≥ 7): a
    /// write Redis takes at `maxmemory`. Only for small writes the miner cannot do without (session records:
    /// no claim or proof leaves before its record is stored), never for relays or tries, whose refusal is what
    /// stops the memory growing.
    pub(crate) fn allow_oom(body: &str) -> Self {
        Self {
            oom: Some((
                Script::new(&format!("{ALLOW_OOM}{PLAIN_PRELUDE}{body}")),
                Script::new(&format!("{ALLOW_OOM}{FENCED_PRELUDE}{body}")),
            )),
            ..Self::new(body)
        }
    }

    /// The plain variant, for calls that are never fenced.
    pub(crate) fn plain(&self) -> &Script {
        &self.plain
    }
}

/// Runs one command on one key: KEYS[1] is the key, ARGV the command name then its arguments after the key.
static CMD: std::sync::LazyLock<Scripts> =
    std::sync::LazyLock::new(|| Scripts::new("return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2, NA))\n"));

impl RedisBackend {
    /// An invocation of `scripts` for this view: the fenced variant (fence keys and arguments appended when the
    /// invocation is run through [`RedisBackend::fence_args`]) or the plain one.
    pub(crate) fn invocation<'a>(&self, scripts: &'a Scripts) -> ScriptInvocation<'a> {
        match (&scripts.oom, self.script_flags(), &self.fence) {
            (Some((_, fenced)), true, Some(_)) => fenced.prepare_invoke(),
            (Some((plain, _)), true, None) => plain.prepare_invoke(),
            (_, _, Some(_)) => scripts.fenced.prepare_invoke(),
            (_, _, None) => scripts.plain.prepare_invoke(),
        }
    }

    /// Appends this view's fence (lease key, token key; candidate, token) to an invocation made by
    /// [`RedisBackend::invocation`], after the body's own keys and arguments.
    pub(crate) fn fence_args(&self, inv: &mut ScriptInvocation<'_>) {
        if let Some(f) = self.fence.as_deref() {
            add_fence(self, inv, f);
        }
    }

    /// `command key args...` as one command, fenced when this view is.
    pub(crate) fn fenced_cmd<'a>(&self, command: &str, key: &str, args: Vec<Vec<u8>>) -> ScriptInvocation<'a> {
        let mut inv = self.invocation(&CMD);
        inv.key(key).arg(command);
        for a in args {
            inv.arg(a);
        }
        self.fence_args(&mut inv);
        inv
    }
}

fn add_fence(backend: &RedisBackend, inv: &mut ScriptInvocation<'_>, f: &Fence) {
    inv.key(backend.keys().lease(&f.election))
        .key(backend.keys().lease_token(&f.election))
        .arg(&f.candidate)
        .arg(f.token);
}
