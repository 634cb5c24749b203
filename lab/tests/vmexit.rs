//! VM exits on Debian's 6.12, 6.1 and 5.10 cloud kernels with CPU 1
//! isolated: the
//! guest kernel's own KVM (nested SVM under TCG, `-cpu max`) runs
//! kvmguest's tiny guest with its vCPU thread on CPU 1. isol starts
//! before the kvm module and says KVM is absent, attaches once it loads,
//! and then names each exit: the guest's own `hlt` and `out` as
//! guest-caused, and the TLB-flush IPIs that the VMM's housekeeping
//! thread sends from CPU 0 as host-caused INTR exits whose chain holds
//! the IPI's function and whose sender is that thread on CPU 0. On 6.12
//! the audit names KVM's NX recovery thread that the VM brought to CPU 1.

use isol_lab::{testprogs::testprog, Flavour, KernelSpec, Lab, Series};
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn vm_exits_named_with_their_host_chain() {
    vm_exits_on(Series::V6_12);
}

#[test]
fn vm_exits_named_with_their_host_chain_6_1() {
    vm_exits_on(Series::V6_1);
}

/// 5.10: kvm_exit(reason, vcpu, isa), the older prototype.
#[test]
fn vm_exits_named_with_their_host_chain_5_10() {
    vm_exits_on(Series::V5_10);
}

fn vm_exits_on(series: Series) {
    let mut lab = Lab::new()
        .unwrap()
        .kernel(KernelSpec::new(series, Flavour::Cloud))
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(600))
        .file(testprog("kvmguest").unwrap(), "/bin/kvmguest");
    let kernel = lab.fetch_kernel().unwrap();
    let modules = kernel.modules(&["kvm_amd"]).unwrap();
    let order: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    assert!(order.iter().any(|m| m == "kvm"), "{order:?}");
    for m in &modules {
        lab = lab.bytes(
            &format!("/lab/kvm/{}", m.file_name()),
            m.elf().unwrap(),
            0o644,
        );
    }
    lab = lab.bytes("/lab/kvm/order", order.join("\n") + "\n", 0o644);
    let out = lab.run_scenario("vmexit").unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();

    // isol said KVM was absent, then attached when it loaded.
    let err = out.section("watch_err").unwrap().text;
    let absent = err.find("VM exits: KVM is not loaded");
    let attached = err.find("VM exits: kvm:kvm_exit");
    assert!(
        absent.is_some() && attached.is_some() && absent < attached,
        "isol did not say KVM was absent, then attach:\n{err}"
    );
    assert!(err.contains("(SVM), exit reasons named"), "{err}");

    let guest = report(&out, "guest");
    check_exits(&lines(&out.section("watch").unwrap().text), &guest, true);
    // The same VMM watched by process (`--pid`) instead of by CPU. The
    // sender hooks watch target CPUs, and --pid names none: no sender.
    let guest2 = report(&out, "guest2");
    check_exits(
        &lines(&out.section("watch_pid").unwrap().text),
        &guest2,
        false,
    );

    // isold's /metrics: the exits by reason, as the VMM made them.
    let guest3 = report(&out, "guest3");
    let metrics = out.section("metrics").unwrap().text;
    let exits = |reason: &str| -> u64 {
        let key = format!(
            "isol_interruptions_total{{cpu=\"1\",class=\"vmexit\",kind=\"vm_exit\",detail=\"{reason}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    eprintln!(
        "isold: vmexit INTR {} HLT {} IOIO {}",
        exits("INTR"),
        exits("HLT"),
        exits("IOIO")
    );
    assert!(exits("HLT") >= guest3["hlt"].as_u64().unwrap(), "{metrics}");
    assert!(
        exits("IOIO") >= guest3["out"].as_u64().unwrap(),
        "{metrics}"
    );
    assert!(exits("INTR") >= 1, "{metrics}");

    // KVM's NX huge page recovery thread for this VM (on 6.12 a thread
    // of the VMM) is allowed on the vCPU's CPU: the audit names it and
    // moves it away.
    let audit = out.json_section("audit").unwrap();
    let item = |id: &str| {
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("no audit item {id}"))
            .clone()
    };
    let nx = item("kvm.nx_recovery");
    eprintln!("audit kvm.nx_recovery: {nx}");
    if series == Series::V6_12 {
        assert_eq!(nx["status"], "fail", "{nx}");
    }
    if nx["status"] == "fail" {
        assert!(
            nx["detail"].as_str().unwrap().contains("kvm-nx-lpage-re"),
            "{nx}"
        );
        assert!(
            nx["fix"].as_str().unwrap().contains("taskset -pc 0 "),
            "{nx}"
        );
    }
    assert_eq!(item("kvm.pit")["status"], "pass");
}

/// kvmguest's final report in section `name`.
fn report(out: &isol_lab::Outcome, name: &str) -> Value {
    let guest = lines(&out.section(name).unwrap().text)
        .pop()
        .expect("kvmguest's report");
    eprintln!("kvmguest ({name}): {guest}");
    assert_eq!(guest["ok"], true);
    guest
}

