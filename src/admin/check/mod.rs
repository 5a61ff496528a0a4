//! `check-array`: turns each assumption the driver makes about the FlashBlade
//! REST API into a checked fact on the user's own array. It logs in, says
//! who the array and the token are, then runs one check per assumption on a
//! throwaway file system and snapshot of its own (`<prefix>-check-<random>`,
//! 1 MiB, exported to no one, or with `--mount` to this node only), and
//! always removes them: after the last check, after a failure half-way, and
//! after Ctrl-C. It destroys and eradicates nothing but names that start
//! with its own random base.

mod checks;
mod cleanup;
mod mount;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{AdminError, Output, Report, Session, exit};
use crate::flashblade::ArrayClient;

pub use mount::MountMode;

/// What `check-array` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct CheckArgs {
    /// The configured array to check (default: the default array).
    pub array: Option<String>,
    /// How (and whether) to look at the file system's content.
    pub mount: MountMode,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Differs,
    Skipped,
}

/// One checked assumption.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub expected: String,
    pub observed: String,
    pub verdict: Verdict,
    /// Why it was skipped, when it was.
    pub why: Option<String>,
    /// The code that relies on the assumption.
    pub code: &'static [&'static str],
}

/// Who the array and the token are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArrayFacts {
    /// The configured name.
    pub array: String,
    /// The array's own name.
    pub array_name: Option<String>,
    pub purity: Option<String>,
    pub rest_version: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
}

/// What the command left on the array.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    /// Objects it made and removed (destroyed and eradicated).
    pub removed: Vec<String>,
    /// Objects it made that are still there, with why.
    pub left_behind: Vec<String>,
}

/// The whole result, as `--output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub facts: ArrayFacts,
    pub checks: Vec<Check>,
    pub cleanup: CleanupReport,
    /// Ctrl-C (or SIGTERM) stopped the checks half-way.
    pub interrupted: bool,
    /// A failure that stopped the checks half-way.
    pub error: Option<String>,
}

/// The names this run may create, touch and remove: every one starts with
/// `base`, a random name no one else uses.
#[derive(Debug, Clone)]
pub(crate) struct Throwaway {
    /// The array's name prefix (the driver's own file systems).
    pub prefix: crate::volume::NamePrefix,
    pub base: String,
    pub snapshot_suffix: String,
}

impl Throwaway {
    pub(crate) fn new(prefix: &crate::volume::NamePrefix) -> Self {
        let r: u64 = rand::random();
        let tag: String = (0..8)
            .map(|i| {
                let d = ((r >> (i * 5)) & 31) as u8;
                (if d < 10 { b'0' + d } else { b'a' + d - 10 }) as char
            })
            .collect();
        Throwaway {
            prefix: prefix.clone(),
            base: format!("{prefix}-check-{tag}"),
            snapshot_suffix: format!("{}check-{tag}", crate::volume::naming::SNAPSHOT_SUFFIX_PREFIX),
        }
    }

    pub(crate) fn snapshot_name(&self, fs_name: &str) -> String {
        format!("{fs_name}.{}", self.snapshot_suffix)
    }

    /// Whether `name` is one of this run's objects (the file system under
    /// any of its names, or its snapshot).
    pub(crate) fn owns(&self, name: &str) -> bool {
        name.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-') || rest.starts_with('.'))
    }
}

/// State the checks share with the cleanup, which may run after the checks
/// were dropped half-way (Ctrl-C).
pub(crate) struct Run {
    pub client: Arc<ArrayClient>,
    pub names: Throwaway,
    pub mount: MountMode,
    pub results: Mutex<Vec<Check>>,
    pub facts: Mutex<ArrayFacts>,
    /// Mount points to undo before the file system goes.
    pub mounts: Mutex<Vec<PathBuf>>,
    /// The file system's id, once known: the cleanup's last look.
    pub fs_id: Mutex<Option<String>>,
    /// Set once the base name was found unused, just before the create:
    /// from then on every object with the base is this run's (before, the
    /// cleanup leaves the array alone).
    pub claimed: Mutex<bool>,
}

impl Run {
    pub(crate) fn record(&self, check: Check) {
        self.results.lock().unwrap().push(check);
    }
}

/// Builds a [`Check`].
pub(crate) fn check(
    id: &'static str,
    code: &'static [&'static str],
    expected: impl Into<String>,
    observed: impl Into<String>,
    verdict: Verdict,
) -> Check {
    Check {
        id,
        expected: expected.into(),
        observed: observed.into(),
        verdict,
        why: None,
        code,
    }
}

