//! The keys each map of a workflow file may hold: Dagu's snake_case names,
//! their older camelCase spellings (aliases), Cairn's own keys, and Dagu keys
//! Cairn accepts but ignores or refuses, each with the reason.

/// One key of a map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) aliases: &'static [&'static str],
    pub(crate) support: Support,
}

/// What Cairn does with a key Dagu knows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Support {
    Yes,
    /// Accepted so existing files load; has no effect (a warning says why).
    Ignored(&'static str),
    /// Refused: running the file without it would do something else.
    No(&'static str),
}

/// The keys of one kind of map.
#[derive(Debug)]
pub(crate) struct Schema {
    /// "workflow keys", "step keys", ... for messages.
    pub(crate) what: &'static str,
    pub(crate) keys: &'static [Key],
}

impl Schema {
    pub(crate) fn find(&self, written: &str) -> Option<&'static Key> {
        let keys: &'static [Key] = self.keys;
        keys.iter().find(|k| k.name == written || k.aliases.contains(&written))
    }

    /// Every name a user might have meant, for suggestions.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> {
        let keys: &'static [Key] = self.keys;
        keys.iter().map(|k| k.name)
    }

    pub(crate) fn supported_names(&self) -> Vec<&'static str> {
        let keys: &'static [Key] = self.keys;
        keys.iter().filter(|k| matches!(k.support, Support::Yes)).map(|k| k.name).collect()
    }
}

const fn yes(name: &'static str) -> Key {
    Key { name, aliases: &[], support: Support::Yes }
}

