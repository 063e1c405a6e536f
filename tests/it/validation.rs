//! One test per validation rule: a broken inventory exits 2 and names the exact
//! `file:line:col: key` of the value at fault (issue 15: errors used to borrow a neighbour's
//! position), and the previously rendered tree stays byte-for-byte as it was.

use crate::support::{bundled_inventory, project_with, replace_once, run_iac, snapshot_dir, text};

/// 1-based line and column (in characters) of byte offset `at` of `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

/// Render the bundled inventory, then replace `from` by `to` in it and render again: exit 2,
/// an error line `hosts/inventory.toml:LINE:COL: KEY: …MESSAGE…` where LINE:COL is where `at`
/// first occurs from the replacement on (`""`: the replacement itself), and generated/ as it
/// was.
fn assert_rejected(from: &str, to: &str, key: &str, at: &str, message: &str) {
    let good = bundled_inventory();
    let bad = replace_once(&good, from, to);
    assert_rejected_text(&bad, good.find(from).unwrap(), key, at, message);
}

fn assert_rejected_text(bad: &str, from: usize, key: &str, at: &str, message: &str) {
    let dir = project_with(&bundled_inventory());
    let first = run_iac(dir.path(), &["render"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let before = snapshot_dir(&dir.path().join("generated"));
    assert!(!before.is_empty());

    std::fs::write(dir.path().join("hosts/inventory.toml"), bad).unwrap();
    let out = run_iac(dir.path(), &["render"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit 2, got {:?}: {stderr}", out.status);
    let offset = from + bad[from..].find(at).unwrap_or_else(|| panic!("`{at}` not in the inventory after the edit"));
    let (line, col) = position(bad, offset);
    let want = format!("hosts/inventory.toml:{line}:{col}: {key}: ");
    let hit = stderr.lines().find(|l| l.starts_with(&want) && l.contains(message));
    let hit = hit.unwrap_or_else(|| panic!("no error line starting `{want}` with `{message}` in:\n{stderr}"));
    assert!(!hit.chars().any(char::is_control), "a control character reached the terminal: {hit:?}");
    assert_eq!(before, snapshot_dir(&dir.path().join("generated")), "a failed render changed generated/");
}

macro_rules! rejects {
    ($($name:ident: $from:expr => $to:expr, $key:expr, at $at:expr, $msg:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_rejected($from, $to, $key, $at, $msg);
            }
        )*
    };
}

const AGENT: &str = "roles = [\"k3s-agent\"]";
const PG: &str = "roles = [\"postgresql\"]";
const SERVER: &str = "roles = [\"k3s-server\"]";
const ADMIN_KEY: &str = "key = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"";
const ADMIN: &str = "[admins.example]\nkey = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"";
const ADMIN_NETS: &str = "admin = [\"172.22.0.0/24\"]";
const KAFKA_DB_HOSTS: &str = "hosts = [{ host = \"alkaid\", path = \"/var/lib/secrets/postgresql-kafka\" }]";
const KAFKA_DB_PATH: &str = "path = \"/var/lib/secrets/postgresql-kafka\" }]";
/// The bundled inventory declares no `[[cluster.egress]]`: the egress tests add one after this.
const DISABLE: &str = "disable = [\"traefik\", \"servicelb\"]";

fn egress(to: &str, ports: &str, why: &str) -> String {
    format!("{DISABLE}\n\n[[cluster.egress]]\nto = {to}\nproto = \"tcp\"\nports = {ports}\nwhy = {why}")
}

rejects! {
    // Syntax and schema (serde): position of the offending token.
    toml_syntax_error: r#"name = "loe-homelab""# => r#"name = "loe-homelab"#, "(syntax)", at "\n", "invalid basic string";
    unknown_key: "masquerade = true" => "masquerade = true\nmasqerade = false", "cluster.masqerade", at "masqerade", "unknown field `masqerade`";
    unknown_key_in_host: PG => "roles = [\"postgresql\"]\nadress = \"1.2.3.4\"", "hosts.alkaid.adress", at "adress", "unknown field `adress`";
    unknown_role: AGENT => r#"roles = ["k3s-worker"]"#, "hosts.hamal.roles[0]", at "\"k3s-worker\"", "unknown variant `k3s-worker`";
    // An unknown key in every other struct of the schema (each denies unknown fields).
    unknown_top_level_key: "[site]" => "sit = 1\n\n[site]", "sit", at "sit =", "unknown field `sit`";
    unknown_key_in_site: r#"name = "loe-homelab""# => "name = \"loe-homelab\"\nnmae = \"x\"", "site.nmae", at "nmae", "unknown field `nmae`";
    unknown_key_in_network: r#"cidr = "172.22.0.0/24""# => "cidr = \"172.22.0.0/24\"\ncdir = \"x\"", "networks.lan.cdir", at "cdir", "unknown field `cdir`";
    unknown_key_in_access: ADMIN_NETS => "admin = [\"172.22.0.0/24\"]\npush_secret = false", "access.push_secret", at "push_secret", "unknown field `push_secret`";
    unknown_key_in_dns: r#"upstream = ["172.22.100.104"]"# => "upstream = [\"172.22.100.104\"]\nupstreams = []", "dns.upstreams", at "upstreams", "unknown field `upstreams`";
    unknown_key_in_egress: DISABLE => &format!("{}\nport = [443]", egress("[\"198.51.100.0/24\"]", "[443]", "\"mirror\"")), "cluster.egress[0].port", at "port =", "unknown field `port`";
    unknown_key_in_firewall: PG => "roles = [\"postgresql\"]\nfirewall.alow = []", "hosts.alkaid.firewall.alow", at "alow", "unknown field `alow`";
    unknown_key_in_allow: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [\"admin\"], proto = \"tcp\", ports = [80], why = \"web\", comment = \"x\" }]", "hosts.alkaid.firewall.allow[0].comment", at "comment", "unknown field `comment`";
    unknown_key_in_database: r#"owner = "kafka""# => "owner = \"kafka\"\nowners = \"x\"", "databases.kafka.owners", at "owners", "unknown field `owners`";
    unknown_key_in_pipeline: r#"table = "kafka_messages""# => "table = \"kafka_messages\"\ntables = \"x\"", "pipeline.tables", at "tables", "unknown field `tables`";
    unknown_key_in_kafka: "replicas = 1" => "replicas = 1\nreplica = 1", "pipeline.kafka.replica", at "replica =", "unknown field `replica`";
    unknown_key_in_connect: r#"connector = "postgres-sink""# => "connector = \"postgres-sink\"\nconector = \"x\"", "pipeline.connect.conector", at "conector", "unknown field `conector`";
    unknown_key_in_producer: r#"connector = "postgres-sink""# => "connector = \"postgres-sink\"\n\n[pipeline.producer]\nmessages = 5\nmesages = 5", "pipeline.producer.mesages", at "mesages", "unknown field `mesages`";
    unknown_key_in_admin: ADMIN_KEY => "keys = \"x\"\nkey = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"", "admins.example.keys", at "keys", "unknown field `keys`";
    unknown_key_in_secret: r#"kind = "k3s-token""# => "kind = \"k3s-token\"\nkinds = \"x\"", "secrets.k3s-token.kinds", at "kinds", "unknown field `kinds`";
    unknown_key_in_secret_consumer: KAFKA_DB_PATH => "path = \"/var/lib/secrets/postgresql-kafka\", user = \"x\" }]", "secrets.kafka-db.hosts[0].user", at "user", "unknown field `user`";
    unknown_key_in_kubernetes_consumer: KAFKA_DB_HOSTS => "kubernetes = [{ secret = \"grafana\", key = \"pw\", namespace = \"x\" }]", "secrets.kafka-db.kubernetes[0].namespace", at "namespace", "unknown field `namespace`";

    // [site]
    site_name_not_a_label: r#"name = "loe-homelab""# => r#"name = "Loe Homelab\nx""#, "site.name", at "\"Loe", "DNS-1123 label";

    // [networks]
    network_name_not_a_label: "[networks.lan]" => "[networks.LAN]", "networks.LAN", at "LAN", "network name";
    cidr_with_host_bits: r#"cidr = "172.22.0.0/24""# => r#"cidr = "172.22.0.7/24""#, "networks.lan.cidr", at "\"172.22.0.7/24\"", "host bits";
    network_cidr_ipv6: r#"cidr = "172.22.0.0/24""# => r#"cidr = "fd00:22::/64""#, "networks.lan.cidr", at "\"fd00:22::/64\"", "`fd00:22::/64` is IPv6; iac supports IPv4 networks only";
    // `dmz` sorts before `lan` but stands after it: the one later in the file is reported.
    networks_overlap: "[access]" => "[networks.dmz]\ncidr = \"172.22.0.128/25\"\n\n[access]", "networks.dmz.cidr", at "\"172.22.0.128/25\"", "172.22.0.128/25 overlaps networks.lan.cidr (172.22.0.0/24)";

    // [access], [dns]
    no_admin_network_cuts_ssh: r#"admin = ["172.22.0.0/24"]"# => "admin = []", "access.admin", at "[]", "SSH, the deploy path, would be closed";
    invalid_admin_cidr: r#"admin = ["172.22.0.0/24"]"# => r#"admin = ["172.22.0.0/24", "everyone"]"#, "access.admin[1]", at "\"everyone\"", "not a valid IPv4 CIDR";
    invalid_dns_address: r#"upstream = ["172.22.100.104"]"# => r#"upstream = ["dns.example"]"#, "dns.upstream[0]", at "\"dns.example\"", "not a valid IPv4 address";
    empty_dns_upstream: r#"upstream = ["172.22.100.104"]"# => "upstream = []", "dns.upstream", at "[]", "no resolver";
    loopback_dns_upstream: r#"upstream = ["172.22.100.104"]"# => r#"upstream = ["127.0.0.53"]"#, "dns.upstream[0]", at "\"127.0.0.53\"", "loopback";

    // [cluster]
    invalid_cidr: r#"pod_cidr = "10.42.0.0/16""# => r#"pod_cidr = "10.42.0.0/33""#, "cluster.pod_cidr", at "\"10.42.0.0/33\"", "not a valid IPv4 CIDR";
    pod_cidr_overlaps_lan: r#"pod_cidr = "10.42.0.0/16""# => r#"pod_cidr = "172.22.0.0/16""#, "cluster.pod_cidr", at "\"172.22.0.0/16\"", "overlaps networks.lan.cidr";
    pod_cidr_too_small_for_a_node: r#"pod_cidr = "10.42.0.0/16""# => r#"pod_cidr = "10.42.0.0/25""#, "cluster.pod_cidr", at "\"10.42.0.0/25\"", "holds 0 /24 node ranges";
    pod_cidr_fewer_ranges_than_nodes: r#"pod_cidr = "10.42.0.0/16""# => r#"pod_cidr = "10.42.0.0/24""#, "cluster.pod_cidr", at "\"10.42.0.0/24\"", "holds 1 /24 node ranges but the inventory has 2 k3s nodes";
    service_cidr_overlaps_pod_cidr: r#"service_cidr = "10.43.0.0/16""# => r#"service_cidr = "10.42.128.0/17""#, "cluster.service_cidr", at "\"10.42.128.0/17\"", "overlaps cluster.pod_cidr";
    service_cidr_too_small: r#"service_cidr = "10.43.0.0/16""# => r#"service_cidr = "10.43.0.0/29""#, "cluster.service_cidr", at "\"10.43.0.0/29\"", "between a /12 and a /28";
    service_cidr_too_large: r#"service_cidr = "10.43.0.0/16""# => r#"service_cidr = "100.64.0.0/10""#, "cluster.service_cidr", at "\"100.64.0.0/10\"", "100.64.0.0/10 must be between a /12 and a /28";
    disable_unknown_component: r#"disable = ["traefik", "servicelb"]"# => r#"disable = ["traefik", "servicelb --cluster-init"]"#, "cluster.disable[1]", at "\"servicelb --", "not a packaged k3s component";
    disable_coredns_under_the_pipeline: r#"disable = ["traefik", "servicelb"]"# => r#"disable = ["traefik", "coredns"]"#, "cluster.disable[1]", at "\"coredns\"", "cannot disable `coredns`";
    disable_local_storage_under_local_path: DISABLE => r#"disable = ["traefik", "local-storage"]"#, "cluster.disable[1]", at "\"local-storage\"", "cannot disable `local-storage`: pipeline.kafka.storage_class is `local-path`";
    egress_why_empty: DISABLE => &egress("[\"198.51.100.0/24\"]", "[443]", "\"  \""), "cluster.egress[0].why", at "\"  \"", "is empty";
    egress_why_with_a_bidi_override: DISABLE => &egress("[\"198.51.100.0/24\"]", "[443]", "\"ok \u{202e}tpecca\""), "cluster.egress[0].why", at "\"ok", "U+202E";
    egress_without_ports: DISABLE => &egress("[\"198.51.100.0/24\"]", "[]", "\"mirror\""), "cluster.egress[0].ports", at "[]", "at least one port";
    egress_without_destinations: DISABLE => &egress("[]", "[443]", "\"mirror\""), "cluster.egress[0].to", at "[]", "at least one destination";
    egress_invalid_destination: DISABLE => &egress("[\"github.com\"]", "[443]", "\"mirror\""), "cluster.egress[0].to[0]", at "\"github.com\"", "not a valid IPv4 CIDR";

    // [hosts.*]
    host_name_not_a_label: "[hosts.hamal]" => "[hosts.Hamal]", "hosts.Hamal", at "Hamal", "host name";
    reserved_host_name: "[hosts.hamal]" => "[hosts.k8s]", "hosts.k8s", at "k8s]", "reserved";
    host_named_like_the_admin_networks: "[hosts.hamal]" => "[hosts.admin]", "hosts.admin", at "admin]", "means the admin networks";
    host_named_like_the_cluster: "[hosts.hamal]" => "[hosts.cluster]", "hosts.cluster", at "cluster]", "means the cluster's pods";
    invalid_address: r#"address = "172.22.0.135""# => r#"address = "172.22.0.300""#, "hosts.hamal.address", at "\"172.22.0.300\"", "not a valid IPv4 address";
    host_address_ipv6: r#"address = "172.22.0.133""# => r#"address = "fd00:22::133""#, "hosts.alkaid.address", at "\"fd00:22::133\"", "`fd00:22::133` is IPv6; iac supports IPv4 addresses only";
    duplicate_host_address: r#"address = "172.22.0.135""# => r#"address = "172.22.0.134""#, "hosts.hamal.address", at "\"172.22.0.134\"", "already the address of host `alphard`";
    host_outside_every_network: r#"address = "172.22.0.133""# => r#"address = "192.168.1.133""#, "hosts.alkaid.address", at "\"192.168.1.133\"", "outside every declared network";
    host_on_the_network_address: r#"address = "172.22.0.133""# => r#"address = "172.22.0.0""#, "hosts.alkaid.address", at "\"172.22.0.0\"", "the network address of its network";
    host_on_the_broadcast_address: r#"address = "172.22.0.133""# => r#"address = "172.22.0.255""#, "hosts.alkaid.address", at "\"172.22.0.255\"", "the broadcast address of its network";
    host_on_a_loopback_address: r#"address = "172.22.0.133""# => r#"address = "127.0.0.1""#, "hosts.alkaid.address", at "\"127.0.0.1\"", "a loopback address";
    host_on_a_multicast_address: r#"address = "172.22.0.133""# => r#"address = "224.0.0.251""#, "hosts.alkaid.address", at "\"224.0.0.251\"", "224.0.0.251 is a multicast address: no host can have it";
    host_on_the_unspecified_address: r#"address = "172.22.0.133""# => r#"address = "0.0.0.0""#, "hosts.alkaid.address", at "\"0.0.0.0\"", "0.0.0.0 is the unspecified address: no host can have it";
    server_and_agent: AGENT => r#"roles = ["k3s-agent", "k3s-server"]"#, "hosts.hamal.roles", at "[\"k3s-agent\", ", "not both";
    ssh_user_that_names_another_host: PG => "roles = [\"postgresql\"]\nssh_user = \"root@127.0.0.9?remote-program=touch%20/tmp/x&x=\"", "hosts.alkaid.ssh_user", at "\"root@", "not a user name";
    ssh_port_zero: PG => "roles = [\"postgresql\"]\nssh_port = 0", "hosts.alkaid.ssh_port", at "0", "0 is not a port";
    ssh_port_taken_by_postgresql: PG => "roles = [\"postgresql\"]\nssh_port = 5432", "hosts.alkaid.ssh_port", at "5432", "already PostgreSQL";
    ssh_port_taken_by_the_kubelet: AGENT => "roles = [\"k3s-agent\"]\nssh_port = 10250", "hosts.hamal.ssh_port", at "10250", "already the kubelet's";
    ssh_port_taken_by_the_k3s_api: SERVER => "roles = [\"k3s-server\"]\nssh_port = 6443", "hosts.alphard.ssh_port", at "6443", "port 6443 is already the k3s API's";
    unknown_system: PG => "roles = [\"postgresql\"]\nsystem = \"x86_64-darwin\"", "hosts.alkaid.system", at "\"x86_64-darwin\"", "not a NixOS system";
    unknown_join_target: "roles = [\"k3s-agent\"]\n" => "roles = [\"k3s-agent\"]\njoin = \"alkaid\"\n", "hosts.hamal.join", at "\"alkaid\"", "not another k3s node";
    join_target_not_a_server: SERVER => "roles = [\"k3s-server\"]\njoin = \"hamal\"", "hosts.alphard.join", at "\"hamal\"", "`hamal` is not a k3s server";
    join_from_a_host_outside_the_cluster: PG => "roles = [\"postgresql\"]\njoin = \"alphard\"", "hosts.alkaid.join", at "\"alphard\"", "only k3s nodes join a server";
    block_that_cuts_ssh: PG => "roles = [\"postgresql\"]\nfirewall.block = [\"172.22.0.0/25\"]", "hosts.alkaid.firewall.block[0]", at "\"172.22.0.0/25\"", "would cut SSH from admin network 172.22.0.0/24";
    block_invalid_cidr: PG => "roles = [\"postgresql\"]\nfirewall.block = [\"10.0.0.0/40\"]", "hosts.alkaid.firewall.block[0]", at "\"10.0.0.0/40\"", "`10.0.0.0/40` is not a valid IPv4 CIDR";
    allow_from_empty: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [], proto = \"tcp\", ports = [80], why = \"web\" }]", "hosts.alkaid.firewall.allow[0].from", at "[]", "needs at least one source";
    allow_from_invalid_cidr: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [\"10.0.0.0/33\"], proto = \"tcp\", ports = [80], why = \"web\" }]", "hosts.alkaid.firewall.allow[0].from[0]", at "\"10.0.0.0/33\"", "`10.0.0.0/33` is not a valid IPv4 CIDR";
    allow_from_unknown_host: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [\"mizar\"], proto = \"tcp\", ports = [80], why = \"web\" }]", "hosts.alkaid.firewall.allow[0].from[0]", at "\"mizar\"", "unknown host `mizar`";
    allow_why_with_a_line_break: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [\"admin\"], proto = \"tcp\", ports = [80], why = \"web\\naccept\" }]", "hosts.alkaid.firewall.allow[0].why", at "\"web", "U+000A";
    allow_port_zero: PG => "roles = [\"postgresql\"]\nfirewall.allow = [{ from = [\"admin\"], proto = \"tcp\", ports = [0], why = \"web\" }]", "hosts.alkaid.firewall.allow[0].ports", at "[0]", "between 1 and 65535";

    // [databases.*]
    database_name_not_an_identifier: "[databases.kafka]" => "[databases.Kafka-DB]", "databases.Kafka-DB", at "Kafka-DB", "SQL identifier";
    unknown_host_reference: r#"host = "alkaid""# => r#"host = "mizar""#, "databases.kafka.host", at "\"mizar\"", "unknown host `mizar`";
    database_on_host_without_postgresql: r#"host = "alkaid""# => r#"host = "hamal""#, "databases.kafka.host", at "\"hamal\"", "no `postgresql` role";
    owner_not_an_identifier: r#"owner = "kafka""# => r#"owner = "Kafka Owner""#, "databases.kafka.owner", at "\"Kafka Owner\"", "SQL identifier";
    owner_is_the_superuser: r#"owner = "kafka""# => r#"owner = "postgres""#, "databases.kafka.owner", at "\"postgres\"", "reserved by PostgreSQL";
    database_port_zero: r#"owner = "kafka""# => "owner = \"kafka\"\nport = 0", "databases.kafka.port", at "0", "0 is not a port";
    unknown_client_reference: r#"clients = ["cluster", "admin"]"# => r#"clients = ["cluster", "mizar"]"#, "databases.kafka.clients[1]", at "\"mizar\"", "unknown host `mizar`";
    clients_empty: r#"clients = ["cluster", "admin"]"# => "clients = []", "databases.kafka.clients", at "[]", "needs at least one source";

    // [pipeline]
    unknown_database_reference: r#"database = "kafka""# => r#"database = "events""#, "pipeline.database", at "\"events\"", "unknown database `events`";
    namespace_not_a_label: r#"namespace = "kafka-pipeline""# => r#"namespace = "Kafka Pipeline""#, "pipeline.namespace", at "\"Kafka Pipeline\"", "DNS-1123 label";
    topic_not_a_kafka_name: r#"topic = "demo-messages""# => r#"topic = "demo messages""#, "pipeline.topic", at "\"demo messages\"", "not a Kafka topic name";
    table_not_an_identifier: r#"table = "kafka_messages""# => r#"table = "kafka-messages""#, "pipeline.table", at "\"kafka-messages\"", "SQL identifier";
    password_env_not_a_variable: r#"password_env = "IAC_PG_PASSWORD""# => r#"password_env = "IAC-PG PASSWORD""#, "pipeline.password_env", at "\"IAC-PG", "not an environment variable name";
    kafka_image_with_an_option: r#"image = "apache/kafka:4.1.1""# => r#"image = "apache/kafka:4.1.1 --privileged""#, "pipeline.kafka.image", at "\"apache/kafka:4.1.1 --", "not a container image reference";
    kafka_replicas_zero: "replicas = 1" => "replicas = 0", "pipeline.kafka.replicas", at "0", "at least one broker";
    kafka_storage_not_a_size: r#"storage = "5Gi""# => r#"storage = "5GB""#, "pipeline.kafka.storage", at "\"5GB\"", "not a storage size";
    storage_class_not_a_name: r#"storage_class = "local-path""# => r#"storage_class = "local path\n""#, "pipeline.kafka.storage_class", at "\"local path", "DNS-1123 subdomain";
    cluster_id_not_kraft: r#"cluster_id = "euNKiNAFMRq_9pSVJThoTA""# => r#"cluster_id = "short""#, "pipeline.kafka.cluster_id", at "\"short\"", "not a KRaft cluster id";
    connect_image_uppercase: r#"connector = "postgres-sink""# => "connector = \"postgres-sink\"\ncurl_image = \"Curl/Curl\"", "pipeline.connect.curl_image", at "\"Curl/Curl\"", "not a container image reference";
    connector_not_a_label: r#"connector = "postgres-sink""# => r#"connector = "Postgres_Sink""#, "pipeline.connect.connector", at "\"Postgres_Sink\"", "DNS-1123 label";
    kafka_replicas_two: "replicas = 1" => "replicas = 2", "pipeline.kafka.replicas", at "2", "cannot keep a KRaft quorum through the loss of one";
    cluster_id_not_canonical: r#"cluster_id = "euNKiNAFMRq_9pSVJThoTA""# => r#"cluster_id = "iacKRaftCluster0000001""#, "pipeline.kafka.cluster_id", at "\"iacKRaft", "does not round-trip: its 16 bytes encode as `iacKRaftCluster000000w`";
    connect_image_without_a_tag: r#"image = "quay.io/debezium/connect:3.4.3.Final""# => r#"image = "quay.io/debezium/connect""#, "pipeline.connect.image", at "\"quay.io", "names no tag";
    connect_image_latest: r#"image = "quay.io/debezium/connect:3.4.3.Final""# => r#"image = "quay.io/debezium/connect:latest""#, "pipeline.connect.image", at "\"quay.io", "pinned to `latest`";
    // [secrets.*], [admins.*], host keys and the references to secrets (issue 17)
    token_file_removed: r#"token = "k3s-token""# => r#"token_file = "/var/lib/secrets/k3s-token""#, "cluster.token_file", at "\"/var", "is replaced by `token = \"SECRET\"`";
    password_file_removed: r#"password = "kafka-db""# => r#"password_file = "/var/lib/secrets/postgresql-kafka""#, "databases.kafka.password_file", at "\"/var", "is replaced by `password = \"SECRET\"`";
    token_names_an_undeclared_secret: r#"token = "k3s-token""# => r#"token = "k3s""#, "cluster.token", at "\"k3s\"", "unknown secret `k3s` (declared: k3s-token, kafka-db)";
    password_names_an_undeclared_secret: r#"password = "kafka-db""# => r#"password = "kafka""#, "databases.kafka.password", at "\"kafka\"", "unknown secret `kafka`";
    admin_key_not_an_age_recipient: ADMIN_KEY => "key = \"age1nope\"", "admins.example.key", at "\"age1nope\"", "not an age recipient";
    admin_name_not_a_label: "[admins.example]" => "[admins.Example]", "admins.Example", at "Example]", "admin name";
    admin_key_rsa: ADMIN_KEY => "key = \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ admin@x\"", "admins.example.key", at "\"ssh-rsa", "not an ssh-ed25519 public key";
    host_key_not_ed25519: AGENT => "roles = [\"k3s-agent\"]\nhost_key = \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ\"", "hosts.hamal.host_key", at "\"ssh-rsa", "not an ssh-ed25519 public key";
    host_key_not_a_key: AGENT => "roles = [\"k3s-agent\"]\nhost_key = \"ssh-ed25519 AAAAnotakey\"", "hosts.hamal.host_key", at "\"ssh-ed25519", "not a valid ssh-ed25519 public key";
    secret_name_not_a_label: "[secrets.k3s-token]" => "[secrets.K3s_Token]", "secrets.K3s_Token", at "K3s_Token", "secret name";
    secret_kind_unknown: r#"kind = "password""# => r#"kind = "passphrase""#, "secrets.kafka-db.kind", at "\"passphrase\"", "unknown variant `passphrase`";
    consumer_unknown_host: r#"{ host = "alkaid", path"# => r#"{ host = "mizar", path"#, "secrets.kafka-db.hosts[0].host", at "\"mizar\"", "unknown host `mizar`";
    consumer_twice: KAFKA_DB_HOSTS => "hosts = [{ host = \"alkaid\" }, { host = \"alkaid\", path = \"/x\" }]", "secrets.kafka-db.hosts[1].host", at "\"alkaid\", path", "already a consumer";
    consumer_path_relative: KAFKA_DB_PATH => "path = \"pw\" }]", "secrets.kafka-db.hosts[0].path", at "\"pw\"", "absolute path";
    consumer_path_that_adds_unit_lines: KAFKA_DB_PATH => "path = \"/run/pw\\nExecStartPre=/bin/sh\" }]", "secrets.kafka-db.hosts[0].path", at "\"/run/pw", "U+000A";
    consumer_path_with_a_specifier: KAFKA_DB_PATH => "path = \"/var/lib/%H/pw\" }]", "secrets.kafka-db.hosts[0].path", at "\"/var/lib/%H", "`%`";
    consumer_path_taken: KAFKA_DB_HOSTS => "hosts = [{ host = \"alphard\", path = \"/var/lib/secrets/k3s-token\" }]", "secrets.kafka-db.hosts[0].path", at "\"/var/lib/secrets/k3s-token\"", "already where secret `k3s-token` goes";
    consumer_owner_not_a_user: KAFKA_DB_PATH => "path = \"/s/pw\", owner = \"Post Gres\" }]", "secrets.kafka-db.hosts[0].owner", at "\"Post Gres\"", "not a user name";
    consumer_mode_for_everyone: KAFKA_DB_PATH => "path = \"/s/pw\", mode = \"0644\" }]", "secrets.kafka-db.hosts[0].mode", at "\"0644\"", "gives others access";
    consumer_group_not_a_group: KAFKA_DB_PATH => "path = \"/s/pw\", group = \"wheel users\" }]", "secrets.kafka-db.hosts[0].group", at "\"wheel users\"", "not a user name";
    consumer_mode_not_octal: KAFKA_DB_PATH => "path = \"/s/pw\", mode = \"rw-r\" }]", "secrets.kafka-db.hosts[0].mode", at "\"rw-r\"", "not a file mode";
    consumer_mode_the_owner_cannot_read: KAFKA_DB_PATH => "path = \"/s/pw\", mode = \"0200\" }]", "secrets.kafka-db.hosts[0].mode", at "\"0200\"", "0200 does not let the owner read it";
    // `grafana-admin` (sorted before `k3s-token`) puts its file where hamal, a k3s node, reads
    // the token by default: reported at the secret hamal reads without a path of its own.
    implied_consumer_path_taken: "[secrets.k3s-token]" => "[secrets.grafana-admin]\nkind = \"opaque\"\nhosts = [{ host = \"hamal\", path = \"/var/lib/secrets/k3s-token\" }]\n\n[secrets.k3s-token]", "secrets.k3s-token", at "k3s-token]", "`hamal` reads this secret at its default path /var/lib/secrets/k3s-token, which is already where secret `grafana-admin` goes";
    kubernetes_consumer_takes_the_pipelines_secret: KAFKA_DB_HOSTS => "kubernetes = [{ secret = \"pipeline-postgres\", key = \"password\" }]", "secrets.kafka-db.kubernetes[0].secret", at "\"pipeline-postgres\"", "the pipeline's own Secret";
    kubernetes_consumer_key_invalid: KAFKA_DB_HOSTS => "kubernetes = [{ secret = \"grafana\", key = \"pass word\" }]", "secrets.kafka-db.kubernetes[0].key", at "\"pass word\"", "not a Kubernetes Secret key";
    kubernetes_consumer_secret_not_a_name: KAFKA_DB_HOSTS => "kubernetes = [{ secret = \"Grafana Admin\", key = \"password\" }]", "secrets.kafka-db.kubernetes[0].secret", at "\"Grafana Admin\"", "DNS-1123 subdomain";
    kubernetes_consumer_key_twice: KAFKA_DB_HOSTS => "kubernetes = [{ secret = \"grafana\", key = \"pw\" }, { secret = \"grafana\", key = 'pw' }]", "secrets.kafka-db.kubernetes[1].key", at "'pw'", "already filled from secret `kafka-db`";
    no_admin_can_decrypt: ADMIN => "", "secrets.k3s-token", at "k3s-token]", "no [admins.*] key is declared";
    missing_host_key_without_push: ADMIN_NETS => "admin = [\"172.22.0.0/24\"]\npush_secrets = false", "secrets.k3s-token", at "k3s-token]", "missing host key: `alphard` reads this secret but declares no `host_key`";
    missing_host_key_of_a_listed_consumer: ADMIN_NETS => "admin = [\"172.22.0.0/24\"]\npush_secrets = false", "secrets.kafka-db.hosts[0].host", at "\"alkaid\", path", "missing host key: `alkaid`";
    plugin_section_removed: r#"connector = "postgres-sink""# => "connector = \"postgres-sink\"\n\n[pipeline.connect.plugin]\nurl = \"https://example.org/x.tar\"", "pipeline.connect.plugin", at "[pipeline.connect.plugin]", "is no longer used";
}

/// No `[networks.*]` at all: one error at the top of the file (there is no value to point at).
#[test]
fn no_network_declared() {
    let bad = replace_once(&bundled_inventory(), "[networks.lan]\ncidr = \"172.22.0.0/24\"\n", "");
    assert_rejected_text(&bad, 0, "networks", "", "no network declared");
}

#[test]
fn no_k3s_server() {
    let bad = replace_once(&bundled_inventory(), r#"roles = ["k3s-server"]"#, r#"roles = ["k3s-agent"]"#);
    assert_rejected_text(&bad, 0, "cluster", "[cluster]", "no host with role `k3s-server`");
}

/// The bundled inventory without its `[cluster]` section.
fn without_cluster() -> String {
    let good = bundled_inventory();
    let (start, end) = (good.find("[cluster]").unwrap(), good.find("[hosts.alphard]").unwrap());
    format!("{}{}", &good[..start], &good[end..])
}

/// k3s roles need the pod and service CIDRs and the token of a `[cluster]`: reported at each
/// k3s host's roles (it was reported at the `hosts` of `[hosts.alphard]`, key `cluster`).
#[test]
fn k3s_roles_without_a_cluster() {
    let bad = without_cluster();
    let from = bad.find("[hosts.alphard]").unwrap();
    assert_rejected_text(&bad, from, "hosts.alphard.roles", "[\"k3s-server\"]", "role `k3s-server` needs a [cluster] section");
    let from = bad.find("[hosts.hamal]").unwrap();
    assert_rejected_text(&bad, from, "hosts.hamal.roles", "[\"k3s-agent\"]", "role `k3s-agent` needs a [cluster] section");
}

#[test]
fn pipeline_without_a_cluster() {
    let bad = without_cluster();
    assert_rejected_text(&bad, 0, "pipeline", "[pipeline]", "the pipeline runs on k3s: it needs a [cluster] section");
}

/// `cluster` among the clients means the pods, and there are none without a `[cluster]`.
#[test]
fn client_cluster_without_a_cluster() {
    let bad = without_cluster();
    let from = bad.find("clients = ").unwrap();
    assert_rejected_text(&bad, from, "databases.kafka.clients[0]", "\"cluster\"", "`cluster` needs a [cluster] section");
}

/// An empty `[hosts]` table (the header alone) is a valid TOML table: refused at the header.
#[test]
fn no_host_declared() {
    let good = bundled_inventory();
    let (start, end) = (good.find("[hosts.alphard]").unwrap(), good.find("[databases.kafka]").unwrap());
    let bad = format!("{}[hosts]\n\n{}", &good[..start], &good[end..]);
    assert_rejected_text(&bad, 0, "hosts", "[hosts]", "no host declared");
}

/// `password` left out of a database: the error points at the database's name.
#[test]
fn password_missing() {
    let bad = replace_once(&bundled_inventory(), "password = \"kafka-db\"\n", "");
    let from = bad.find("[databases.kafka]").unwrap();
    assert_rejected_text(&bad, from, "databases.kafka.password", "kafka]", "missing: name the [secrets.*] section");
}

/// etcd's ports are taken on a k3s server only when there are several servers (embedded etcd).
#[test]
fn ssh_port_taken_by_etcd() {
    let bad = replace_once(&bundled_inventory(), SERVER, "roles = [\"k3s-server\"]\nssh_port = 2380");
    let bad = replace_once(&bad, AGENT, SERVER);
    let from = bad.find("ssh_port = 2380").unwrap();
    assert_rejected_text(&bad, from, "hosts.alphard.ssh_port", "2380", "port 2380 is already embedded etcd's");
}

/// A database host that is also a k3s node: PostgreSQL cannot take the kubelet's port.
#[test]
fn database_port_taken_by_the_kubelet() {
    let bad = replace_once(&bundled_inventory(), PG, "roles = [\"postgresql\", \"k3s-agent\"]");
    let bad = replace_once(&bad, "owner = \"kafka\"", "owner = \"kafka\"\nport = 10250");
    let from = bad.find("port = 10250").unwrap();
    assert_rejected_text(&bad, from, "databases.kafka.port", "10250", "port 10250 on alkaid is already the kubelet's");
}

/// A database host that is also a k3s server: PostgreSQL cannot take the k3s API's port.
#[test]
fn database_port_taken_by_the_k3s_api() {
    let bad = replace_once(&bundled_inventory(), PG, "roles = [\"postgresql\", \"k3s-server\"]");
    let bad = replace_once(&bad, "owner = \"kafka\"", "owner = \"kafka\"\nport = 6443");
    let from = bad.find("port = 6443").unwrap();
    assert_rejected_text(&bad, from, "databases.kafka.port", "6443", "port 6443 on alkaid is already the k3s API's");
}

/// `cluster.token` left out: the error points at the `[cluster]` section.
#[test]
fn token_missing() {
    let bad = replace_once(&bundled_inventory(), "token = \"k3s-token\"\n", "");
    assert_rejected_text(&bad, 0, "cluster.token", "[cluster]", "missing: name the [secrets.*] section");
}

/// A Kubernetes consumer needs the pipeline's namespace: without a [pipeline] there is none.
#[test]
fn kubernetes_consumer_without_a_pipeline() {
    let good = bundled_inventory();
    let (start, end) = (good.find("[pipeline]").unwrap(), good.find("# Who may decrypt").unwrap());
    let bad = format!("{}{}", &good[..start], &good[end..]);
    let bad = replace_once(&bad, KAFKA_DB_HOSTS, "kubernetes = [{ secret = \"grafana\", key = \"password\" }]");
    assert_rejected_text(&bad, 0, "secrets.kafka-db.kubernetes[0].secret", "\"grafana\"", "no way to receive it");
}

#[test]
fn connect_image_invalid() {
    assert_rejected(
        r#"image = "quay.io/debezium/connect:3.4.3.Final""#,
        r#"image = "quay.io/debezium/connect:3.4.3.Final@sha256:abc""#,
        "pipeline.connect.image",
        "\"quay.io/debezium/connect:3.4.3.Final@sha256:abc\"",
        "digest",
    );
}

/// Issue 13: a port conflict on a database host exited 1 at render time with no position.
#[test]
fn database_port_conflict() {
    let extra =
        "\n[databases.metrics]\nhost = \"alkaid\"\nport = 5433\nowner = \"grafana\"\npassword = \"kafka-db\"\nclients = [\"admin\"]\n";
    let good = bundled_inventory();
    let bad = format!("{good}{extra}");
    assert_rejected_text(&bad, good.len(), "databases.metrics.port", "5433", "already on port 5432 for database `kafka`");
}

/// A file that is not UTF-8 exited 1 ("cannot read"); it is an invalid inventory, located.
#[test]
fn non_utf8_inventory() {
    let dir = project_with(&bundled_inventory());
    let mut bytes = bundled_inventory().into_bytes();
    let at = bundled_inventory().find("loe-homelab").unwrap() + 3;
    bytes[at] = 0xff;
    std::fs::write(dir.path().join("hosts/inventory.toml"), &bytes).unwrap();
    let out = run_iac(dir.path(), &["render"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let (line, col) = position(&bundled_inventory(), at);
    let want = format!("hosts/inventory.toml:{line}:{col}: (encoding): byte 0xff is not UTF-8");
    assert!(text(&out.stderr).contains(&want), "{want} not in {}", text(&out.stderr));
}

#[test]
fn every_error_is_reported_at_once() {
    let bad = bundled_inventory().replacen(r#"address = "172.22.0.135""#, r#"address = "172.22.0.300""#, 1).replacen(
        r#"database = "kafka""#,
        r#"database = "events""#,
        1,
    );
    let dir = project_with(&bad);
    let out = run_iac(dir.path(), &["render"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("hosts.hamal.address") && stderr.contains("pipeline.database"), "{stderr}");
    assert!(!dir.path().join("generated").exists(), "nothing may be written on error");
}

/// An address no host can have is one error: not also "outside every declared network".
#[test]
fn unusable_address_is_one_error() {
    let bad = replace_once(&bundled_inventory(), r#"address = "172.22.0.133""#, r#"address = "224.0.0.251""#);
    let dir = project_with(&bad);
    let out = run_iac(dir.path(), &["render"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": hosts.alkaid.address: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("a multicast address"), "{stderr}");
}
