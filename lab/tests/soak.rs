//! isold under a continuous IPI storm (scenario lab/scenarios/soak.sh), the
//! short form of the hour-long soak in bench/RESULTS.md
//! (`ISOL_SOAK_SAMPLES=60 ISOL_SOAK_EVERY=60` runs it): isold's memory
//! stays bounded, the counters only grow (and do grow), every drop reason
//! is exported, the capture stays up.

use isol_lab::{testprogs::testprog, Lab};

#[derive(Debug)]
struct Sample {
    rss_kb: u64,
    interruptions: u64,
    up: bool,
    drops: Vec<(String, u64)>,
}

fn parse(line: &str) -> Sample {
    let field = |k: &str| -> Option<&str> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
    };
    Sample {
        rss_kb: field("rss_kb").unwrap().parse().unwrap(),
        interruptions: field("interruptions").unwrap().parse().unwrap(),
        up: field("up") == Some("1"),
        drops: [
            "ringbuf",
            "aggregation",
            "stack",
            "sender",
            "nesting",
            "displaced",
        ]
        .iter()
        .map(|r| {
            (
                r.to_string(),
                field(r)
                    .unwrap_or_else(|| panic!("no {r} drops in {line}"))
                    .parse()
                    .unwrap(),
            )
        })
        .collect(),
    }
}

#[test]
fn isold_stays_bounded_and_monotonic_under_a_storm() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let (n, every) = (env("ISOL_SOAK_SAMPLES", "4"), env("ISOL_SOAK_EVERY", "10"));
    let budget = 300 + n.parse::<u64>().unwrap() * every.parse::<u64>().unwrap() * 2;
    let out = Lab::new()
        .unwrap()
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(budget))
        .env("SOAK_SAMPLES", &n)
        .env("SOAK_EVERY", &every)
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        .run_scenario("soak")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let text = out.section("soak").unwrap().text;
    eprintln!("{text}");
    let s: Vec<Sample> = text
        .lines()
        .filter(|l| l.starts_with("t="))
        .map(parse)
        .collect();
    assert_eq!(s.len(), n.parse::<usize>().unwrap() + 1, "{text}");
    for w in s.windows(2) {
        assert!(
            w[1].interruptions > w[0].interruptions,
            "no progress: {text}"
        );
        for (a, b) in w[0].drops.iter().zip(&w[1].drops) {
            assert!(b.1 >= a.1, "a drop counter went down: {text}");
        }
    }
    assert!(s.iter().all(|x| x.up), "{text}");
    // Bounded: after the first interval (maps, ring and the HTTP thread
    // in place), isold grows by no more than 16 MiB however long it runs.
    let base = s[1].rss_kb;
    let max = s.iter().map(|x| x.rss_kb).max().unwrap();
    assert!(
        max <= base + 16 * 1024,
        "isold grew from {base} to {max} kB: {text}"
    );
    assert!(out.stdout.contains("isold_status=0"), "{}", out.stdout);
}
