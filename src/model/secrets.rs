//! The secrets of the estate as the rest of iac reads them: who may decrypt each one (its
//! recipients), where each host reads it, and how it gets there.
//!
//! One list, from one function: [`Site::secret_files`] is every secret file a host's
//! configuration reads, which the renderers point the services at, the NixOS module decrypts
//! at activation (a host with a `host_key`) or `iac deploy` pushes before the switch (a host
//! without), and the deploy preflight checks. Every one of them is a declared secret
//! (`[secrets.NAME]`): `databases.*.password` and `cluster.token` name one, and the path a
//! service reads is the path declared for its host there, so a path is written in one place.

use super::{Host, Role, Secret, SecretConsumer, Site};

/// The Kubernetes Secret (and its key) `iac apply` creates from the pipeline database's
/// password, which Kafka Connect reads (`render::k8s::SECRET`).
pub const PIPELINE_SECRET: &str = "pipeline-postgres";
pub const PIPELINE_SECRET_KEY: &str = "password";

/// How a host gets a secret's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The host has a declared `host_key`: the ciphertext travels in its NixOS module and a
    /// unit decrypts it with `/etc/ssh/ssh_host_ed25519_key` before the consumers start.
    Activation,
    /// No host key: `iac deploy` decrypts it with the admin's identity and writes it over the
    /// deploy SSH connection before the switch.
    Push,
}

impl Delivery {
    pub fn of(host: &Host) -> Self {
        if host.host_key.is_some() { Self::Activation } else { Self::Push }
    }
}

/// Where a secret's file goes on a host when the inventory does not say: a tmpfs where the
/// host decrypts it at every boot, a persistent directory where iac pushes it (a pushed file
/// on `/run` would be gone after a reboot, until the next deploy).
pub fn default_path(secret: &str, delivery: Delivery) -> String {
    match delivery {
        Delivery::Activation => format!("/run/secrets/{secret}"),
        Delivery::Push => format!("/var/lib/secrets/{secret}"),
    }
}

/// A file on a host that holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The declared secret's name (`secrets/NAME.age`).
    pub secret: String,
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub delivery: Delivery,
    /// Who reads it, for messages.
    pub why: String,
}

/// Who holds the private half of a recipient key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecipientOwner {
    Admin(String),
    Host(String),
}

impl std::fmt::Display for RecipientOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Admin(n) => write!(f, "admin {n}"),
            Self::Host(n) => write!(f, "host {n}"),
        }
    }
}

/// A public key a secret is encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub owner: RecipientOwner,
    /// `age1…` or `ssh-ed25519 BASE64`.
    pub key: String,
}

