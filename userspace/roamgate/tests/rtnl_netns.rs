//! The rtnetlink client against the kernel, in a namespace of its own: link
//! indexes by name, the home agent's proxy neighbour and host route, the
//! TUN plane's routes and rules, each added and removed twice (adds replace
//! or tolerate "exists", removals tolerate "not found"), and the start-up
//! cleanup of roamgate's rules that leaves everyone else's. Needs root.
//! `ROAMGATE_NETNS_PREFIX` names the namespace (default `rg`).

use std::{net::Ipv4Addr, os::fd::AsRawFd as _, process::Command};

use roamgate::{
    platform::{
        neigh,
        rtnl::{NetlinkError, Rtnl},
    },
    tunnel::route::{self, DevRoute, Prefix, Rule},
};

/// The namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let lead = std::env::var("ROAMGATE_NETNS_PREFIX").unwrap_or_else(|_| "rg".into());
        let n = Self(format!("{lead}rtnl{}", std::process::id()));
        n.ip(&["netns", "add", &n.0]);
        n.ip_in(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        for dev in ["lo", "v0", "v1"] {
            n.ip_in(&["link", "set", dev, "up"]);
        }
        n.ip_in(&["addr", "add", "10.9.9.1/24", "dev", "v0"]);
        n
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ip_in(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.0];
        a.extend_from_slice(args);
        self.ip(&a)
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns with a valid namespace fd changes only this
            // thread's network namespace.
            assert_eq!(
                unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns {path}"
            );
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const HOME: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 50);
const VIA: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 2);

/// A default route into v1 in table 4340, as the TUN plane installs one.
fn tun_route(r: &Rtnl) -> DevRoute {
    DevRoute {
        dst: "0.0.0.0/0".parse().unwrap(),
        oif: r.link_index("v1").unwrap(),
        prefsrc: None,
        table: 4340,
    }
}

/// `priority 4342 from HOME lookup 4340`.
const TUN_RULE: Rule = Rule {
    priority: 4342,
    from: Some(Prefix::host(HOME)),
    to: None,
    table: 4340,
    suppress_prefixlength: None,
};

#[test]
fn rtnetlink_programs_links_neighbours_routes_and_rules() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let ns = Netns::new();
    let index = |name: &'static str| {
        ns.run(move || {
            let r = Rtnl::new().expect("rtnetlink");
            r.link_index(name)
        })
    };
    // The thread joined the namespace: its lo is 1, v0 exists only there.
    assert_eq!(index("lo").unwrap(), 1);
    assert!(index("v0").unwrap() > 1);
    assert!(matches!(index("nl-none0"), Err(NetlinkError::NoSuchLink(n)) if n == "nl-none0"));

    // Proxy neighbour and host route: twice each way.
    ns.run(|| {
        let r = Rtnl::new().unwrap();
        neigh::add_proxy(&r, "v0", HOME, Some(VIA)).unwrap();
        neigh::add_proxy(&r, "v0", HOME, Some(VIA)).unwrap();
    });
    let proxies = ns.ip_in(&["-4", "neigh", "show", "proxy"]);
    assert_eq!(proxies.trim(), format!("{HOME} dev v0 proxy"), "{proxies}");
    let route = ns.ip_in(&["-4", "route", "show", &format!("{HOME}/32")]);
    assert_eq!(
        route.trim(),
        format!("{HOME} via {VIA} dev v0 proto static"),
        "{route}"
    );
    ns.run(|| {
        let r = Rtnl::new().unwrap();
        neigh::remove_proxy(&r, "v0", HOME, Some(VIA));
        neigh::remove_proxy(&r, "v0", HOME, Some(VIA));
    });
    assert_eq!(ns.ip_in(&["-4", "neigh", "show", "proxy"]).trim(), "");
    assert_eq!(
        ns.ip_in(&["-4", "route", "show", &format!("{HOME}/32")])
            .trim(),
        ""
    );

    // A TUN-style route in its own table, and rules: adds are idempotent
    // (one copy each), removals of what is gone succeed.
    ns.run(|| {
        let r = Rtnl::new().unwrap();
        let dev = tun_route(&r);
        route::add_route(&r, &dev).unwrap();
        route::add_route(&r, &dev).unwrap();
        route::add_rule(&r, &TUN_RULE).unwrap();
        route::add_rule(&r, &TUN_RULE).unwrap();
        route::add_rule(
            &r,
            &Rule {
                priority: 4343,
                ..TUN_RULE
            },
        )
        .unwrap();
    });
    let table = ns.ip_in(&["-4", "route", "show", "table", "4340"]);
    assert_eq!(
        table.trim(),
        "default dev v1 proto static scope link",
        "{table}"
    );
    let tagged = |ns: &Netns| {
        ns.ip_in(&["-4", "rule", "show"])
            .lines()
            .filter(|l| l.contains("proto 167"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tagged(&ns),
        vec![
            format!("4342:\tfrom {HOME} lookup 4340 proto 167"),
            format!("4343:\tfrom {HOME} lookup 4340 proto 167"),
        ]
    );

    // The start-up cleanup takes roamgate's rules only.
    ns.ip_in(&[
        "rule",
        "add",
        "priority",
        "4344",
        "from",
        "10.9.9.0/24",
        "lookup",
        "main",
    ]);
    let removed = ns.run(|| route::remove_stale_rules(&Rtnl::new().unwrap()).unwrap());
    assert_eq!(removed, 2);
    assert!(tagged(&ns).is_empty());
    let rules = ns.ip_in(&["-4", "rule", "show"]);
    assert!(
        rules.contains("4344:\tfrom 10.9.9.0/24 lookup main"),
        "{rules}"
    );
    ns.run(|| {
        let r = Rtnl::new().unwrap();
        let dev = tun_route(&r);
        route::remove_route(&r, &dev).unwrap();
        route::remove_route(&r, &dev).unwrap();
        route::remove_rule(&r, &TUN_RULE).unwrap();
    });
    assert_eq!(
        ns.ip_in(&["-4", "route", "show", "table", "4340"]).trim(),
        ""
    );
}