const fn alias(name: &'static str, aliases: &'static [&'static str]) -> Key {
    Key { name, aliases, support: Support::Yes }
}

const fn ignored(name: &'static str, aliases: &'static [&'static str], why: &'static str) -> Key {
    Key { name, aliases, support: Support::Ignored(why) }
}

const fn no(name: &'static str, aliases: &'static [&'static str], why: &'static str) -> Key {
    Key { name, aliases, support: Support::No(why) }
}

const NO_MAIL: &str = "Cairn sends no mail; use its alerts instead";
const NOT_SHELL: &str = "Cairn runs shell commands and scripts only";
const NO_SUB_DAG: &str = "sub-workflow calls are not supported; run the other workflow from a step";

pub(crate) static WORKFLOW: Schema = Schema {
    what: "workflow keys",
    keys: &[
        yes("name"),
        yes("description"),
        yes("group"),
        yes("type"),
        yes("params"),
        yes("env"),
        yes("dotenv"),
        yes("schedule"),
        alias("timeout_sec", &["timeoutSec"]),
        alias("delay_sec", &["delaySec"]),
        alias("restart_wait_sec", &["restartWaitSec"]),
        alias("max_clean_up_time_sec", &["maxCleanUpTimeSec"]),
        alias("max_active_steps", &["maxActiveSteps"]),
        alias("max_active_runs", &["maxActiveRuns"]),
        alias("max_output_size", &["maxOutputSize"]),
        alias("skip_if_successful", &["skipIfSuccessful"]),
        alias("keep_details", &["keepDetails"]),
        alias("overlap_policy", &["overlapPolicy"]),
        alias("catchup_window", &["catchupWindow"]),
        alias("handler_on", &["handlerOn"]),
        alias("retry_policy", &["retryPolicy"]),
        alias("preconditions", &["precondition"]),
        yes("defaults"),
        yes("shell"),
        alias("working_dir", &["workingDir"]),
        yes("labels"),
        yes("tags"),
        alias("hist_retention_days", &["histRetentionDays"]),
        alias("hist_retention_runs", &["histRetentionRuns"]),
        alias("log_dir", &["logDir"]),
        yes("queue"),
        yes("steps"),
        ignored("log_output", &["logOutput"], "Cairn keeps stdout and stderr apart"),
        ignored("mail_on", &["mailOn"], NO_MAIL),
        ignored("smtp", &[], NO_MAIL),
        ignored("error_mail", &["errorMail"], NO_MAIL),
        ignored("info_mail", &["infoMail"], NO_MAIL),
        ignored("wait_mail", &["waitMail"], NO_MAIL),
        ignored("otel", &[], "OpenTelemetry export is not implemented"),
        ignored("run_config", &["runConfig"], "Dagu web UI setting"),
        ignored("webhook", &[], "Dagu webhook triggers are not implemented"),
        ignored("artifacts", &[], "Dagu run artifacts are not implemented"),
        ignored("worker_selector", &["workerSelector"], "use a step's `queue` to choose where it runs"),
        no("container", &[], "containers are not supported; run `docker` in a command"),
        no("ssh", &[], NOT_SHELL),
        no("s3", &[], NOT_SHELL),
        no("llm", &[], NOT_SHELL),
        no("redis", &[], NOT_SHELL),
        no("harness", &[], NOT_SHELL),
        no("harnesses", &[], NOT_SHELL),
        no("kubernetes", &[], NOT_SHELL),
        no("step_types", &[], "custom step types are not supported"),
        no("secrets", &[], "secret providers are not supported; pass secrets through the environment"),
        no("registry_auths", &["registryAuths"], "containers are not supported"),
    ],
};

/// Keys of steps and handlers alike; only steps may have `depends`.
const STEP_COMMON: [Key; 34] = [
    yes("name"),
    yes("id"),
    yes("description"),
    yes("command"),
    yes("script"),
    yes("shell"),
    yes("exec"),
    yes("type"),
    alias("working_dir", &["workingDir", "dir"]),
    yes("env"),
    yes("output"),
    yes("stdout"),
    yes("stderr"),
    alias("preconditions", &["precondition"]),
    alias("continue_on", &["continueOn"]),
    alias("retry_policy", &["retryPolicy"]),
    alias("timeout_sec", &["timeoutSec"]),
    alias("signal_on_stop", &["signalOnStop"]),
    yes("queue"),
    alias("heartbeat_timeout_sec", &["heartbeatTimeoutSec"]),
    yes("progress"),
    alias("task_type", &["taskType"]),
    ignored("mail_on_error", &["mailOnError"], NO_MAIL),
    ignored("log_output", &["logOutput"], "Cairn keeps stdout and stderr apart"),
    no("call", &["run"], NO_SUB_DAG),
    no("params", &[], NO_SUB_DAG),
    no("parallel", &[], NO_SUB_DAG),
    no("container", &[], "containers are not supported; run `docker` in a command"),
    no("with", &["config"], NOT_SHELL),
    no("repeat_policy", &["repeatPolicy"], "repeating a step is not supported; loop in the script"),
    no("worker_selector", &["workerSelector"], "use `queue` to choose where the step runs"),
    no("shell_packages", &["shellPackages"], "nix-shell packages are not supported"),
    no("approval", &[], "approval gates are not supported"),
    no("llm", &["agent", "messages", "tools", "routes", "value"], NOT_SHELL),
];

/// `common` followed by `last` (a const fn, so the step and handler key
/// tables can share their common part).
const fn with_last(common: [Key; 34], last: Key) -> [Key; 35] {
    let mut out = [last; 35];
    let mut i = 0;
    while i < 34 {
        out[i] = common[i];
        i += 1;
    }
    out
}

static STEP_KEYS: [Key; 35] = with_last(STEP_COMMON, yes("depends"));
static HANDLER_KEYS: [Key; 35] =
    with_last(STEP_COMMON, no("depends", &[], "handlers run after the steps; remove `depends`"));

pub(crate) static STEP: Schema = Schema { what: "step keys", keys: &STEP_KEYS };
pub(crate) static HANDLER: Schema = Schema { what: "handler keys", keys: &HANDLER_KEYS };

pub(crate) static DEFAULTS: Schema = Schema {
    what: "step defaults",
    keys: &[
        alias("continue_on", &["continueOn"]),
        alias("retry_policy", &["retryPolicy"]),
        alias("timeout_sec", &["timeoutSec"]),
        alias("signal_on_stop", &["signalOnStop"]),
        yes("env"),
        alias("preconditions", &["precondition"]),
        yes("queue"),
        alias("heartbeat_timeout_sec", &["heartbeatTimeoutSec"]),
        yes("progress"),
        ignored("mail_on_error", &["mailOnError"], NO_MAIL),
        no("repeat_policy", &["repeatPolicy"], "repeating a step is not supported; loop in the script"),
        no("agent", &[], NOT_SHELL),
    ],
};

pub(crate) static HANDLER_ON: Schema = Schema {
    what: "handlers",
    keys: &[
        yes("init"),
        yes("success"),
        alias("failure", &["failed"]),
        alias("abort", &["cancel"]),
        yes("exit"),
        no("wait", &[], "approval waits are not supported"),
    ],
};

pub(crate) static RETRY: Schema = Schema {
    what: "retry policy keys",
    keys: &[
        yes("limit"),
        alias("interval_sec", &["intervalSec"]),
        yes("backoff"),
        alias("max_interval_sec", &["maxIntervalSec"]),
        alias("exit_code", &["exitCode"]),
    ],
};

pub(crate) static RUN_RETRY: Schema = Schema {
    what: "workflow retry policy keys",
    keys: &[
        yes("limit"),
        alias("interval_sec", &["intervalSec"]),
        yes("backoff"),
        alias("max_interval_sec", &["maxIntervalSec"]),
    ],
};

pub(crate) static CONTINUE_ON: Schema = Schema {
    what: "continue_on keys",
    keys: &[
        yes("skipped"),
        alias("failure", &["failed"]),
        alias("exit_code", &["exitCode"]),
        yes("output"),
        alias("mark_success", &["markSuccess"]),
    ],
};

pub(crate) static PRECONDITION: Schema = Schema {
    what: "precondition keys",
    keys: &[alias("condition", &["command"]), yes("expected"), yes("negate")],
};

pub(crate) static EXEC: Schema = Schema { what: "exec keys", keys: &[yes("command"), yes("args")] };

pub(crate) static PROGRESS: Schema =
    Schema { what: "progress keys", keys: &[yes("min_interval_ms"), yes("min_change")] };

pub(crate) static PARAM: Schema = Schema {
    what: "parameter keys",
    keys: &[
        yes("name"),
        yes("type"),
        yes("default"),
        yes("description"),
        yes("required"),
        yes("enum"),
        yes("minimum"),
        yes("maximum"),
        alias("min_length", &["minLength"]),
        alias("max_length", &["maxLength"]),
        yes("pattern"),
        no("eval", &[], "computed defaults are not supported; compute the value in a step"),
    ],
};

pub(crate) static SCHEDULE: Schema =
    Schema { what: "schedule keys", keys: &[yes("start"), yes("stop"), yes("restart")] };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_find_their_key() {
        assert_eq!(STEP.find("retryPolicy").map(|k| k.name), Some("retry_policy"));
        assert_eq!(STEP.find("dir").map(|k| k.name), Some("working_dir"));
        assert_eq!(STEP.find("depends").map(|k| k.name), Some("depends"));
        assert!(matches!(HANDLER.find("depends").map(|k| &k.support), Some(Support::No(_))));
        assert!(STEP.find("nope").is_none());
    }

    #[test]
    fn no_key_is_listed_twice() {
        for schema in [&WORKFLOW, &STEP, &HANDLER, &DEFAULTS, &HANDLER_ON, &RETRY, &CONTINUE_ON, &PARAM] {
            let mut all: Vec<&str> = schema
                .keys
                .iter()
                .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
                .collect();
            all.sort_unstable();
            let n = all.len();
            all.dedup();
            assert_eq!(n, all.len(), "{}", schema.what);
        }
    }
}
