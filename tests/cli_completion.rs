//! `tidemark completion`, as `velero completion`: the scripts load in the real shells.
//!
//! bash is always on the machine; the zsh and fish scripts are checked for what they complete
//! (those shells are not installed by the project's scripts).

mod support;

use std::process::Command;

#[test]
fn bash_completion_loads_and_completes_the_verbs() {
    let exe = env!("CARGO_BIN_EXE_tidemark");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{exe}' completion bash) && complete -p tidemark && \
             COMP_WORDS=(tidemark ba) COMP_CWORD=1 COMP_LINE='tidemark ba' COMP_POINT=11 && \
             $(complete -p tidemark | sed -e 's/.*-F \\([^ ]*\\).*/\\1/') tidemark ba tidemark && \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash could not load the script: {}",
        support::show(&out)
    );
    assert!(stdout.contains("-F _tidemark tidemark"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim() == "backup"),
        "`tidemark ba<TAB>` does not offer backup: {stdout}"
    );
}

#[test]
fn other_shells_get_scripts_naming_the_commands() {
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = support::tidemark(&["completion", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", support::show(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["backup", "restore", "schedule"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = support::tidemark(&["completion", "tcsh"], &[]);
    assert!(!out.status.success(), "an unknown shell must be refused");
}
