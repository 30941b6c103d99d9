//! Store URLs: libpq's connection URL with revstore's own options among
//! its query parameters.

use std::str::FromStr;
use std::time::Duration;

use revstore::{parse_retention, Error};

use crate::PostgresOptions;

/// The query parameters revstore reads itself; every other one goes to the
/// client as a libpq parameter.
pub(crate) const REVSTORE_PARAMETERS: [&str; 4] =
    ["durability", "retain", "namespace", "pool_size"];

/// A URL taken apart: the client's configuration and revstore's options.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) config: postgres::Config,
    pub(crate) options: PostgresOptions,
}

/// Parses `url` (`postgres://…` or `postgresql://…`), starting from
/// `options`: revstore's parameters in the URL override them, libpq's
/// (`connect_timeout`, `application_name`, `sslmode`, …) configure the
/// client.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the URL (its password masked) and what is
/// wrong with it.
pub(crate) fn parse(url: &str, mut options: PostgresOptions) -> Result<Parsed, Error> {
    let invalid = |reason: String| Error::InvalidConfig {
        input: redact(url),
        reason,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "a PostgreSQL store URL starts with postgres:// or postgresql://".to_owned(),
        ));
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut passed_on = Vec::new();
    for parameter in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match name {
            "durability" => options.durability = value.parse()?,
            "retain" => options.retain_changes = parse_retention(value)?,
            "namespace" => options.namespace = value.to_owned(),
            "pool_size" => {
                options.pool_size = match value.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(invalid(format!(
                            "pool_size is a positive number of connections, not {value:?}"
                        )))
                    }
                }
            }
            _ => passed_on.push(parameter),
        }
    }
    crate::schema::validate_namespace(&options.namespace).map_err(invalid)?;
    let client_url = if passed_on.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed_on.join("&"))
    };
    let mut config = postgres::Config::from_str(&client_url).map_err(|e| {
        invalid(format!(
            "{e} (revstore's own parameters are {})",
            REVSTORE_PARAMETERS.join(", ")
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("revstore");
    }
    if config.get_user().is_none() {
        // libpq's default; the client itself has none and would refuse.
        if let Some(user) = std::env::var_os("USER").and_then(|u| u.into_string().ok()) {
            config.user(&user);
        }
    }
    Ok(Parsed { config, options })
}

/// The URL with its password, if any, masked, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((before, _)) if before.is_empty() || before.ends_with('?') => {
                format!("{before}password=***")
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

/// Where a configuration points, for messages: `host:port/database`.
pub(crate) fn describe(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config.get_ports().get(i).or(config.get_ports().first());
            let host = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match port {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{hosts}/{database}")
}

/// The connect timeout a configuration ends up with.
pub(crate) fn connect_timeout(config: &postgres::Config) -> Duration {
    config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use revstore::Durability;

    #[test]
    fn revstore_parameters_are_taken_out_and_libpq_ones_passed_on() {
        let parsed = parse(
            "postgres://me@db.example:5433/app?durability=relaxed&application_name=x&retain=50&namespace=tenant_1&pool_size=3&connect_timeout=4",
            PostgresOptions::default(),
        )
        .unwrap();
        assert_eq!(parsed.options.durability, Durability::Relaxed);
        assert_eq!(parsed.options.retain_changes, 50);
        assert_eq!(parsed.options.namespace, "tenant_1");
        assert_eq!(parsed.options.pool_size, 3);
        assert_eq!(parsed.config.get_application_name(), Some("x"));
        assert_eq!(parsed.config.get_dbname(), Some("app"));
        assert_eq!(
            parsed.config.get_connect_timeout(),
            Some(&Duration::from_secs(4))
        );
        assert_eq!(describe(&parsed.config), "postgres://db.example:5433/app");
    }

    #[test]
    fn defaults_fill_what_the_url_leaves_out() {
        let parsed = parse("postgresql://me@localhost/app", PostgresOptions::default()).unwrap();
        assert_eq!(parsed.options, PostgresOptions::default());
        assert_eq!(parsed.config.get_application_name(), Some("revstore"));
        assert_eq!(
            parsed.config.get_connect_timeout(),
            Some(&PostgresOptions::default().connect_timeout)
        );
    }

    #[test]
    fn bad_urls_are_refused_naming_them_without_the_password() {
        for (url, needle) in [
            ("mysql://me:secret@h/db", "postgres://"),
            ("postgres://me:secret@h/db?durability=fast", "durability"),
            ("postgres://me:secret@h/db?retain=0", "retention"),
            ("postgres://me:secret@h/db?pool_size=0", "pool_size"),
            ("postgres://me:secret@h/db?namespace=Bad-Name", "namespace"),
            ("postgres://me:secret@h/db?bogus=1", "bogus"),
        ] {
            match parse(url, PostgresOptions::default()) {
                Err(Error::InvalidConfig { input, reason }) => {
                    assert!(!format!("{input} {reason}").contains("secret"), "{input}");
                    assert!(
                        reason.contains(needle) || input.contains(needle),
                        "{url}: {reason}"
                    );
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://me:pw@h:1/db?password=x&a=1"),
            "postgres://me:***@h:1/db?password=***&a=1"
        );
        assert_eq!(redact("postgres://me@h/db"), "postgres://me@h/db");
        assert_eq!(redact("postgres://h"), "postgres://h");
    }
}
