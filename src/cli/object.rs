//! Which object a command is about: `<kind>/<name>` as kubectl takes it
//! (plural, short name and `<kind>.stackpilot.dev` included). Commands that
//! several kinds share (`approve`, `retry`, `status`, `history`) dispatch on
//! the kind; a bare name means the command's default kind, if it has one.

use anyhow::bail;

/// `<kind>/<name>` and a namespace, as every object command takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct ObjectRef {
    /// `<kind>/<name>`, e.g. `stackdeployment/web` or `pipeline/web`.
    pub object: String,
    /// Its namespace (default: the kubeconfig's, like kubectl).
    #[arg(long, short)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stack,
    StackDeployment,
    Pipeline,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Stack => "stack",
            Kind::StackDeployment => "stackdeployment",
            Kind::Pipeline => "pipeline",
        }
    }

    fn parse(kind: &str) -> Option<Kind> {
        let kind = kind.to_ascii_lowercase();
        let kind = kind.strip_suffix(".stackpilot.dev").unwrap_or(&kind);
        match kind {
            "stack" | "stacks" | "cfs" | "cfstack" => Some(Kind::Stack),
            "stackdeployment" | "stackdeployments" | "sdep" => Some(Kind::StackDeployment),
            "pipeline" | "pipelines" | "cfpipe" => Some(Kind::Pipeline),
            _ => None,
        }
    }
}

/// The kind and name of `object`, among the kinds `command` takes; a bare
/// name is `default`, or refused when the command has none.
pub fn parse<'o>(
    object: &'o str,
    command: &str,
    takes: &[Kind],
    default: Option<Kind>,
) -> anyhow::Result<(Kind, &'o str)> {
    let expected = || {
        takes
            .iter()
            .map(|k| format!("{}/<name>", k.word()))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let (kind, name) = match object.split_once('/') {
        None => match default {
            Some(kind) => (kind, object),
            None => bail!("{command} needs the kind: {}", expected()),
        },
        Some((kind, name)) => match Kind::parse(kind) {
            Some(kind) => (kind, name),
            None => bail!("{command} does not take {kind}: use {}", expected()),
        },
    };
    if name.is_empty() {
        bail!("{command}: {object} names no object");
    }
    if !takes.contains(&kind) {
        bail!("{command} does not take a {}: use {}", kind.word(), expected());
    }
    Ok((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Kind] = &[Kind::StackDeployment, Kind::Pipeline];

    #[test]
    fn kinds_are_read_as_kubectl_reads_them() {
        assert_eq!(
            parse("sdep/web", "retry", BOTH, None).unwrap(),
            (Kind::StackDeployment, "web")
        );
        assert_eq!(
            parse("stackdeployments.stackpilot.dev/web", "retry", BOTH, None).unwrap(),
            (Kind::StackDeployment, "web")
        );
        assert_eq!(
            parse("Pipeline/web", "retry", BOTH, None).unwrap(),
            (Kind::Pipeline, "web")
        );
        assert_eq!(
            parse("cfpipe/web", "retry", BOTH, None).unwrap(),
            (Kind::Pipeline, "web")
        );
        assert_eq!(
            parse("web", "approve", &[Kind::Stack, Kind::Pipeline], Some(Kind::Stack)).unwrap(),
            (Kind::Stack, "web")
        );
    }

    #[test]
    fn wrong_or_missing_kinds_say_what_is_expected() {
        let bare = parse("web", "retry", BOTH, None).unwrap_err().to_string();
        assert_eq!(bare, "retry needs the kind: stackdeployment/<name> or pipeline/<name>");
        let stack = parse("stack/web", "retry", BOTH, None).unwrap_err().to_string();
        assert_eq!(
            stack,
            "retry does not take a stack: use stackdeployment/<name> or pipeline/<name>"
        );
        let unknown = parse("pod/web", "retry", BOTH, None).unwrap_err().to_string();
        assert!(unknown.starts_with("retry does not take pod"), "{unknown}");
        assert!(parse("pipeline/", "retry", BOTH, None).is_err());
    }
}
