//! The service's identity: `service.name`, `service.version` and the other resource attributes
//! (`OTEL_RESOURCE_ATTRIBUTES`), which every subsystem reports with (spans' resource,
//! `target_info`, Sentry's tags and release, the log lines' `service.name`). One version string
//! serves all of them, so a deploy is one value to join metrics, traces and Sentry releases on.

use crate::env::{key_value_list, var, Env};

/// Who is reporting.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub name: String,
    pub version: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` without `service.name`/`service.version`.
    pub attributes: Vec<(String, String)>,
}

impl Service {
    /// The name: code first, then `OTEL_SERVICE_NAME`, the resource attributes, the
    /// executable's name. The version: code, then the resource's `service.version`, then
    /// `SENTRY_RELEASE`. The commit (`vcs.ref.head.revision`): the resource's, else
    /// `OBS_VCS_REVISION`.
    pub fn resolve(name: Option<&str>, version: Option<&str>, env: &mut Env<'_>) -> Self {
        let mut attributes = match env.get(var::OTEL_RESOURCE_ATTRIBUTES) {
            Some(raw) => key_value_list(&raw, |pair| {
                env.warn(crate::env::bad_value(
                    "OTEL_RESOURCE_ATTRIBUTES entry",
                    pair,
                    "expected key=value",
                    "nothing for this entry",
                ))
            }),
            None => Vec::new(),
        };
        let attribute = |key: &str| attribute(&attributes, key);
        let name = name
            .map(str::to_owned)
            .or_else(|| env.get(var::OTEL_SERVICE_NAME))
            .or_else(|| attribute("service.name"))
            .or_else(executable_name)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let version = version
            .map(str::to_owned)
            .or_else(|| attribute("service.version"))
            .or_else(|| env.get(var::SENTRY_RELEASE).map(|r| r.trim().to_owned()));
        let revision = attribute(VCS_REVISION)
            .is_none()
            .then(|| env.get(var::OBS_VCS_REVISION));
        if let Some(revision) = revision.flatten() {
            attributes.push((VCS_REVISION.to_owned(), revision.trim().to_owned()));
        }
        attributes.retain(|(k, _)| k != "service.name" && k != "service.version");
        Self {
            name,
            version,
            attributes,
        }
    }

    /// A resource attribute's value (Sentry's environment reads one).
    #[cfg_attr(not(feature = "sentry"), allow(dead_code))]
    pub fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.attributes, key)
    }
}

/// The commit a build was made from (OpenTelemetry's `vcs` conventions); on `target_info` as
/// `vcs_ref_head_revision`.
const VCS_REVISION: &str = "vcs.ref.head.revision";

fn attribute(attributes: &[(String, String)], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}
