//! The crash switch for tests: with `REKEY_FAULT_AFTER=<step>` (`created`,
//! `set`, `tested`, `promoted`, `retired`) the process aborts right after
//! that step's side effect and before its outcome is written — the worst
//! moment for a crash. Debug builds only: release builds compile it out.

pub(crate) fn after(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("REKEY_FAULT_AFTER").is_ok_and(|v| v == step) {
        eprintln!("rekey: REKEY_FAULT_AFTER={step}: aborting the process (test fault injection)");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