/// The VM exits of one watch (`all`, its JSON lines) against what
/// kvmguest did (`guest`); `senders`: the watch names IPI senders.
fn check_exits(all: &[Value], guest: &Value, senders: bool) {
    let vcpu_tid = guest["vcpu_tid"].as_u64().unwrap();
    let vmm_pid = guest["pid"].as_u64().unwrap();
    let summary = all.iter().find(|v| v["type"] == "summary").unwrap();
    eprintln!("vm: {} drops: {}", summary["vm"], summary["drops"]);
    assert_eq!(summary["vm"]["state"], "attached");
    assert_eq!(summary["vm"]["isa"], "svm");
    let exits: Vec<&Value> = all
        .iter()
        .filter(|r| r["type"] == "interruption" && r["cause"]["class"] == "vmexit")
        .collect();
    for r in &exits {
        assert_eq!(r["cpu"], 1, "{r}");
        assert_eq!(r["tid"].as_u64(), Some(vcpu_tid), "{r}");
        assert_eq!(r["pid"].as_u64(), Some(vmm_pid), "{r}");
    }
    let reason = |r: &Value| {
        r["cause"]["vm_exit"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
    for r in &exits {
        *by_reason.entry(reason(r)).or_default() += 1;
    }
    eprintln!("{} VM exits by reason: {by_reason:?}", exits.len());

    // The guest's own exits: classed guest-caused, handed to the VMM.
    for (name, kvm_exit, asked) in [
        ("HLT", "KVM_EXIT_HLT", "hlt"),
        ("IOIO", "KVM_EXIT_IO", "out"),
    ] {
        let these: Vec<&&Value> = exits.iter().filter(|r| reason(r) == name).collect();
        let asked = guest[asked].as_u64().unwrap() as usize;
        assert!(
            these.len() >= asked,
            "{} {name} exits recorded, the guest made {asked}",
            these.len()
        );
        // An interrupt that lands while isol closes a record can overwrite
        // the per-CPU chain under it (the capture's programs nest on one
        // CPU's state): such a record no longer starts with its exit.
        // Seen once in a few hundred exits (5.10, --pid); counted, bounded.
        let disturbed = these
            .iter()
            .filter(|r| r["chain"][0]["class"] != "vmexit")
            .count();
        assert!(
            disturbed <= 2,
            "{disturbed} of {} {name} exits lost their chain to a nested interrupt",
            these.len()
        );
        for r in these.iter().filter(|r| r["chain"][0]["class"] == "vmexit") {
            assert_eq!(r["cause"]["vm_exit"]["origin"], "guest", "{r}");
            assert_eq!(r["vm_userspace"], true, "{r}");
            // (An interrupt may land while isol closes the record: the
            // return to the VMM is not always the last cause.)
            assert!(
                r["chain"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["kind"] == "vm_userspace" && c["detail"] == kvm_exit),
                "no {kvm_exit} in the chain: {r}"
            );
        }
    }

    // The host's: INTR exits whose chain is the TLB-flush IPI, sent by
    // the VMM's housekeeping thread on CPU 0.
    let flush_exits: Vec<&&Value> = exits
        .iter()
        .filter(|r| {
            reason(r) == "INTR"
                && r["chain"].as_array().unwrap().iter().any(|c| {
                    c["class"] == "ipi"
                        && c["detail"].as_str().unwrap().starts_with("flush_tlb_func")
                })
        })
        .collect();
    eprintln!(
        "{} INTR exits ran flush_tlb_func, of {} flushes; first: {}",
        flush_exits.len(),
        guest["flushes"],
        flush_exits.first().map_or(String::new(), |r| r.to_string())
    );
    // Every flush that lands while the guest runs is an INTR exit; the
    // others land while the vCPU thread serves an hlt or out in the VMM.
    let flushes = guest["flushes"].as_u64().unwrap() as usize;
    assert!(
        flush_exits.len() * 2 >= flushes,
        "{} of {flushes} TLB flushes seen as INTR exits",
        flush_exits.len()
    );
    for r in &flush_exits {
        assert_eq!(r["cause"]["vm_exit"]["origin"], "host", "{r}");
        assert_eq!(r["cause"]["vm_exit"]["code"], 0x60, "{r}");
        assert!(r["duration_ns"].as_u64().unwrap() > 0, "{r}");
    }
    if !senders {
        return;
    }
    // A record keeps one sender, its first IPI's: an exit that took a
    // reschedule IPI before the flush names that one's sender. The
    // exits whose first IPI ran the flush:
    let sent: Vec<&&&Value> = flush_exits
        .iter()
        .filter(|r| {
            r["chain"].as_array().unwrap()[1..]
                .iter()
                .find(|c| {
                    c["class"] == "ipi"
                        && !matches!(
                            c["kind"].as_str(),
                            Some("call_function" | "call_function_single" | "tlb_flush")
                        )
                })
                .is_some_and(|c| {
                    c["kind"] == "csd_function"
                        && c["detail"].as_str().unwrap().starts_with("flush_tlb_func")
                })
        })
        .collect();
    eprintln!("{} flush exits name the flush's sender", sent.len());
    assert!(
        sent.len() * 2 >= flushes,
        "{} of {flushes} flush exits name the flush's sender",
        sent.len()
    );
    for r in &sent {
        assert_eq!(r["sender"]["cpu"], 0, "{r}");
        assert_eq!(r["sender"]["comm"], "kvmguest", "{r}");
        assert_ne!(r["sender"]["pid"].as_u64(), Some(vcpu_tid), "{r}");
        // A stack the table could not take is counted as a drop.
        let stack = r["sender"]["stack"].as_array().unwrap();
        assert!(
            stack.is_empty() || stack.iter().any(|f| f.as_str().unwrap().contains("munmap")),
            "the sender's stack is not the munmap: {r}"
        );
    }
}
