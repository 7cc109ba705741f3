//! The test Kubernetes API server as a process, for bench/project.sh and manual runs:
//! `kube-test-server [--port N] [--objects N] [--namespace NS] [--fixtures]`. Prints the URL,
//! writes `kubeconfig` into the current directory, and serves until killed. `GET /_stats`
//! tells the requests answered.

use cairn_e2e::kube::{bulk_project, openshift_project, Faults, KubeServer};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut port, mut objects, mut ns, mut fixtures) = (0u16, 0usize, "bench".to_string(), false);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = val().parse().expect("--port N"),
            "--objects" => objects = val().parse().expect("--objects N"),
            "--namespace" => ns = val(),
            "--fixtures" => fixtures = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let server = KubeServer::start_on(port, Faults::default());
    if objects > 0 {
        for o in bulk_project(&ns, objects) {
            server.put(o);
        }
    }
    if fixtures {
        for o in openshift_project(&ns) {
            server.put(o);
        }
    }
    std::fs::write("kubeconfig", cairn_e2e::kube::kubeconfig_text(&server.url))
        .expect("kubeconfig");
    println!("{}", server.url);
    loop {
        std::thread::park();
    }
}
