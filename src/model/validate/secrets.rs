//! Validation of the secrets: `[admins.*]`, `[secrets.*]` with their consumers, and the
//! references to them (`databases.*.password`, `cluster.token`). A reference names a declared
//! secret and makes the hosts that read it its consumers (every k3s node for the token, the
//! database's host for its password): iac knows who reads what, so the inventory says it once.
//! A consumer listed in `hosts` sets its own path, owner, group and mode; an implied one gets
//! the defaults (`secrets::default_path`, root:root 0400). Either way the path a service reads
//! is the consumer's, written in one place.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use crate::inventory::schema::{ClusterSection, InventoryFile, Text};
use crate::model::secrets::{Delivery, PIPELINE_SECRET, default_path};
use crate::model::{Admin, Host, KubeSecret, Role, Secret, SecretConsumer, rules};

use super::Validator;

/// What a reference to a secret is checked against.
pub(super) struct SecretRefs<'a> {
    pub secrets: &'a [Secret],
}

/// The hosts each secret's references make its readers: every k3s node reads the cluster
/// token, a database's host its password.
fn implied_readers<'f, 'h>(file: &'f InventoryFile, hosts: &'h [Host]) -> BTreeMap<&'f str, Vec<&'h Host>> {
    let mut out: BTreeMap<&str, Vec<&Host>> = BTreeMap::new();
    if let Some(token) = file.cluster.as_ref().and_then(|c| c.get_ref().token.as_ref()) {
        out.entry(token.get_ref().as_str()).or_default().extend(hosts.iter().filter(|h| h.has(Role::K3sServer) || h.has(Role::K3sAgent)));
    }
    for d in file.databases.values() {
        if let (Some(pw), Some(host)) = (&d.password, hosts.iter().find(|h| &h.name == d.host.get_ref())) {
            let readers = out.entry(pw.get_ref().as_str()).or_default();
            if !readers.iter().any(|h| h.name == host.name) {
                readers.push(host);
            }
        }
    }
    out
}

