//! isol-packaging: writes the man pages and shell completions of `isol`
//! and `chisol`, generated from the clap definitions the binaries parse
//! (`isol_cli::Cli`, `isol_cli::chisol_args::Args`), into DESTDIR at their
//! FHS places:
//!
//! ```text
//! usr/share/man/man1/{isol,isol-SUBCOMMAND,chisol}.1
//! usr/share/bash-completion/completions/{isol,chisol}
//! usr/share/zsh/vendor-completions/_{isol,chisol}
//! usr/share/fish/vendor_completions.d/{isol,chisol}.fish
//! ```
//!
//! packaging/debian/rules runs it while building the Debian packages
//! (`bash scripts/deb.sh`); by hand: `cargo run -p isol-packaging -- DESTDIR`.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use clap_complete::Shell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Write isol's and chisol's man pages and shell completions into DESTDIR")]
struct Args {
    /// Root of the installation tree (e.g. debian/tmp).
    destdir: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let isol = isol_cli::Cli::command();
    let chisol = isol_cli::chisol_args::Args::command();
    let version = isol.get_version().unwrap_or_default().to_owned();

    let man = a.destdir.join("usr/share/man/man1");
    fs::create_dir_all(&man)?;
    man_pages(isol.clone(), &chisol, &version, &man)?;

    for (cmd, name) in [(isol, "isol"), (chisol, "chisol")] {
        for (shell, dir, file) in [
            (
                Shell::Bash,
                "usr/share/bash-completion/completions",
                name.to_owned(),
            ),
            (
                Shell::Zsh,
                "usr/share/zsh/vendor-completions",
                format!("_{name}"),
            ),
            (
                Shell::Fish,
                "usr/share/fish/vendor_completions.d",
                format!("{name}.fish"),
            ),
        ] {
            let dir = a.destdir.join(dir);
            fs::create_dir_all(&dir)?;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut out);
            write(&dir.join(file), &out)?;
        }
    }
    Ok(())
}

/// isol.1, one isol-SUBCOMMAND.1 per subcommand, and chisol.1.
fn man_pages(isol: clap::Command, chisol: &clap::Command, version: &str, dir: &Path) -> Result<()> {
    // `help` is clap's, not a command of isol's with a page of its own.
    let mut isol = isol.disable_help_subcommand(true);
    // Gives subcommands their display names (isol-watch) and bin names.
    isol.build();
    let source = format!("isol {version}");

    let mut pages = vec![(isol.clone(), see_also(&["chisol"]))];
    for sub in isol.get_subcommands() {
        let mut refs = vec!["isol"];
        if sub.get_name() == "serve" {
            // isold.service runs `isol serve`; status and chisol talk to it.
            refs.extend(["isol-status", "chisol", "systemctl"]);
        }
        pages.push((sub.clone(), see_also(&refs)));
    }
    pages.push((
        chisol.clone(),
        see_also(&["isol", "isol-status", "isol-serve"]),
    ));

    for (cmd, extra) in pages {
        let man = clap_mangen::Man::new(cmd)
            .source(source.clone())
            .manual("isol manual");
        let mut page = Vec::new();
        man.render(&mut page)?;
        page.extend_from_slice(extra.as_bytes());
        write(&dir.join(man.get_filename()), &page)?;
    }
    Ok(())
}

/// A SEE ALSO section in roff naming other pages of section 1.
fn see_also(pages: &[&str]) -> String {
    let refs: Vec<String> = pages.iter().map(|p| format!(".BR {p} (1)")).collect();
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(",\n"))
}

fn write(path: &Path, content: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content)?;
    Ok(())
}