/// A skipped [`Check`] and why.
pub(crate) fn skipped(
    id: &'static str,
    code: &'static [&'static str],
    expected: impl Into<String>,
    why: impl Into<String>,
) -> Check {
    Check {
        id,
        expected: expected.into(),
        observed: "-".into(),
        verdict: Verdict::Skipped,
        why: Some(why.into()),
        code,
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn stop_requested() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `check-array`.
pub async fn check_array(s: &Session, args: &CheckArgs) -> Result<Report, AdminError> {
    let name = match &args.array {
        Some(a) => a.clone(),
        None => s.default_array()?.to_string(),
    };
    let client = s.client(&name)?.clone();
    let cfg = s
        .config
        .array(&name)
        .ok_or_else(|| AdminError::Usage(format!("array {name:?} is not configured")))?;
    let mount = args
        .mount
        .clone()
        .with_endpoint(cfg.nfs_endpoint.as_ref().map(|h| h.to_string()));
    // The whole message is the reason: the error has no cause to keep.
    mount.validate().map_err(|e| AdminError::Usage(e.to_string()))?;
    let run = Arc::new(Run {
        client,
        names: Throwaway::new(&cfg.name_prefix),
        mount,
        results: Mutex::new(Vec::new()),
        facts: Mutex::new(ArrayFacts {
            array: name.clone(),
            ..Default::default()
        }),
        mounts: Mutex::new(Vec::new()),
        fs_id: Mutex::new(None),
        claimed: Mutex::new(false),
    });
    // Signals are ours from here on: a Ctrl-C ends the checks, never the
    // cleanup (a second one during it is ignored).
    let stop = stop_requested();
    tokio::pin!(stop);
    let (interrupted, error) = tokio::select! {
        r = checks::run_all(&run) => (false, r.err().map(|e| e.to_string())),
        _ = &mut stop => {
            eprintln!("flashblade-csi: interrupted; removing the check's file system and snapshot");
            (true, None)
        }
    };
    let cleanup = cleanup::cleanup(&run).await;
    let report = CheckReport {
        facts: run.facts.lock().unwrap().clone(),
        checks: run.results.lock().unwrap().clone(),
        cleanup,
        interrupted,
        error,
    };
    let code = exit_code(&report);
    let stdout = match s.output {
        Output::Json => serde_json::to_string_pretty(&report).expect("serialisable") + "\n",
        Output::Table => render(&report),
    };
    Ok(Report {
        stdout,
        warnings: Vec::new(),
        code,
    })
}

/// 0 every check passed or was skipped; 6 one differs; 1 a failure or
/// something left behind; 130 interrupted.
fn exit_code(r: &CheckReport) -> i32 {
    if !r.cleanup.left_behind.is_empty() || r.error.is_some() {
        exit::FAILED
    } else if r.interrupted {
        exit::INTERRUPTED
    } else if r.checks.iter().any(|c| c.verdict == Verdict::Differs) {
        exit::DIFFERS
    } else {
        exit::OK
    }
}

fn render(r: &CheckReport) -> String {
    let f = &r.facts;
    let or_q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let mut out = format!(
        "array        {} ({})\npurity       {}\nREST         {}\ntoken user   {} (role {})\n\n",
        f.array,
        or_q(&f.array_name),
        or_q(&f.purity),
        or_q(&f.rest_version),
        or_q(&f.user),
        or_q(&f.role),
    );
    // One block per check: the texts are too long for table columns.
    for c in &r.checks {
        let verdict = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Differs => "DIFFERS",
            Verdict::Skipped => "SKIPPED",
        };
        out.push_str(&format!("{verdict:<8} {}\n  expected: {}\n", c.id, c.expected));
        match &c.why {
            Some(why) => out.push_str(&format!("  skipped:  {why}\n")),
            None => out.push_str(&format!("  observed: {}\n", c.observed)),
        }
        if c.verdict == Verdict::Differs {
            out.push_str(&format!("  code:     {}\n", c.code.join("; ")));
        }
    }
    let counts = |v: Verdict| r.checks.iter().filter(|c| c.verdict == v).count();
    out.push_str(&format!(
        "\n{} passed, {} differ, {} skipped\n",
        counts(Verdict::Pass),
        counts(Verdict::Differs),
        counts(Verdict::Skipped)
    ));
    if r.interrupted {
        out.push_str("interrupted: the remaining checks did not run\n");
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("stopped by an error: {e}\n"));
    }
    if !r.cleanup.removed.is_empty() {
        out.push_str(&format!("removed: {}\n", r.cleanup.removed.join(", ")));
    }
    if r.cleanup.left_behind.is_empty() {
        out.push_str("nothing left on the array\n");
    } else {
        out.push_str("LEFT ON THE ARRAY (remove by hand):\n");
        for l in &r.cleanup.left_behind {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_names_are_its_own_only() {
        let t = Throwaway::new(&"k8s".parse().unwrap());
        assert!(t.base.starts_with("k8s-check-") && t.base.len() == "k8s-check-".len() + 8);
        assert!(t.owns(&t.base));
        assert!(t.owns(&format!("{}-r", t.base)));
        assert!(t.owns(&t.snapshot_name(&t.base)));
        assert!(!t.owns(&format!("{}x", t.base)));
        assert!(!t.owns("k8s-pvc-claim-alice"));
        assert!(t.snapshot_suffix.starts_with("csi-check-"));
    }

    fn report(verdicts: &[Verdict], left: bool, interrupted: bool) -> CheckReport {
        CheckReport {
            facts: ArrayFacts::default(),
            checks: verdicts.iter().map(|v| check("x", &[], "e", "o", *v)).collect(),
            cleanup: CleanupReport {
                removed: vec![],
                left_behind: if left { vec!["fs".into()] } else { vec![] },
            },
            interrupted,
            error: None,
        }
    }

    #[test]
    fn exit_codes() {
        use Verdict::*;
        assert_eq!(exit_code(&report(&[Pass, Skipped], false, false)), exit::OK);
        assert_eq!(exit_code(&report(&[Pass, Differs], false, false)), exit::DIFFERS);
        assert_eq!(exit_code(&report(&[Pass], true, false)), exit::FAILED);
        assert_eq!(exit_code(&report(&[Differs], false, true)), exit::INTERRUPTED);
    }
}