impl Site {
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.binary_search_by(|s| s.name.as_str().cmp(name)).ok().map(|i| &self.secrets[i])
    }

    /// Where `host` reads secret `name`, if it is one of its consumers.
    pub fn secret_path(&self, name: &str, host: &str) -> Option<&str> {
        self.consumer(name, host).map(|c| c.path.as_str())
    }

    fn consumer(&self, name: &str, host: &str) -> Option<&SecretConsumer> {
        self.secret(name)?.hosts.iter().find(|c| c.host == host)
    }

    /// Every key secret `name` must be encrypted to: every admin's, and the host key of each
    /// consuming host that has one (the others get it pushed). Admins first, by name; each key
    /// once.
    pub fn recipients(&self, secret: &Secret) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        let admins = self.admins.iter().map(|a| Recipient { owner: RecipientOwner::Admin(a.name.clone()), key: a.key.clone() });
        let hosts = secret.hosts.iter().filter_map(|c| {
            let host = self.host(&c.host)?;
            Some(Recipient { owner: RecipientOwner::Host(host.name.clone()), key: host.host_key.clone()? })
        });
        for r in admins.chain(hosts) {
            if !out.iter().any(|o| o.key == r.key) {
                out.push(r);
            }
        }
        out
    }

    /// Every secret file `host`'s configuration reads, in the order of the secrets' names.
    pub fn secret_files(&self, host: &Host) -> Vec<SecretFile> {
        let mut files = Vec::new();
        for secret in &self.secrets {
            let Some(c) = secret.hosts.iter().find(|c| c.host == host.name) else { continue };
            files.push(SecretFile {
                secret: secret.name.clone(),
                path: c.path.clone(),
                owner: c.owner.clone(),
                group: c.group.clone(),
                mode: c.mode,
                delivery: Delivery::of(host),
                why: self.readers(&secret.name, host).join(", "),
            });
        }
        files
    }

    /// What on `host` reads secret `name`, for messages; the declared consumer entry when iac
    /// knows no service of its own that does.
    fn readers(&self, name: &str, host: &Host) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(cluster) = &self.cluster
            && cluster.token == name
            && host.is_k3s_node()
        {
            let role = if host.has(Role::K3sServer) { "k3s server" } else { "k3s agent" };
            why.push(format!("the cluster token ({role}: services.k3s.tokenFile)"));
        }
        for db in self.databases.iter().filter(|d| d.host == host.name && d.password == name) {
            why.push(format!("the password of database `{}`'s owner `{}` (postgresql-setup)", db.name, db.owner));
        }
        if why.is_empty() {
            why.push(format!("secret `{name}` as declared in [secrets.{name}]"));
        }
        why
    }

    /// The systemd units on `host` that read one of its secrets: the decryption unit runs before
    /// them, and they require it (`render::secrets`).
    pub fn secret_readers_units(&self, host: &Host) -> Vec<&'static str> {
        let files = self.secret_files(host);
        let mut units = Vec::new();
        if let Some(cluster) = &self.cluster
            && host.is_k3s_node()
            && files.iter().any(|f| f.secret == cluster.token)
        {
            units.push("k3s.service");
        }
        if self.databases.iter().any(|d| d.host == host.name && files.iter().any(|f| f.secret == d.password)) {
            units.push("postgresql-setup.service");
        }
        units
    }

    /// The Kubernetes Secrets `iac apply` creates, `(secret name, key, declared secret)`: the
    /// pipeline's database password (the Secret its Connect reads) and every declared one.
    pub fn kube_secrets(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        if let Some(p) = &self.pipeline
            && let Some(db) = self.database(&p.database)
        {
            out.push((PIPELINE_SECRET.to_string(), PIPELINE_SECRET_KEY.to_string(), db.password.clone()));
        }
        for s in &self.secrets {
            for k in &s.kubernetes {
                out.push((k.secret.clone(), k.key.clone(), s.name.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Site;

    fn site() -> Site {
        crate::load_site(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hosts/inventory.toml"))).unwrap()
    }

    #[test]
    fn each_host_gets_the_files_its_modules_read() {
        let site = site();
        let paths = |name: &str| site.secret_files(site.host(name).unwrap()).into_iter().map(|f| f.path).collect::<Vec<_>>();
        assert_eq!(paths("alphard"), ["/var/lib/secrets/k3s-token"]);
        assert_eq!(paths("hamal"), ["/var/lib/secrets/k3s-token"]);
        assert_eq!(paths("alkaid"), ["/var/lib/secrets/postgresql-kafka"]);
        let file = &site.secret_files(site.host("alkaid").unwrap())[0];
        assert!(file.why.contains("database `kafka`"), "{}", file.why);
        assert_eq!((file.owner.as_str(), file.group.as_str(), file.mode, file.delivery), ("root", "root", 0o400, Delivery::Push));
        assert_eq!(site.secret_readers_units(site.host("alkaid").unwrap()), ["postgresql-setup.service"]);
        assert_eq!(site.secret_readers_units(site.host("hamal").unwrap()), ["k3s.service"]);
    }

    #[test]
    fn recipients_are_the_admins_and_the_consumers_host_keys() {
        let mut site = site();
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3pUxCowG1tMDG+T3wfNcX00W4bt1HSkNmHgRJjqW2y".to_string();
        site.hosts.iter_mut().find(|h| h.name == "hamal").unwrap().host_key = Some(key.clone());
        let token = site.secret("k3s-token").unwrap().clone();
        let r = site.recipients(&token);
        assert_eq!(r.len(), site.admins.len() + 1);
        assert_eq!(r.last().unwrap(), &Recipient { owner: RecipientOwner::Host("hamal".into()), key });
        assert_eq!(default_path("x", Delivery::of(site.host("hamal").unwrap())), "/run/secrets/x");
        assert_eq!(site.kube_secrets(), [("pipeline-postgres".into(), "password".into(), "kafka-db".into())]);
    }
}