impl Validator<'_> {
    pub(super) fn admins(&mut self, file: &InventoryFile) -> Vec<Admin> {
        let mut out = Vec::new();
        for (name, a) in &file.admins {
            let key = format!("admins.{name}");
            self.name(name, file.keys.span("admins", name), &key, "admin");
            match rules::public_key(a.key.get_ref()) {
                Ok(canonical) => out.push(Admin { name: name.clone(), key: canonical }),
                Err(why) => self.error(a.key.span(), format!("{key}.key"), why),
            }
        }
        out
    }

    pub(super) fn secrets(&mut self, file: &InventoryFile, hosts: &[Host], admins: &[Admin]) -> Vec<Secret> {
        let implied = implied_readers(file, hosts);
        let mut out = Vec::new();
        // (host, path) -> the secret that already goes there.
        let mut paths: BTreeMap<(String, String), String> = BTreeMap::new();
        // (Kubernetes Secret, key) -> the secret that fills it: `iac apply` would write one
        // value over the other.
        let mut kube_keys: BTreeMap<(String, String), String> = BTreeMap::new();
        let push = *file.access.push_secrets.get_ref();
        for (name, s) in &file.secrets {
            let key = format!("secrets.{name}");
            let name_span = file.keys.span("secrets", name);
            // It names the file secrets/NAME.age, a unit's argument and a default path.
            self.name(name, name_span.clone(), &key, "secret");
            if admins.is_empty() {
                self.error(
                    name_span.clone(),
                    &key,
                    "no [admins.*] key is declared: nobody could create, rekey or push this secret (add `[admins.NAME] key = \"age1…\"`)",
                );
            }
            let mut consumers: Vec<SecretConsumer> = Vec::new();
            for (i, c) in s.hosts.iter().enumerate() {
                let k = format!("{key}.hosts[{i}]");
                let Some(host) = hosts.iter().find(|h| &h.name == c.host.get_ref()) else {
                    self.error(c.host.span(), format!("{k}.host"), format!("unknown host `{}`", rules::printable(c.host.get_ref())));
                    continue;
                };
                if consumers.iter().any(|o| o.host == host.name) {
                    self.error(c.host.span(), format!("{k}.host"), format!("host `{}` is already a consumer of this secret", host.name));
                    continue;
                }
                if host.host_key.is_none() && !push {
                    self.no_way_to_receive(c.host.span(), &format!("{k}.host"), host);
                }
                let path = match &c.path {
                    Some(p) => {
                        self.unit_path(p, &format!("{k}.path"));
                        p.get_ref().clone()
                    }
                    None => default_path(name, Delivery::of(host)),
                };
                let path_span = c.path.as_ref().map_or_else(|| c.host.span(), Spanned::span);
                if let Some(other) = paths.insert((host.name.clone(), path.clone()), name.clone()) {
                    self.error(path_span, format!("{k}.path"), format!("{path} on {} is already where secret `{other}` goes", host.name));
                }
                self.check(&c.owner, &format!("{k}.owner"), rules::posix_user);
                self.check(&c.group, &format!("{k}.group"), rules::posix_user);
                let mode = match rules::secret_mode(c.mode.get_ref()) {
                    Ok(m) => m,
                    Err(why) => {
                        self.error(c.mode.span(), format!("{k}.mode"), why);
                        0o400
                    }
                };
                consumers.push(SecretConsumer {
                    host: host.name.clone(),
                    path,
                    owner: c.owner.get_ref().clone(),
                    group: c.group.get_ref().clone(),
                    mode,
                });
            }
            // The hosts a reference makes consumers, with the defaults.
            for host in implied.get(name.as_str()).into_iter().flatten() {
                if consumers.iter().any(|c| c.host == host.name) {
                    continue;
                }
                if host.host_key.is_none() && !push {
                    self.no_way_to_receive(name_span.clone(), &key, host);
                }
                let path = default_path(name, Delivery::of(host));
                if let Some(other) = paths.insert((host.name.clone(), path.clone()), name.clone()) {
                    // No path was written for this reader: say where it comes from and the way out.
                    self.error(
                        name_span.clone(),
                        &key,
                        format!(
                            "`{}` reads this secret at its default path {path}, which is already where secret `{other}` goes; \
                             list `{}` in this secret's `hosts` with another `path`",
                            host.name, host.name
                        ),
                    );
                }
                consumers.push(SecretConsumer { host: host.name.clone(), path, owner: "root".into(), group: "root".into(), mode: 0o400 });
            }
            let mut kubernetes = Vec::new();
            for (i, c) in s.kubernetes.iter().enumerate() {
                let k = format!("{key}.kubernetes[{i}]");
                if file.pipeline.is_none() {
                    self.error(
                        c.secret.span(),
                        format!("{k}.secret"),
                        "no way to receive it: `iac apply` creates Kubernetes Secrets in the pipeline's namespace, and there is no [pipeline]",
                    );
                }
                self.check(&c.secret, &format!("{k}.secret"), rules::dns_subdomain);
                if c.secret.get_ref() == PIPELINE_SECRET {
                    self.error(
                        c.secret.span(),
                        format!("{k}.secret"),
                        format!("`{PIPELINE_SECRET}` is the pipeline's own Secret: iac fills it from the pipeline database's password"),
                    );
                }
                self.check(&c.key, &format!("{k}.key"), rules::config_key);
                let slot = (c.secret.get_ref().clone(), c.key.get_ref().clone());
                if let Some(other) = kube_keys.insert(slot, name.clone()) {
                    self.error(
                        c.key.span(),
                        format!("{k}.key"),
                        format!(
                            "key `{}` of Kubernetes Secret `{}` is already filled from secret `{other}`",
                            c.key.get_ref(),
                            c.secret.get_ref()
                        ),
                    );
                }
                kubernetes.push(KubeSecret { secret: c.secret.get_ref().clone(), key: c.key.get_ref().clone() });
            }
            out.push(Secret { name: name.clone(), kind: *s.kind.get_ref(), hosts: consumers, kubernetes });
        }
        out
    }

    /// A reference to a declared secret at `key` (`value`, or missing: an error at `missing`).
    /// The secret's name.
    pub(super) fn secret_ref(&mut self, value: Option<&Text>, key: &str, missing: Range<usize>, refs: &SecretRefs) -> String {
        let Some(value) = value else {
            self.error(missing, key, "missing: name the [secrets.*] section that holds this secret");
            return String::new();
        };
        let name = value.get_ref();
        if !refs.secrets.iter().any(|s| &s.name == name) {
            let declared: Vec<&str> = refs.secrets.iter().map(|s| s.name.as_str()).collect();
            let declared = if declared.is_empty() { "none".to_string() } else { declared.join(", ") };
            self.error(
                value.span(),
                key,
                format!("unknown secret `{}` (declared: {declared}); declare it as [secrets.NAME]", rules::printable(name)),
            );
        }
        name.clone()
    }

    /// `cluster.token`.
    pub(super) fn cluster_token(&mut self, c: &Spanned<ClusterSection>, refs: &SecretRefs) -> String {
        self.secret_ref(c.get_ref().token.as_ref(), "cluster.token", c.span(), refs)
    }

    /// A consumer host without a host key, where pushing is not allowed.
    fn no_way_to_receive(&mut self, span: Range<usize>, key: &str, host: &Host) {
        self.error(
            span,
            key,
            format!(
                "missing host key: `{}` reads this secret but declares no `host_key`, and access.push_secrets is false, so it \
                 has no way to receive it (add hosts.{}.host_key from `ssh-keyscan -t ed25519 {}`)",
                host.name, host.name, host.address
            ),
        );
    }

    /// A key of earlier versions that named a path, now a reference to a declared secret.
    pub(super) fn removed(&mut self, span: Range<usize>, key: &str, replacement: &str, what: &str) {
        self.error(
            span,
            key,
            format!(
                "is replaced by `{replacement} = \"SECRET\"`, naming the [secrets.SECRET] that holds the {what}; its path is declared \
                 there, per host (docs/secrets.md)"
            ),
        );
    }
}
