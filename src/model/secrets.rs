//! The secret files a host's configuration reads at run time.
//!
//! One list, from one function: the deploy preflight checks on each host that every file in it
//! exists, is a regular non-empty file and is not world-readable, before anything is built
//! (a missing file fails the unit that reads it: `LoadCredential` fails `postgresql-setup`,
//! k3s cannot join without its token). A new kind of secret (issue 17's declared secrets) is
//! added here and the preflight checks it with no other change.

use super::{Host, Role, Site};

/// A file on a host that holds a secret; `why` says who reads it, for the preflight's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: String,
    pub why: String,
}

impl Site {
    /// Every secret file `host`'s generated modules read, each path once, in a stable order.
    pub fn secret_files(&self, host: &Host) -> Vec<SecretFile> {
        let mut files: Vec<SecretFile> = Vec::new();
        let mut add = |path: &str, why: String| {
            if !files.iter().any(|f| f.path == path) {
                files.push(SecretFile { path: path.to_string(), why });
            }
        };
        if let Some(cluster) = &self.cluster
            && host.is_k3s_node()
        {
            let role = if host.has(Role::K3sServer) { "k3s server" } else { "k3s agent" };
            add(&cluster.token_file, format!("the cluster token ({role}: services.k3s.tokenFile)"));
        }
        for db in self.databases.iter().filter(|d| d.host == host.name) {
            add(&db.password_file, format!("the password of database `{}`'s owner `{}` (postgresql-setup)", db.name, db.owner));
        }
        files
    }
}

#[cfg(test)]
mod tests {
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
        let why = &site.secret_files(site.host("alkaid").unwrap())[0].why;
        assert!(why.contains("database `kafka`"), "{why}");
    }
}
